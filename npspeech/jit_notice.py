"""One line on stderr when Numba starts compiling npspeech's kernels.

On a fresh install (or after an upgrade, or with an empty ``NUMBA_CACHE_DIR``) Numba
compiles each kernel the first time it runs and caches the machine code on disk; later
processes load it in milliseconds. The first run can therefore sit silent for seconds,
which looks like a hang. :func:`announce_compilation` makes the process say
``npspeech: compiling kernels, first run only`` once, on stderr, at the moment the
first of npspeech's kernels misses the cache and starts compiling; a run whose kernels
all come from the cache prints nothing.

It listens to Numba's ``numba:compile`` event, which Numba fires only for a real
compilation (after its disk cache missed), so it is exact where looking for the cache's
index files would have to guess which kernels, and which argument types, a run will
need. It never imports Numba itself: asked before Numba is imported, the listener is
installed when npspeech's Numba backend is imported (which calls
:func:`numba_imported`), so that a run that needs no compiled kernel (a short decode
runs on the NumPy reference) does not pay Numba's import for a notice it cannot
print. :func:`compile_seconds` tells how long this process has spent compiling
npspeech's kernels (``npspeech bench`` reports it).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["MESSAGE", "announce_compilation", "compile_seconds", "numba_imported"]

#: What is printed, once per process.
MESSAGE = "npspeech: compiling kernels, first run only"

_PACKAGE = __name__.split(".")[0]
_lock = threading.Lock()
_listener = None
_wanted = False  # announce_compilation was called
_stream: TextIO | None = None


def _is_ours(event) -> bool:
    dispatcher = (event.data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def _make_listener(stream: TextIO | None):
    from numba.core import event

    class CompileListener(event.Listener):
        """Prints :data:`MESSAGE` at the first compilation; sums compile time."""

        def __init__(self) -> None:
            self.stream = stream
            self.announced = False
            self.depth = 0  # a kernel compiles the kernels it calls inside its own
            self.started = 0.0
            self.seconds = 0.0

        def on_start(self, event) -> None:
            if not _is_ours(event):
                return
            if self.depth == 0:
                self.started = time.perf_counter()
            self.depth += 1
            if not self.announced:
                self.announced = True
                out = self.stream if self.stream is not None else sys.stderr
                print(MESSAGE, file=out, flush=True)

        def on_end(self, event) -> None:
            if not _is_ours(event) or self.depth == 0:
                return
            self.depth -= 1
            if self.depth == 0:
                self.seconds += time.perf_counter() - self.started

    return CompileListener()


def announce_compilation(stream: TextIO | None = None) -> None:
    """From now on, say once when this process starts compiling npspeech's kernels.

    Call it before the first kernel runs (``npspeech decode`` and training's first
    epoch do). Calling it again changes nothing; the line is printed at most once per
    process.

    Parameters
    ----------
    stream : text file, optional
        Where the line goes; ``sys.stderr`` (as it is when the line is printed) by
        default.
    """
    global _wanted, _stream
    with _lock:
        if _wanted:
            return
        _wanted, _stream = True, stream
    if "numba" in sys.modules:
        numba_imported()


def numba_imported() -> None:
    """Install the listener :func:`announce_compilation` asked for, now that Numba is
    imported; nothing when none was asked for or it is installed already.
    ``npspeech.backends.numba_cpu`` (through which every npspeech kernel module
    imports Numba) calls it when it is imported."""
    global _listener
    with _lock:
        if not _wanted or _listener is not None:
            return
        from numba.core import event

        _listener = _make_listener(_stream)
        event.register("numba:compile", _listener)


def compile_seconds() -> float:
    """Seconds this process has spent compiling npspeech's kernels since
    :func:`announce_compilation` was first called (0.0 before that)."""
    return 0.0 if _listener is None else float(_listener.seconds)
