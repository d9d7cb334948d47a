"""The inference kernels compiled with Numba: the names, signatures and results of
:mod:`._reference` (read it for the equations).

- Dense layers: the product in BLAS and the bias with the clipped ReLU in one fused
  pass over the output: the training backend's ``dense_forward`` and
  ``dense_clip_forward``, reused as they are, so a first run compiles nothing more for
  them (they also sit in Numba's on-disk cache after any training run).
- Recurrent layers: one compiled call runs every frame of a chunk. The recurrent
  weight is packed once, when the network is built (:func:`pack_recurrent`), into the
  column panels of :mod:`npspeech.backends.numba_cpu.packed_matmul`, whose register
  tiles compute each step's ``h W_hh`` (training packs it on every call); the gates
  are the float32 ``sigmoid`` and ``tanh`` of :mod:`~npspeech.backends.numba_cpu.
  gate_math` in branch-free loops that vectorise. At batch 1 a step streams the whole
  packed weight (64 MiB for an LSTM of 2048 units), so the product is memory-bound
  and the tile prefetches the next block of panels as it goes.
- Few compiled functions (a fresh install compiles them on first use): the three
  kinds share one time loop, :func:`_rows`, specialised by a ``kind`` constant, and
  one parallel wrapper that splits a batch's sequences over Numba's threads (each
  thread running the whole time loop for its rows); a single sequence instead splits
  the product's column panels over the threads.

Subnormal states and gates are flushed to zero, as in training (see
``npspeech/backends/numba_cpu/rnn.py``: a saturated gate's subnormal values otherwise
slow every operation on them a hundredfold on x86).

Shape legend as in :mod:`._reference`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..backends.numba_cpu import packed_matmul
from ..backends.numba_cpu.gate_math import normal_or_zero, sigmoid, tanh

__all__ = [
    "pack_conv",
    "conv_clip",
    "pack_dense",
    "dense",
    "dense_clip",
    "pack_recurrent",
    "lstm_sequence",
    "gru_sequence",
    "rnn_sequence",
]

_LSTM, _GRU, _RNN = 0, 1, 2
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


# Rows of a dense layer's input per block: the block's transposed rows (Kp, 64) stay
# in L2 while every panel of the weight passes over them (512 KiB at K = 2048).
ROWS_PER_BLOCK = 64


def pack_dense(W: np.ndarray) -> np.ndarray:
    """A dense layer's ``W`` (F_in, F_out) as column panels (P, Kp, NR)."""
    return packed_matmul.pack_panels(np.ascontiguousarray(W, dtype=np.float32))


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


