"""The inference kernels compiled with Numba: the names, signatures and results of
:mod:`._reference` (read it for the equations).

- Every product runs on the register tiles of
  :mod:`npspeech.backends.numba_cpu.packed_matmul`, the weights packed into its column
  panels once, when the network is built (:func:`pack_dense`, :func:`pack_recurrent`,
  :func:`pack_conv`). NumPy's OpenBLAS ran the streaming shapes (50 rows by a layer
  of 512-2048) 4-10x slower than PyTorch on the project machine; the tiles run them
  at PyTorch's speed.
- Dense layers: rows in blocks of :data:`ROWS_PER_BLOCK`, each block's bias and
  clipped ReLU applied right after its product, while it is in cache (the fused
  dense + bias + clip). Weights larger than L2 are prefetched a block ahead
  (:func:`_prefetches`).
- Convolutions: one product of the frequency-unfolded input with every time offset's
  weights, then shifted sums (:func:`conv_clip`); only the (frame, offset) pairs an
  output reads are computed.
- Recurrent layers: one compiled call runs every frame of a chunk, each step's
  ``h W_hh`` on the tiles (training packs ``W_hh`` on every call; here it is packed
  once); the gates are the float32 ``sigmoid`` and ``tanh`` of
  :mod:`npspeech.backends.numba_cpu.gate_math` in branch-free loops that vectorise. At
  batch 1 a step streams the whole weight (64 MiB for an LSTM of 2048 units); the
  tile prefetches the next block of panels as it goes.
- int8 weights (:class:`Int8Panels`, from ``pack_*_int8``): the same tiles read the
  int8 panels and convert each loaded row to float32 (a quarter of the bytes per
  weight; streaming is bound by reading them), then each output column is scaled
  (fused with the bias in dense layers, one pass per step in the time loop). The
  activations stay float32.
- Few compiled functions, all serial (a fresh install compiles them on first use):
  the three kinds share the source of one time loop, :func:`_rows`, copied per cell
  so that a model compiles only its own kind. Threads come from a pool of Python
  threads over ``nogil`` kernels (see :func:`_split`): row blocks of a dense layer,
  sequences of a batch. A single sequence's recurrence runs on one thread.

Subnormal states and gates are flushed to zero, as in training (see
``npspeech/backends/numba_cpu/rnn.py``: a saturated gate's subnormal values otherwise
slow every operation on them a hundredfold on x86).

Shape legend as in :mod:`._reference`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from types import FunctionType
from typing import NamedTuple

import numba
import numpy as np
from numba import njit

from ..backends.numba_cpu import packed_matmul
from ..backends.numba_cpu.gate_math import normal_or_zero, sigmoid, tanh

__all__ = [
    "Int8Panels",
    "pack_conv",
    "pack_conv_int8",
    "conv_clip",
    "pack_dense",
    "pack_dense_int8",
    "dense",
    "dense_clip",
    "pack_recurrent",
    "pack_recurrent_int8",
    "lstm_sequence",
    "gru_sequence",
    "rnn_sequence",
]

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


# Rows of a dense layer's input per block: the block's transposed rows (Kp, 64) stay
# in L2 while every panel of the weight passes over them (512 KiB at K = 2048).
ROWS_PER_BLOCK = 64
# A weight larger than this does not stay in a core's L2 (1-2 MiB on current x86 and
# Arm server cores) from one call to the next: see :func:`_prefetches`.
L2_BYTES = 2**20


def _prefetches(W_packed: np.ndarray, rows: int) -> bool:
    """Whether a product of ``rows`` rows by ``W_packed`` (P, Kp, NR) prefetches the
    next block of the weight as it goes.

    Weights streamed from DRAM always (:data:`packed_matmul.PREFETCH_ABOVE_BYTES`).
    Weights beyond L2 too when the tiles have several rows: each panel row then feeds
    8 rows of multiply-adds, which hide the prefetch instructions, and the next
    block's fetch runs under the current block's arithmetic instead of stalling the
    first tile of every panel (a (50, 1024) x (1024, 3072) dense step, one thread:
    3.59 -> 3.33 ms with its weights in L3, 5.13 -> 4.57 ms evicted between calls).
    A single row's step (the recurrent product at batch 1) only streams, and there
    the prefetches cost ~10% while the weight sits in L3.
    """
    nbytes = W_packed.size * W_packed.itemsize
    if nbytes > packed_matmul.PREFETCH_ABOVE_BYTES:
        return True
    return rows >= 8 and nbytes > L2_BYTES


def pack_dense(W: np.ndarray) -> np.ndarray:
    """A dense layer's ``W`` (F_in, F_out) as column panels (P, Kp, NR)."""
    return packed_matmul.pack_panels(np.ascontiguousarray(W, dtype=np.float32))


