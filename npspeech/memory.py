"""Large array buffers reused from one training step to the next.

Each training step allocates the same large temporaries again (activations kept for the
backward pass, gate tapes, gradients). The C library returns blocks that large to the
operating system when they are freed, so every step paid for mapping and zeroing fresh
pages: ~23,000 page faults per step of the DeepSpeech stack at H=512, a tenth of a
second, and more in cache misses on the new pages. Inside :func:`pooled_arrays`, NumPy
allocates through ``npspeech._ext.array_pool`` (a NEP 49 memory handler), which keeps
freed blocks of 1 MiB and more in per-size free lists for the next step.

The handler is a context variable of NumPy's: it applies to arrays created in the
calling thread inside the ``with`` block, and each array is freed through the handler
that made it, wherever and whenever that happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._native import load_extension

__all__ = ["DEFAULT_POOL_BYTES", "pooled_arrays", "pool_stats", "release_pool"]

# Freed bytes kept for reuse at most; beyond it blocks go back to the C library. A
# training step of the DeepSpeech stack at H=2048 and B=16 frees ~1.5 GiB.
DEFAULT_POOL_BYTES = 4 * 2**30

_pool: Any = None
_loaded = False


def _extension() -> Any:
    global _pool, _loaded
    if not _loaded:
        _pool = load_extension("array_pool")
        _loaded = True
    return _pool


@contextmanager
def pooled_arrays(limit_bytes: int = DEFAULT_POOL_BYTES) -> Iterator[None]:
    """NumPy arrays created in this thread inside the block come from the pool.

    ``limit_bytes``: freed bytes kept for reuse at most. Without the compiled extension
    the block runs with NumPy's own allocator.
    """
    pool = _extension()
    if pool is None:
        yield
        return
    previous = pool.install(int(limit_bytes))
    try:
        yield
    finally:
        pool.restore(previous)


def release_pool() -> None:
    """Give every cached block back to the C library (arrays in use keep theirs)."""
    pool = _extension()
    if pool is not None:
        pool.release()


def pool_stats() -> dict[str, int]:
    """``cached_bytes``, ``hits`` and ``misses`` of the pool (zeros without it)."""
    pool = _extension()
    if pool is None:
        return {"cached_bytes": 0, "hits": 0, "misses": 0}
    return pool.stats()
