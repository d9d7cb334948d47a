"""npspeech: framework-free speech-to-text.

Audio in, text out, and the training that makes the model, with NumPy, Numba and Cython.
DeepSpeech's corpus CSVs, ``alphabet.txt``, ``.scorer`` files and MFCC front end are
read as they are.
"""

from . import thread_pools

# Before anything here imports NumPy (OpenBLAS) or starts Numba's threads (libgomp).
thread_pools.set_defaults()

__all__ = ["__version__", "Model", "Stream", "transcribe"]

# Loaded on first use, so that `import npspeech` (and `npspeech --help`) stays instant.
_LAZY = {"Model": "api", "Stream": "stream", "transcribe": "api"}


def __getattr__(name: str):
    if name == "__version__":
        # importlib.metadata costs ~50 ms of start-up; only --version and callers pay it
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("npspeech")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