class Int8Panels(NamedTuple):
    """An int8 weight ``W = q * scale`` as the kernels read it.

    Attributes
    ----------
    panels : int8 array, shape (P, Kp, NR)
        ``q`` (K, N) in column panels of the float32 width (``NR = 32``): the tiles
        convert each loaded panel row to float32.
    scale : float32 array, shape (P * NR,)
        Each column's scale (one past N), applied to the product's columns.
    """

    panels: np.ndarray
    scale: np.ndarray


def _int8_panels(q: np.ndarray, scale: np.ndarray) -> Int8Panels:
    nr = packed_matmul.panel_width(np.float32)
    panels = packed_matmul.pack_panels(np.ascontiguousarray(q, dtype=np.int8), nr)
    padded = np.ones(panels.shape[0] * nr, dtype=np.float32)
    padded[: scale.size] = scale
    return Int8Panels(panels, padded)


def pack_dense_int8(q: np.ndarray, scale: np.ndarray) -> Int8Panels:
    """An int8 dense weight: ``q`` int8 (F_in, F_out), ``scale`` float32 (F_out,)."""
    return _int8_panels(q, scale)


def _panels_and_scale(W_packed):
    """(panels, column scale): float panels get a scale of ones (exact)."""
    if isinstance(W_packed, Int8Panels):
        return W_packed.panels, W_packed.scale
    P, _, nr = W_packed.shape
    return W_packed, np.ones(P * nr, dtype=np.float32)


@njit(cache=True)
def _transpose_rows(x, r0, rows, a_t):  # pragma: no cover - jit
    """a_t[:K, :rows] = x[r0 : r0 + rows].T in tiles of 16 x 16, so that both the reads
    and the writes stay within a few cache lines (a plain column-by-column copy took
    a cache line per write)."""
    K = x.shape[1]
    for k0 in range(0, K, 16):
        k1 = min(K, k0 + 16)
        for q0 in range(0, rows, 16):
            for r in range(q0, min(rows, q0 + 16)):
                for k in range(k0, k1):
                    a_t[k, r] = x[r0 + r, k]


@njit(cache=True, nogil=True)
def _product(a_t, rows, W_packed, out, out_row0, ahead):  # pragma: no cover - jit
    """``out[out_row0 : out_row0 + rows] = a_t[:, :rows].T @ W`` over every panel of
    ``W_packed`` (P, Kp, NR); a_t (Kp, R) from :func:`_transpose_rows`, out (M, P*NR).
    k runs in blocks of ``DEPTH_BLOCK``, so that the row tiles re-read a panel block
    from cache; with ``ahead`` the tiles prefetch the next block as they go."""
    P, Kp, _ = W_packed.shape
    for p in range(P):
        for k0 in range(0, Kp, packed_matmul.DEPTH_BLOCK):
            k1 = min(Kp, k0 + packed_matmul.DEPTH_BLOCK)
            packed_matmul.row_tiles(
                a_t, rows, W_packed, p, k0, k1, k0 > 0, ahead, out, out_row0
            )


