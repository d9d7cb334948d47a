"""Compiling the runtime's kernels in the background while a cold process runs on the
NumPy reference.

A fresh install has no compiled kernels in Numba's disk cache, and compiling the
runtime's (a dense layer and a recurrent time loop) takes several seconds, longer than
the NumPy reference needs for a few seconds of audio. So when an
:class:`~npspeech.runtime.InferenceNetwork` left to choose its kernels finds them
missing from the cache, it runs short inputs on the reference and calls :func:`start`,
which starts ``python -m npspeech.runtime._warmup ARCHITECTURE KIND WEIGHTS``: a
detached process at the lowest CPU priority (``nice`` 19, so it takes only what this
one leaves idle) that compiles those kernels into the same cache on a tiny network and
exits. Later processes find them there. One warm-up per kernel set at a time: a lock
file in the temporary folder, named after the cache folder and the kernel set, is held
while it runs (one older than :data:`STALE_SECONDS` is taken to be left over from a
killed run).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["start", "lock_path", "main"]

STALE_SECONDS = 600.0


def lock_path(architecture: str, kind: str, weights: str) -> Path:
    """The lock file of one kernel set and this process's Numba cache folder."""
    cache = os.environ.get("NUMBA_CACHE_DIR", "")
    key = hashlib.sha256(
        f"{cache}|{architecture}|{kind}|{weights}".encode()
    ).hexdigest()
    return Path(tempfile.gettempdir()) / f"npspeech-warmup-{key[:16]}.lock"


def _take_lock(path: Path) -> bool:
    try:
        if time.time() - path.stat().st_mtime > STALE_SECONDS:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def start(architecture: str, kind: str, weights: str) -> bool:
    """Start the background compile of one kernel set; False when one is running
    already (or the process could not be started)."""
    lock = lock_path(architecture, kind, weights)
    if not _take_lock(lock):
        return False
    command = [sys.executable, "-m", __name__, architecture, kind, weights, str(lock)]
    try:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this process, ignores its Ctrl-C
            # ``-m`` looks in the working folder first: run where this npspeech is
            cwd=Path(__file__).resolve().parents[2],
        )
    except OSError:
        lock.unlink(missing_ok=True)
        return False
    return True


def _tiny_network(architecture: str, kind: str):
    import numpy as np

    from .. import models
    from ..config import ModelConfig

    if architecture == "deepspeech":
        config = ModelConfig(architecture="deepspeech", n_hidden=8, dropout=0.0)
    else:
        config = ModelConfig(
            architecture=architecture,
            n_hidden=8,
            dropout=0.0,
            conv_channels=(2,),
            conv_kernels=((3, 3),),
            conv_strides=((1, 2),),
            conv_padding=((1, 1),),
            rnn_kind=kind,
            rnn_layers=1,
            lookahead_context=1,
        )
    return models.init(config, 9, 5, np.random.default_rng(0))


def main(argv: list[str] | None = None) -> int:
    """``ARCHITECTURE KIND WEIGHTS [LOCK]``: compile that kernel set into the cache,
    then remove LOCK."""
    architecture, kind, weights, *rest = sys.argv[1:] if argv is None else argv
    try:
        import numpy as np

        from .network import InferenceNetwork

        network = _tiny_network(architecture, kind)
        runtime = InferenceNetwork(network, backend="numba", weights=weights)
        features = np.zeros((6, 2, network.n_input), dtype=np.float32)
        runtime.forward(features, np.array([6, 6], dtype=np.int32))
    finally:
        if rest:
            Path(rest[0]).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    os.nice(19)  # the lowest priority: only the CPU the decoding process leaves idle
    raise SystemExit(main())