@njit(cache=True, parallel=True)
def _dense_kernel(x, W_packed, b, low, high, clip, out, threads):  # pragma: no cover
    """out[:, :N] = x @ W + b, clipped to [low, high] when ``clip``; x (M, K), out
    (M, P*NR). Rows in blocks of ROWS_PER_BLOCK, the blocks split over the threads;
    each block's bias and clip run right after its product, while it is in cache."""
    M, K = x.shape
    P, Kp, nr = W_packed.shape
    N = b.size
    R = ROWS_PER_BLOCK
    ahead = W_packed.size * W_packed.itemsize > packed_matmul.PREFETCH_ABOVE_BYTES
    n_blocks = (M + R - 1) // R
    parts = max(1, min(threads, n_blocks))
    for part in prange(parts):
        a_t = np.zeros((Kp, R), dtype=x.dtype)  # the padding rows K..Kp stay zero
        for block in range(part * n_blocks // parts, (part + 1) * n_blocks // parts):
            r0 = block * R
            rows = min(M, r0 + R) - r0
            _transpose_rows(x, r0, rows, a_t)
            for p in range(P):
                for k0 in range(0, Kp, packed_matmul.DEPTH_BLOCK):
                    k1 = min(Kp, k0 + packed_matmul.DEPTH_BLOCK)
                    packed_matmul.row_tiles(
                        a_t, rows, W_packed, p, k0, k1, k0 > 0, ahead, out, r0
                    )
            for r in range(r0, r0 + rows):
                if clip:
                    for j in range(N):
                        v = out[r, j] + b[j]
                        out[r, j] = low if v < low else (high if v > high else v)
                else:
                    for j in range(N):
                        out[r, j] += b[j]


def _dense(x, W_packed, b, low, high, clip):
    x = np.ascontiguousarray(x, dtype=np.float32)
    P, _, nr = W_packed.shape
    out = np.empty((x.shape[0], P * nr), dtype=np.float32)
    _dense_kernel(
        x,
        W_packed,
        b,
        np.float32(low),
        np.float32(high),
        clip,
        out,
        numba.get_num_threads(),
    )
    return out[:, : b.size]  # padded panels: a view of the N real columns


def dense(x: np.ndarray, W_packed: np.ndarray, b: np.ndarray) -> np.ndarray:
    """See :func:`._reference.dense`; ``W_packed`` from :func:`pack_dense`."""
    return _dense(x, W_packed, b, 0.0, 0.0, False)


def dense_clip(
    x: np.ndarray, W_packed: np.ndarray, b: np.ndarray, low: float, high: float
) -> np.ndarray:
    """See :func:`._reference.dense_clip`; ``W_packed`` from :func:`pack_dense`."""
    return _dense(x, W_packed, b, low, high, True)


def pack_conv(W: np.ndarray) -> np.ndarray:
    """A convolution's ``W`` (C_out, C_in, kt, kf) as the panels of ``W_all`` (C_in *
    kf, kt * C_out), ``W_all[(c, l), (k, o)] = W[o, c, k, l]``: every time offset's
    weights side by side (see :func:`conv_clip`)."""
    C_out, C_in, kt, kf = W.shape
    return pack_dense(W.transpose(1, 3, 2, 0).reshape(C_in * kf, kt * C_out))


def conv_clip(xp, W_packed, b, kernel, stride, low, high):
    """See :func:`._reference.conv_clip`; ``W_packed`` from :func:`pack_conv`.

    As shifted products: the input is unfolded over frequency only, ``U[t, b, f] =
    xp[t, b, :, f*sf : f*sf + kf]`` (Tp*B*F', C_in*kf), and one product with every
    time offset's weights side by side gives ``Z = U W_all`` (Tp*B*F', kt*C_out); then
    ``y[t] = sum_k Z[t*st + k, ..., k, :]``. The unfolded input is kt times smaller
    than a full im2col (for DeepSpeech2's second convolution, 1.7 M values instead of
    15 M per second of audio), and copying values into the product's layout costs
    more here than the multiply-adds.
    """
    (kt, kf), (st, sf) = kernel, stride
    Tp, B, C, Fp = xp.shape
    C_out = b.size
    T_out = (Tp - kt) // st + 1
    F_out = (Fp - kf) // sf + 1
    windows = np.lib.stride_tricks.sliding_window_view(xp, kf, axis=3)[..., ::sf, :]
    # windows (Tp, B, C, F', kf) -> U (Tp, B, F', C, kf)
    U = np.ascontiguousarray(windows[:, :, :, :F_out].transpose(0, 1, 3, 2, 4))
    zero = np.zeros(kt * C_out, dtype=np.float32)
    Z = dense(U.reshape(Tp * B * F_out, C * kf), W_packed, zero)
    Z = Z.reshape(Tp, B, F_out, kt, C_out)
    last = (T_out - 1) * st + 1  # frames t*st of the outputs, first offset
    y = Z[0:last:st, :, :, 0, :] + b  # (T', B, F', C_out)
    for k in range(1, kt):
        y += Z[k : k + last : st, :, :, k, :]
    np.clip(y, np.float32(low), np.float32(high), out=y)
    return np.ascontiguousarray(y.transpose(0, 1, 3, 2))  # (T', B, C_out, F')


def pack_recurrent(W_hh: np.ndarray) -> np.ndarray:
    """``W_hh`` (H, G*H) as column panels (P, Kp, NR) for the per-step product."""
    return packed_matmul.pack_panels(np.ascontiguousarray(W_hh))


@njit(cache=True, error_model="numpy")
def _sigmoid_of_sum(a, b, c, out):  # pragma: no cover - jit
    """out = sigmoid(a + b + c), all (N,): one loop that vectorises."""
    for k in range(out.size):
        out[k] = normal_or_zero(out, sigmoid(a[k] + b[k] + c[k]))


@njit(cache=True, error_model="numpy")
def _cell(kind, xw, hw, bias, h, c, ceiling, gates):  # pragma: no cover - jit
    """One sequence's step, in place on ``h`` and ``c`` (H,); xw, hw, bias (G*H,);
    ``gates`` (G*H,) scratch. One loop per kind of nonlinearity, so each vectorises."""
    H = h.size
    if kind == _LSTM:
        _sigmoid_of_sum(xw[: 2 * H], hw[: 2 * H], bias[: 2 * H], gates[: 2 * H])
        for k in range(2 * H, 3 * H):
            gates[k] = tanh(xw[k] + hw[k] + bias[k])
        _sigmoid_of_sum(xw[3 * H :], hw[3 * H : 4 * H], bias[3 * H :], gates[3 * H :])
        for k in range(H):
            c[k] = normal_or_zero(c, gates[H + k] * c[k] + gates[k] * gates[2 * H + k])
        for k in range(H):
            h[k] = normal_or_zero(h, gates[3 * H + k] * tanh(c[k]))
    elif kind == _GRU:
        # r, z = sigmoid(x W_i + b_i + h W_h + b_h); n = tanh(x W_in + b_in +
        # r (h W_hn + b_hn)); h' = (1 - z) n + z h
        _sigmoid_of_sum(xw[: 2 * H], hw[: 2 * H], bias[: 2 * H], gates[: 2 * H])
        for k in range(H):
            hn = hw[2 * H + k] + bias[2 * H + k]
            gates[2 * H + k] = tanh(xw[2 * H + k] + gates[k] * hn)
        for k in range(H):
            z = gates[H + k]
            h[k] = normal_or_zero(h, (_ONE - z) * gates[2 * H + k] + z * h[k])
    else:
        for k in range(H):
            v = xw[k] + hw[k] + bias[k]
            h[k] = normal_or_zero(h, min(max(v, _ZERO), ceiling))


@njit(cache=True)
def _rows(
    kind, xw, lengths, W_packed, bias, h, c, ceiling, y, b0, b1, threads
):  # pragma: no cover - jit
    """The time loop for sequences ``b0 .. b1 - 1``: every frame of the chunk."""
    T = y.shape[0]
    a_t, hw = packed_matmul.buffers(W_packed, b1 - b0)
    gates = np.empty(bias.size, dtype=xw.dtype)
    for t in range(T):
        # rows past their length ride along in the product; their state is unchanged
        packed_matmul.rows_times(h[b0:b1], a_t, W_packed, hw, threads)  # h W_hh
        for b in range(b0, b1):
            if t < lengths[b]:
                _cell(kind, xw[t, b], hw[b - b0], bias, h[b], c[b], ceiling, gates)
                y[t, b, :] = h[b]
            else:
                y[t, b, :] = 0.0


@njit(cache=True, parallel=True)
def _sequence(
    kind, xw, lengths, W_packed, bias, h, c, ceiling, y, threads
):  # pragma: no cover - jit
    B = y.shape[1]
    parts = min(threads, B)
    if parts <= 1:
        _rows(kind, xw, lengths, W_packed, bias, h, c, ceiling, y, 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = part * B // parts, (part + 1) * B // parts
            _rows(kind, xw, lengths, W_packed, bias, h, c, ceiling, y, b0, b1, 1)


def _run(kind, xw, lengths, W_packed, bias, h, c, ceiling, y) -> None:
    _sequence(
        kind,
        np.ascontiguousarray(xw),
        np.ascontiguousarray(lengths, dtype=np.int64),
        W_packed,
        bias,
        h,
        c,
        np.float32(ceiling),
        y,
        numba.get_num_threads(),
    )


def lstm_sequence(xw, lengths, W_packed, bias, h, c, y) -> None:
    """See :func:`._reference.lstm_sequence`."""
    _run(_LSTM, xw, lengths, W_packed, bias, h, c, 0.0, y)


def gru_sequence(xw, lengths, W_packed, b_hh, h, y) -> None:
    """See :func:`._reference.gru_sequence`."""
    _run(_GRU, xw, lengths, W_packed, b_hh, h, h, 0.0, y)


def rnn_sequence(xw, lengths, W_packed, bias, h, ceiling, y) -> None:
    """See :func:`._reference.rnn_sequence`."""
    _run(_RNN, xw, lengths, W_packed, bias, h, h, ceiling, y)