@njit(cache=True, nogil=True)
def _dense_blocks(
    x, W_packed, scale, b, low, high, clip, out, first, last, ahead
):  # pragma: no cover - jit
    """Row blocks ``first .. last - 1`` of ``out[:, :N] = (x @ W) * scale + b``,
    clipped to [low, high] when ``clip``; x (M, K), out (M, P*NR), scale (P*NR,)
    (ones for float weights). Each block's scale, bias and clip run right after its
    product, while it is in cache."""
    M = x.shape[0]
    R = ROWS_PER_BLOCK
    a_t = np.zeros((W_packed.shape[1], R), dtype=x.dtype)  # rows K..Kp stay zero
    N = b.size
    for block in range(first, last):
        r0 = block * R
        rows = min(M, r0 + R) - r0
        _transpose_rows(x, r0, rows, a_t)
        _product(a_t, rows, W_packed, out, r0, ahead)
        for r in range(r0, r0 + rows):
            if clip:
                for j in range(N):
                    v = out[r, j] * scale[j] + b[j]
                    out[r, j] = low if v < low else (high if v > high else v)
            else:
                for j in range(N):
                    out[r, j] = out[r, j] * scale[j] + b[j]


# Threads: the kernels are compiled serial and release the GIL (``nogil``); a call
# splits its independent work (row blocks, a batch's sequences) over a pool of Python
# threads, Numba's thread count of them. A ``parallel=True`` build of the same loops
# took three times as long to compile on a fresh install (issue 16: the first run
# counts), for work that splits into a few large parts anyway.
_POOL: dict = {}  # "executor", its "workers" and the "pid" that started it


def _split(work, parts: int) -> None:
    """``work(part)`` for each part in ``range(parts)``, on threads when parts > 1."""
    if parts <= 1:
        work(0)
        return
    # a forked child inherits the executor but not its threads: start another there
    if _POOL.get("pid") != os.getpid() or _POOL["workers"] < parts:
        _POOL.update(
            executor=ThreadPoolExecutor(max_workers=parts),
            workers=parts,
            pid=os.getpid(),
        )
    for future in [_POOL["executor"].submit(work, part) for part in range(parts)]:
        future.result()


