"""The weight-gradient product ``a.T @ b`` of two arrays with many rows.

A dense layer's weight gradient is ``x.T @ dy``: x (N, F_in) and dy (N, F_out) both
have one row per frame (N = T * B, thousands), and the result (F_in, F_out) is small.
NumPy's OpenBLAS ran this shape ~20% slower per multiply-add than a tall product of
the same size ((4800, 512) x (512, 512) against (512, 4800) x (4800, 512), 1 and 2
threads; MKL does not show the gap). This module computes it with the register tile of
:mod:`.packed_matmul`, blocked the usual way for such kernels:

- k (the frames) runs in blocks of :data:`DEPTH_BLOCK`. Per block both operands are
  copied into the tile's layouts: ``a``'s rows into row tiles (M/8, KC, 8) and ``b``'s
  columns into panels (N/NR, KC, NR), zero padded to a multiple of
  :data:`~.packed_matmul.UNROLL` rows;
- for each panel (32 KiB at KC = 256, float32: it stays in L1) every row tile runs the
  tile over the block, adding to the sums of the earlier blocks;
- the threads take contiguous ranges of frames, each into a product of its own, and
  the partial products are summed. Frames are the one long dimension, and this way no
  operand is copied twice.

Columns past the last whole panel (a 29-symbol output layer has no whole one) go to
BLAS. The frame order of the sums differs from BLAS's, so results agree to float
rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .packed_matmul import UNROLL, _tile8, panel_width, row_tiles

__all__ = ["transposed_product"]

# Frames per block: a float32 panel of 256 x 32 is 32 KiB (L1), the row tiles of a
# 512-wide operand 512 KiB (L2). 128 and 512 measured within 5% of it.
DEPTH_BLOCK = 256
MR = 8  # rows per register tile
# Fewer frames per thread than this and splitting the frames costs more (partial
# products to sum) than the extra thread brings.
MIN_FRAMES_PER_THREAD = 512
# Results larger than this go to BLAS: every frame block re-reads and re-writes the
# whole result, which then no longer stays in cache. Measured, float32, K = 4800, two
# threads, against NumPy's product: 512 x 512 (1 MiB) 0.8x the time, 768 x 768 (2.25
# MiB) 0.92x, 1024 x 1024 (4 MiB) 1.03x, 2048 x 2048 (16 MiB) 1.1x.
MAX_RESULT_BYTES = 3 * 2**20


@njit(cache=True)
def _pack_row_tiles(a, k0, kb, kp, tiles):  # pragma: no cover - jit
    """``tiles[t, k, i] = a[k0 + k, MR*t + i]`` for k < kb, zero for kb <= k < kp (the
    padding to a multiple of UNROLL). The last tile's columns past a's last are left as
    they are: the tiles of 4, 2 and 1 rows that cover it never read them."""
    M = a.shape[1]
    for k in range(kb):
        for t in range(tiles.shape[0]):
            for i in range(min(MR, M - MR * t)):
                tiles[t, k, i] = a[k0 + k, MR * t + i]
    tiles[:, kb:kp, :] = 0.0


@njit(cache=True)
def _pack_panels(b, k0, kb, kp, panels):  # pragma: no cover - jit
    """``panels[p, k, j] = b[k0 + k, NR*p + j]`` for k < kb, zero for kb <= k < kp."""
    P, _, nr = panels.shape
    for k in range(kb):
        for p in range(P):
            for j in range(nr):
                panels[p, k, j] = b[k0 + k, nr * p + j]
    panels[:, kb:kp, :] = 0.0


@njit(cache=True)
def _frames(a, b, out, k_begin, k_end, nr):  # pragma: no cover - jit
    """``out[:, :P*nr] = a[k_begin:k_end].T @ b[k_begin:k_end, :P*nr]``, P = the whole
    panels of ``nr`` columns in b; the rest of out is left as it is."""
    M = a.shape[1]
    P = b.shape[1] // nr
    full, rest = divmod(M, MR)
    tiles = np.empty((full + (rest > 0), DEPTH_BLOCK, MR), dtype=a.dtype)
    panels = np.empty((P, DEPTH_BLOCK, nr), dtype=b.dtype)
    for k0 in range(k_begin, k_end, DEPTH_BLOCK):
        kb = min(k_end - k0, DEPTH_BLOCK)
        kp = -(-kb // UNROLL) * UNROLL
        later = k0 > k_begin  # add to the sums of the earlier blocks
        _pack_row_tiles(a, k0, kb, kp, tiles)
        _pack_panels(b, k0, kb, kp, panels)
        for p in range(P):
            # the whole tiles called directly: through row_tiles they ran 2-4% slower
            for t in range(full):
                _tile8(tiles[t], 0, panels, p, 0, kp, later, False, out, MR * t)
            if rest:  # the last tile over its filled columns only
                last = tiles[full]
                row_tiles(last, rest, panels, p, 0, kp, later, False, out, MR * full)


@njit(cache=True, parallel=True)
def _product(a, b, out, nr, parts):  # pragma: no cover - jit
    """``out[:, :P*nr] = a.T @ b[:, :P*nr]``, the frames split in ``parts`` ranges."""
    K = a.shape[0]
    if parts <= 1:
        _frames(a, b, out, 0, K, nr)
        return
    partial = np.empty((parts - 1, out.shape[0], out.shape[1]), dtype=out.dtype)
    for part in prange(parts):
        k0, k1 = part * K // parts, (part + 1) * K // parts
        if part == 0:
            _frames(a, b, out, k0, k1, nr)
        else:
            _frames(a, b, partial[part - 1], k0, k1, nr)
    width = b.shape[1] // nr * nr
    for i in prange(out.shape[0]):
        for part in range(parts - 1):
            for j in range(width):
                out[i, j] += partial[part, i, j]


def transposed_product(a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """``a.T @ b``: a (K, M), b (K, N), one float dtype -> (M, N), C-contiguous.

    Float32 and float64 operands with at least one whole panel of columns (N >= 32
    for float32, 16 for float64) and a result of at most :data:`MAX_RESULT_BYTES`
    take the tiled path on up to ``threads`` Numba threads; anything else is NumPy's
    product.
    """
    if (
        a.ndim != 2
        or b.ndim != 2
        or a.shape[0] != b.shape[0]
        or a.dtype != b.dtype
        or a.dtype not in (np.float32, np.float64)
    ):
        return a.T @ b
    K, M = a.shape
    N = b.shape[1]
    nr = panel_width(a.dtype)
    whole = N - N % nr
    if whole == 0 or K == 0 or M == 0 or M * N * a.itemsize > MAX_RESULT_BYTES:
        return a.T @ b
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    out = np.empty((M, N), dtype=a.dtype)
    parts = max(1, min(threads, K // MIN_FRAMES_PER_THREAD))
    _product(a, b, out, nr, parts)
    if whole < N:
        out[:, whole:] = a.T @ b[:, whole:]
    return out