def _dense(x, W_packed, b, low, high, clip):
    x = np.ascontiguousarray(x, dtype=np.float32)
    W_packed, scale = _panels_and_scale(W_packed)
    P, _, nr = W_packed.shape
    M = x.shape[0]
    out = np.empty((M, P * nr), dtype=np.float32)
    n_blocks = -(-M // ROWS_PER_BLOCK)
    parts = max(1, min(numba.get_num_threads(), n_blocks))
    low, high = np.float32(low), np.float32(high)
    ahead = _prefetches(W_packed, min(M, ROWS_PER_BLOCK))

    def work(part):
        first, last = part * n_blocks // parts, (part + 1) * n_blocks // parts
        _dense_blocks(x, W_packed, scale, b, low, high, clip, out, first, last, ahead)

    _split(work, parts)
    return out[:, : b.size]  # padded panels: a view of the N real columns


def dense(x: np.ndarray, W_packed: np.ndarray, b: np.ndarray) -> np.ndarray:
    """See :func:`._reference.dense`; ``W_packed`` from :func:`pack_dense`."""
    return _dense(x, W_packed, b, 0.0, 0.0, False)


def dense_clip(
    x: np.ndarray, W_packed: np.ndarray, b: np.ndarray, low: float, high: float
) -> np.ndarray:
    """See :func:`._reference.dense_clip`; ``W_packed`` from :func:`pack_dense`."""
    return _dense(x, W_packed, b, low, high, True)


def pack_conv(W: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """A convolution's ``W`` (C_out, C_in, kt, kf) for :func:`conv_clip`: the panels
    of ``W_all`` (st * C_in * kf, J * C_out), ``J = ceil(kt / st)``, with
    ``W_all[(s, c, df), (j, o)] = W[o, c, j * st + s, df]`` (zero past kt): the weights
    of every time offset side by side."""
    return pack_dense(_conv_matrix(np.asarray(W, dtype=np.float32), stride))


def _conv_matrix(W: np.ndarray, stride) -> np.ndarray:
    """``W_all`` of :func:`pack_conv`, in ``W``'s dtype, not packed."""
    C_out, C_in, kt, kf = W.shape
    st = int(stride[0])
    J = -(-kt // st)
    padded = np.zeros((C_out, C_in, J * st, kf), dtype=W.dtype)
    padded[:, :, :kt] = W
    W_all = padded.reshape(C_out, C_in, J, st, kf).transpose(3, 1, 4, 2, 0)
    return W_all.reshape(st * C_in * kf, J * C_out)


def pack_conv_int8(q: np.ndarray, scale: np.ndarray, stride) -> Int8Panels:
    """An int8 convolution: ``q`` int8 (C_out, C_in, kt, kf), ``scale`` float32
    (C_out,); the layout of :func:`pack_conv`, each time offset's columns scaled
    alike."""
    J = -(-q.shape[2] // int(stride[0]))
    return _int8_panels(_conv_matrix(q, stride), np.tile(scale, J))


@njit(cache=True, nogil=True, inline="always")
def _tiles_from(
    a_t, c0, c1, W_packed, p, k0, k1, accumulate, ahead, out, out_row0
):  # pragma: no cover - jit
    """:func:`packed_matmul.row_tiles` over the columns ``c0 .. c1 - 1`` of ``a_t``
    (not from column 0): column c's sums go to ``out`` row ``out_row0 + c - c0``."""
    r = c0
    while c1 - r >= 8:
        packed_matmul._tile8(
            a_t, r, W_packed, p, k0, k1, accumulate, ahead, out, out_row0 + r - c0
        )
        r += 8
    if c1 - r >= 4:
        packed_matmul._tile4(
            a_t, r, W_packed, p, k0, k1, accumulate, ahead, out, out_row0 + r - c0
        )
        r += 4
    if c1 - r >= 2:
        packed_matmul._tile2(
            a_t, r, W_packed, p, k0, k1, accumulate, ahead, out, out_row0 + r - c0
        )
        r += 2
    if c1 - r >= 1:
        packed_matmul._tile1(
            a_t, r, W_packed, p, k0, k1, accumulate, ahead, out, out_row0 + r - c0
        )


@njit(cache=True, nogil=True)
def _conv_blocks(
    xp, W_packed, st, sf, kf, F_out, T_out, C_out, out, first, last, ahead
):  # pragma: no cover - jit
    """Row blocks ``first .. last - 1`` of ``Z = U W_all`` (see :func:`conv_clip`):
    row (t2, b, f) of U holds ``xp[t2*st + s, b, c, f*sf + df]`` at (s, c, df), zero
    past the input's end; it is written straight into the transposed block.

    Only the entries that an output reads are computed: time offset j's columns
    (j, o) of rows t2 in ``j .. j + T_out - 1``. A panel holds the columns of offsets
    ``j_lo .. j_hi``, and the rows it needs are contiguous, since t2 is the rows'
    slowest index. A stream's chunk of T_out frames has ``J - 1`` more rows than
    outputs, 17% of the product for DeepSpeech2's second convolution at 50 frames;
    the rest of those rows of ``out`` stay unwritten."""
    Tp, B, C, _ = xp.shape
    M = out.shape[0]
    P, Kp, nr = W_packed.shape
    per_t2 = B * F_out  # rows of Z per frame t2
    R = ROWS_PER_BLOCK
    a_t = np.zeros((W_packed.shape[1], R), dtype=xp.dtype)
    for block in range(first, last):
        r0 = block * R
        rows = min(M, r0 + R) - r0
        # the block's rows in runs of one (t2, b), frequencies f0 .. f0 + run - 1:
        # within a run, a_t's row k = (s, c, df) is a strided slice of one row of xp
        # (a loop per element with its own indices took 2.2 ns a value, a fifth of
        # the second convolution's time)
        r = 0
        while r < rows:
            t2, b = divmod((r0 + r) // F_out, B)
            f0 = (r0 + r) % F_out
            run = min(rows - r, F_out - f0)
            k = 0
            for s in range(st):
                t = t2 * st + s
                for c in range(C):
                    for df in range(kf):
                        if t < Tp:
                            for i in range(run):
                                a_t[k, r + i] = xp[t, b, c, (f0 + i) * sf + df]
                        else:
                            for i in range(run):
                                a_t[k, r + i] = 0.0
                        k += 1
            r += run
        for p in range(P):
            j_lo, j_hi = p * nr // C_out, (p * nr + nr - 1) // C_out
            lo = max(r0, j_lo * per_t2)
            hi = min(r0 + rows, (j_hi + T_out) * per_t2)
            for k0 in range(0, Kp, packed_matmul.DEPTH_BLOCK):
                k1 = min(Kp, k0 + packed_matmul.DEPTH_BLOCK)
                _tiles_from(
                    a_t, lo - r0, hi - r0, W_packed, p, k0, k1, k0 > 0, ahead, out, lo
                )


def conv_clip(xp, W_packed, b, kernel, stride, low, high):
    """See :func:`._reference.conv_clip`; ``W_packed`` from :func:`pack_conv`.

    As shifted products: the input unfolded over frequency (``kf`` bins) and over
    one time stride (``st`` frames) only, one product with every time offset's
    weights side by side gives ``Z[t2] = U[t2] W_all``, and then
    ``y[t] = sum_j Z[t + j, ..., j, :]``. The unfolded input is kt / st times smaller
    than a full im2col (for DeepSpeech2's second convolution, 1.7 M values instead of
    15 M per second of audio): copying values into the product's layout cost more
    than the multiply-adds.
    """
    (kt, kf), (st, sf) = kernel, stride
    Tp, B, _, Fp = xp.shape
    C_out = b.size
    J = -(-kt // st)  # time offsets of Z per output frame
    T_out = (Tp - kt) // st + 1
    F_out = (Fp - kf) // sf + 1
    T2 = T_out + J - 1  # rows of Z the outputs read
    W_packed, scale = _panels_and_scale(W_packed)
    P, _, nr = W_packed.shape
    M = T2 * B * F_out
    Z = np.empty((M, P * nr), dtype=np.float32)
    xp = np.ascontiguousarray(xp, dtype=np.float32)
    n_blocks = -(-M // ROWS_PER_BLOCK)
    parts = max(1, min(numba.get_num_threads(), n_blocks))
    ahead = _prefetches(W_packed, min(M, ROWS_PER_BLOCK))

    def work(part):
        first, last = part * n_blocks // parts, (part + 1) * n_blocks // parts
        _conv_blocks(
            xp, W_packed, int(st), int(sf), int(kf), F_out, T_out, C_out, Z,
            first, last, ahead,
        )  # fmt: skip

    _split(work, parts)
    # (M, P*NR) -> (T2, B, F', J, C_out); entries no output reads are unwritten
    Z = Z[:, : J * C_out].reshape(T2, B, F_out, J, C_out)
    scale = scale[: J * C_out].reshape(J, C_out)
    int8 = W_packed.dtype == np.int8

    def term(j):  # (T', B, F', C_out): offset j's part of every output
        shifted = Z[j : j + T_out, :, :, j, :]
        return shifted * scale[j] if int8 else shifted

    y = term(0) + b
    for j in range(1, J):
        y += term(j)
    np.clip(y, np.float32(low), np.float32(high), out=y)
    return np.ascontiguousarray(y.transpose(0, 1, 3, 2))  # (T', B, C_out, F')


def pack_recurrent(W_hh: np.ndarray) -> np.ndarray:
    """``W_hh`` (H, G*H) as column panels (P, Kp, NR) for the per-step product."""
    return packed_matmul.pack_panels(np.ascontiguousarray(W_hh))


def pack_recurrent_int8(q: np.ndarray, scale: np.ndarray) -> Int8Panels:
    """An int8 ``W_hh``: ``q`` int8 (H, G*H), ``scale`` float32 (G*H,)."""
    return _int8_panels(q, scale)


@njit(cache=True, error_model="numpy")
def _sigmoid_of_sum(a, b, c, out):  # pragma: no cover - jit
    """out = sigmoid(a + b + c), all (N,): one loop that vectorises."""
    for k in range(out.size):
        out[k] = normal_or_zero(out, sigmoid(a[k] + b[k] + c[k]))


# The cells: one sequence's step, in place on ``h`` and ``c`` (H,); xw, hw, bias (G*H,);
# ``gates`` (G*H,) scratch. One loop per kind of nonlinearity, so that each vectorises.


@njit(cache=True, error_model="numpy")
def _lstm_cell(xw, hw, bias, h, c, ceiling, gates):  # pragma: no cover - jit
    H = h.size
    _sigmoid_of_sum(xw[: 2 * H], hw[: 2 * H], bias[: 2 * H], gates[: 2 * H])  # i, f
    for k in range(2 * H, 3 * H):
        gates[k] = tanh(xw[k] + hw[k] + bias[k])  # g
    _sigmoid_of_sum(xw[3 * H :], hw[3 * H : 4 * H], bias[3 * H :], gates[3 * H :])
    for k in range(H):
        c[k] = normal_or_zero(c, gates[H + k] * c[k] + gates[k] * gates[2 * H + k])
    for k in range(H):
        h[k] = normal_or_zero(h, gates[3 * H + k] * tanh(c[k]))


@njit(cache=True, error_model="numpy")
def _gru_cell(xw, hw, bias, h, c, ceiling, gates):  # pragma: no cover - jit
    # r, z = sigmoid(x W_i + b_i + h W_h + b_h); n = tanh(x W_in + b_in +
    # r (h W_hn + b_hn)); h' = (1 - z) n + z h
    H = h.size
    _sigmoid_of_sum(xw[: 2 * H], hw[: 2 * H], bias[: 2 * H], gates[: 2 * H])
    for k in range(H):
        hn = hw[2 * H + k] + bias[2 * H + k]
        gates[2 * H + k] = tanh(xw[2 * H + k] + gates[k] * hn)
    for k in range(H):
        z = gates[H + k]
        h[k] = normal_or_zero(h, (_ONE - z) * gates[2 * H + k] + z * h[k])


@njit(cache=True, error_model="numpy")
def _rnn_cell(xw, hw, bias, h, c, ceiling, gates):  # pragma: no cover - jit
    for k in range(h.size):
        v = xw[k] + hw[k] + bias[k]
        h[k] = normal_or_zero(h, min(max(v, _ZERO), ceiling))


_cell = _lstm_cell  # replaced per kind by _specialise


def _rows(
    xw, lengths, W_packed, scale, bias, h, c, ceiling, y, b0, b1
):  # pragma: no cover - jit
    """The time loop for sequences ``b0 .. b1 - 1``: every frame of the chunk;
    ``h W_hh`` is the product's columns times ``scale`` (int8 weights; empty for
    float weights, which need no scaling)."""
    T, _, H = y.shape
    P, Kp, nr = W_packed.shape
    ahead = W_packed.size * W_packed.itemsize > packed_matmul.PREFETCH_ABOVE_BYTES
    a_t = np.zeros((Kp, b1 - b0), dtype=xw.dtype)  # the state, transposed
    hw = np.empty((b1 - b0, P * nr), dtype=xw.dtype)
    gates = np.empty(bias.size, dtype=xw.dtype)
    for t in range(T):
        # h W_hh; rows past their length ride along, their state unchanged
        packed_matmul.pack_rows(h[b0:b1], a_t)
        _product(a_t, b1 - b0, W_packed, hw, 0, ahead)
        for r in range(b1 - b0):
            for j in range(scale.size):
                hw[r, j] *= scale[j]
        for b in range(b0, b1):
            # element loops, not ``y[t, b, :] = h[b]``: Numba's generic slice
            # assignment took most of this kernel's compile time (issue 16)
            if t < lengths[b]:
                _cell(xw[t, b], hw[b - b0], bias, h[b], c[b], ceiling, gates)
                for k in range(H):
                    y[t, b, k] = h[b, k]
            else:
                for k in range(H):
                    y[t, b, k] = 0.0


def _specialise(function, suffix: str, **names):
    """``function`` compiled with the globals ``names`` replaced: a copy of the time
    loop per cell, so that a model compiles only its own kind on first use. The copy
    is renamed so that Numba's on-disk cache keeps the copies apart (a cell passed as
    an argument would not stay in that cache: a function-typed argument compiles anew
    in every process)."""
    copy = FunctionType(
        function.__code__,
        {**function.__globals__, **names},
        function.__name__ + suffix,
        function.__defaults__,
        function.__closure__,
    )
    copy.__qualname__ = function.__qualname__ + suffix
    return njit(cache=True, nogil=True)(copy)


_ROWS = {
    kind: _specialise(_rows, "_" + kind, _cell=cell)
    for kind, cell in (("lstm", _lstm_cell), ("gru", _gru_cell), ("rnn", _rnn_cell))
}


def _run(kind, xw, lengths, W_packed, bias, h, c, ceiling, y) -> None:
    """The batch's sequences split over the threads, each part running the whole
    time loop for its rows (one sequence: one thread)."""
    xw = np.ascontiguousarray(xw)
    W_packed, scale = _panels_and_scale(W_packed)
    if W_packed.dtype != np.int8:
        scale = scale[:0]  # no pass over the columns
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    ceiling = np.float32(ceiling)
    B = y.shape[1]
    parts = max(1, min(numba.get_num_threads(), B))

    def work(part):
        b0, b1 = part * B // parts, (part + 1) * B // parts
        _ROWS[kind](xw, lengths, W_packed, scale, bias, h, c, ceiling, y, b0, b1)

    _split(work, parts)


def lstm_sequence(xw, lengths, W_packed, bias, h, c, y) -> None:
    """See :func:`._reference.lstm_sequence`."""
    _run("lstm", xw, lengths, W_packed, bias, h, c, 0.0, y)


def gru_sequence(xw, lengths, W_packed, b_hh, h, y) -> None:
    """See :func:`._reference.gru_sequence`."""
    _run("gru", xw, lengths, W_packed, b_hh, h, h, 0.0, y)


def rnn_sequence(xw, lengths, W_packed, bias, h, ceiling, y) -> None:
    """See :func:`._reference.rnn_sequence`."""
    _run("rnn", xw, lengths, W_packed, bias, h, h, ceiling, y)


# -- which kernels a model needs, and whether they are compiled already --------------


def _kernel_calls(architecture: str, kind: str, int8: bool):
    """(dispatcher, sample arguments) for every compiled kernel a model runs: the
    arguments have exactly the types the runtime passes (C-contiguous float32 arrays,
    int8 or float32 panels, int64 indices), so their signature is the one the cache
    holds after a run."""
    f32 = np.float32
    panels = np.zeros((1, 4, packed_matmul.panel_width(f32)), np.int8 if int8 else f32)
    ones = np.ones(panels.shape[0] * panels.shape[2], f32)
    x, out = np.zeros((1, 4), f32), np.zeros((1, panels.shape[2]), f32)
    dense = (
        _dense_blocks,
        (x, panels, ones, ones, f32(0), f32(1), True, out, 0, 1, False),
    )
    y = np.zeros((1, 1, 1), f32)
    state = np.zeros((1, 1), f32)
    rows = (
        _ROWS[kind],
        (y, np.ones(1, np.int64), panels, ones, ones, state, state, f32(0), y, 0, 1),
    )
    calls = [dense, rows]
    if architecture != "deepspeech":
        xp = np.zeros((1, 1, 1, 1), f32)
        conv = (xp, panels, 1, 1, 1, 1, 1, 1, out, 0, 1, False)
        calls.append((_conv_blocks, conv))
    return calls


def kernels_cached(architecture: str, kind: str, weights: str) -> bool:
    """True when every kernel a model of this architecture, recurrent ``kind`` and
    ``weights`` (``float32`` or ``int8``) runs is compiled in this process or in
    Numba's disk cache, so that running it now compiles nothing. A kernel found in
    the disk cache is loaded into its dispatcher, as its first call would (the steps
    of Numba's ``Dispatcher.compile`` for a cache hit), so that it is read once."""
    try:
        for dispatcher, args in _kernel_calls(architecture, kind, weights == "int8"):
            cache = getattr(dispatcher, "_cache", None)
            if cache is None:  # NUMBA_DISABLE_JIT: plain Python functions
                continue
            signature = tuple(numba.typeof(arg) for arg in args)
            if signature in dispatcher.overloads:
                continue
            result = cache.load_overload(signature, dispatcher.targetctx)
            if result is None:
                return False
            dispatcher.targetctx.insert_user_function(
                result.entry_point, result.fndesc, [result.library]
            )
            dispatcher.add_overload(result)
    except (AttributeError, TypeError):
        # a Numba whose dispatchers differ inside: say "cached", so that the kernels
        # run (and compile if they must) as they would without this check
        return True
    return True
