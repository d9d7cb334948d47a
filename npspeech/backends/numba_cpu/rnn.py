"""rnn kernels of the numba_cpu backend: the same names, signatures and results as
``numpy_ref.rnn`` (read that module for the equations and the shape legend).

How the work is split:

- forward: the input projection of every step at once, ``x W_ih + b`` as one GEMM of
  ``(T*B, F) x (F, G*H)``; then one ``@njit`` function runs the whole time loop,
  computing ``h W_hh`` per step with :mod:`.packed_matmul` (``W_hh`` packed once per
  call), then each sequence's gate math in branch-free loops that vectorise (one per
  kind of nonlinearity; the nonlinearities are :mod:`.gate_math`'s);
- backward: one ``@njit`` function runs the time loop backwards, fusing the per-step
  gate gradients and computing ``d_pre W_hh^T`` per step the same way (``W_hh^T``
  packed once); it keeps every step's pre-activation gradients ``(T, B, G*H)``, so the
  weight gradients and ``dx`` are three large GEMMs after the loop:
  ``dW_hh = H_prev^T d_pre``, ``dW_ih = X^T d_pre``, ``dx = d_pre W_ih^T``.

Why not ``np.dot`` (BLAS) per step: with a batch of a few rows, BLAS packs the whole
``W_hh`` again on every call; :mod:`.packed_matmul` says more.

Threads: the batch's sequences are split over Numba's threads
(``numba.set_num_threads``), each thread running the whole time loop for its rows, so a
layer call has one parallel region, not a barrier per step; a single sequence (or one
thread) instead splits the product's column panels. The large GEMMs before and after the
loops use BLAS's threads.

Subnormal numbers: the stored gates, states and gate gradients are flushed to zero where
they fall below the dtype's smallest normal number (``np.finfo(dtype).tiny``), as
TensorFlow's flush-to-zero mode, which DeepSpeech trained under, does everywhere. A
trained LSTM saturates some gates (``sigmoid(-90)`` is subnormal in float32), and on x86
every arithmetic operation on a subnormal operand takes a microcode assist, about 100
times a normal one; unflushed, the same batches ran 2.6 times slower after twelve epochs
than at the start (forward 1.4x, backward 4x). A flushed value differs from the
reference's by less than ``tiny`` (1.2e-38 in float32), far below every tolerance.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from . import packed_matmul
from .gate_math import normal_or_zero, sigmoid, tanh
from .layers import _SerialOrParallel, add_row, column_sums

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


def _project(x: np.ndarray, W: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``x W (+ b)`` for every step in one GEMM: (T, B, F) -> (T, B, G*H),
    C-contiguous. The LSTM and the RNN pass no ``b``: their time loops add the bias
    where they read the projection, which spares a pass over all of it (for an LSTM
    of 512 units, 39 MB read and written: 8 ms of a 0.35 s layer on one thread)."""
    T, B, F = x.shape
    out = x.reshape(T * B, F) @ W  # (T*B, G*H)
    if b is not None:
        add_row(out, b)
    return out.reshape(T, B, W.shape[1])


@_SerialOrParallel
def _stack_inputs_kernel(x, h0, y, inputs):
    # inputs (T, B, F + H) = [x | state entering each step]: h0 (B, H), then y (T, B, H)
    F = x.shape[2]
    for t in prange(x.shape[0]):
        inputs[t, :, :F] = x[t]
        if t == 0:
            inputs[t, :, F:] = h0
        else:
            inputs[t, :, F:] = y[t - 1]


def _weight_gradients(x, y, h0, d_in, d_rec, W_ih, db=None):
    """The post-loop GEMMs: dx, dW_ih, dW_hh, db_ih, db_hh from the per-step gradients
    of the input-side pre-activations ``d_in`` and recurrent-side ones ``d_rec`` (T, B,
    G*H); the state entering each step is h0 (B, H), then the outputs y (T, B, H).
    ``db`` (G*H,): the bias gradient where the time loop summed it (the LSTM and the
    RNN, whose two biases share one gradient), else the column sums of d_in, d_rec."""
    T, B, F = x.shape
    GH = d_in.shape[2]
    d_in2 = d_in.reshape(T * B, GH)
    d_rec2 = d_rec.reshape(T * B, GH)
    dx = (d_in2 @ W_ih.T).reshape(T, B, F)
    if d_rec is d_in:
        # LSTM and RNN: both weight gradients multiply the same d_pre, so one GEMM of
        # [x | h_prev]^T d_pre (7-8% faster than two at B=16-32, H=384-512)
        # (the state entering each step is written straight into its half)
        inputs = np.empty((T, B, F + y.shape[2]), dtype=x.dtype)
        _stack_inputs_kernel(inputs.size, np.ascontiguousarray(x), h0, y, inputs)
        dW = inputs.reshape(T * B, -1).T @ d_in2
        dW_ih, dW_hh = dW[:F], dW[F:]
    else:
        h_prev = _shifted_states(y, h0)
        dW_ih = x.reshape(T * B, F).T @ d_in2
        dW_hh = h_prev.reshape(T * B, h_prev.shape[2]).T @ d_rec2
    if db is not None:
        return dx, dW_ih, dW_hh, db, db.copy()
    return dx, dW_ih, dW_hh, column_sums(d_in2), column_sums(d_rec2)


def _zero_past_lengths(shape: tuple, dtype, lengths: np.ndarray) -> np.ndarray:
    """An array of ``shape`` (T, B, ...) for a time loop that writes every entry of
    every step before a sequence's length: only the padded steps, ``t >= lengths[b]``,
    are zeroed here (zeroing all of it cost 3-7% of an LSTM layer's forward pass)."""
    out = np.empty(shape, dtype=dtype)
    for b in np.flatnonzero(lengths < shape[0]):
        out[lengths[b] :, b] = 0
    return out


def _threads() -> int:
    """Numba's thread count, read here because a compiled function that reads it cannot
    be cached."""
    return numba.get_num_threads()


def _shifted_states(y: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """(T, B, H) state entering each step: h0, y[0], ..., y[T-2] (valid where it
    matters: at active steps, since an active sequence was active at every earlier
    step)."""
    h_prev = np.empty_like(y)
    h_prev[0] = h0
    h_prev[1:] = y[:-1]
    return h_prev


# a float32 constant keeps float32 arithmetic in float32; it widens exactly for float64
_ONE = np.float32(1.0)


# --- splitting the batch over threads ----------------------------------------------
# Sequences are independent, so each thread runs the whole time loop for its own rows:
# one parallel region per layer call instead of two barriers per time step (which on
# a shared 2-core machine stalled whenever one thread was descheduled). Each thread
# streams all of W_hh every step; with one part (one thread, or one sequence) the
# product instead splits its column panels over the threads.
# Each loop below has its own small parallel wrapper around its ``_rows`` function: one
# shared wrapper taking the row function as an argument would not stay in Numba's
# on-disk cache (a function-typed argument compiles anew in every process).


@njit(cache=True)
def _rows_of_part(B, parts, part):  # pragma: no cover - jit
    """Rows ``b0 .. b1 - 1`` of part ``part`` of ``parts`` nearly equal parts."""
    return part * B // parts, (part + 1) * B // parts


# The LSTM and RNN backward loops also sum the bias gradient, each part of the batch
# into its own row of ``db_parts`` (parts, G*H) as it writes d_pre: the sum reads each
# step's gradients while they are in cache, not all of d_pre again after the loop (for
# an LSTM of 512 units, 39 MB: 8 ms of a 0.45 s backward pass on one thread).


@njit(cache=True)
def _add_to(total, values):  # pragma: no cover - jit
    """total += values, both (N,)."""
    for k in range(total.size):
        total[k] += values[k]


def _bias_gradient_parts(threads: int, B: int, GH: int, dtype) -> np.ndarray:
    """Zeroed (parts, G*H) sums for a backward loop run on ``threads`` threads, one
    row per part of the batch (as the loop splits it: ``min(threads, B)`` parts)."""
    return np.zeros((max(1, min(threads, B)), GH), dtype=dtype)


# --- vanilla RNN with clipped ReLU ----------------------------------------------------
# In the loops below ``W_hh`` (H, G*H), packed, is the forward product's h W_hh and
# ``W_hh.T`` (G*H, H), packed, the backward product's d_pre W_hh^T.


@njit(cache=True)
def _rnn_forward_rows(
    xw, W_hh_packed, bias, lengths, h, ceiling, y, b0, b1, threads
):  # pragma: no cover
    """The time loop for sequences ``b0 .. b1 - 1``; ``h`` (B, H) is their state,
    ``xw`` (T, B, H) the input projection without ``bias`` (H,) = b_ih + b_hh."""
    T, _, H = y.shape
    h_t, hw = packed_matmul.buffers(W_hh_packed, b1 - b0)
    for t in range(T):
        packed_matmul.rows_times(h[b0:b1], h_t, W_hh_packed, hw, threads)  # h W_hh
        for b in range(b0, b1):
            if t < lengths[b]:
                for k in range(H):
                    v = xw[t, b, k] + hw[b - b0, k] + bias[k]
                    v = min(max(v, 0.0), ceiling)
                    v = normal_or_zero(y, v)
                    y[t, b, k] = v
                    h[b, k] = v


@njit(cache=True, parallel=True)
def _rnn_forward_loop(
    xw, W_hh_packed, bias, lengths, h0, ceiling, y, threads
):  # pragma: no cover
    B = y.shape[1]
    h = h0.copy()
    args = (xw, W_hh_packed, bias, lengths, h, ceiling, y)
    parts = min(threads, B)
    if parts <= 1:
        _rnn_forward_rows(*args, 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _rnn_forward_rows(*args, b0, b1, 1)
    return h


@njit(cache=True)
def _rnn_backward_rows(
    dy, dh, lengths, W_hh_T_packed, y, ceiling, d_pre, db, b0, b1, threads
):  # pragma: no cover
    T, _, H = dy.shape
    d_t, dh_prev = packed_matmul.buffers(W_hh_T_packed, b1 - b0)
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            if t < lengths[b]:
                for k in range(H):
                    v = y[t, b, k]
                    if v > 0.0 and v < ceiling:
                        d_pre[t, b, k] = normal_or_zero(d_pre, dh[b, k] + dy[t, b, k])
                _add_to(db, d_pre[t, b])
        # d_pre W_hh^T
        packed_matmul.rows_times(d_pre[t, b0:b1], d_t, W_hh_T_packed, dh_prev, threads)
        for b in range(b0, b1):
            if t < lengths[b]:
                dh[b, :] = dh_prev[b - b0, :H]


@njit(cache=True, parallel=True)
def _rnn_backward_loop(
    dy, dh_n, lengths, W_hh_T_packed, y, ceiling, d_pre, db_parts, threads
):  # pragma: no cover
    B = dy.shape[1]
    dh = dh_n.copy()
    args = (dy, dh, lengths, W_hh_T_packed, y, ceiling, d_pre)
    parts = min(threads, B)
    if parts <= 1:
        _rnn_backward_rows(*args, db_parts[0], 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _rnn_backward_rows(*args, db_parts[part], b0, b1, 1)
    return dh


def rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling):
    """See ``numpy_ref.rnn.rnn_forward``."""
    T, B, _ = x.shape
    xw = _project(x, W_ih)
    y = np.zeros((T, B, W_hh.shape[0]), dtype=x.dtype)
    ceiling = x.dtype.type(ceiling)
    W_hh_packed = packed_matmul.pack_panels(W_hh)
    bias = b_ih + b_hh
    h_n = _rnn_forward_loop(xw, W_hh_packed, bias, lengths, h0, ceiling, y, _threads())
    return y, h_n


def rnn_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, ceiling):
    """See ``numpy_ref.rnn.rnn_backward``."""
    d_pre = np.zeros(y.shape, dtype=x.dtype)
    ceiling = x.dtype.type(ceiling)
    W_hh_T_packed = packed_matmul.pack_panels(W_hh.T)
    threads = _threads()
    db_parts = _bias_gradient_parts(threads, y.shape[1], y.shape[2], x.dtype)
    dh0 = _rnn_backward_loop(
        dy, dh_n, lengths, W_hh_T_packed, y, ceiling, d_pre, db_parts, threads
    )
    grads = _weight_gradients(x, y, h0, d_pre, d_pre, W_ih, db_parts.sum(axis=0))
    return (*grads, dh0)


# --- LSTM -----------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _sigmoid_of_sum(a, b, c, out):  # pragma: no cover - jit
    """out = sigmoid((a + b) + c), all (N,): one branch-free loop that vectorises."""
    for k in range(out.size):
        out[k] = normal_or_zero(out, sigmoid(a[k] + b[k] + c[k]))


@njit(cache=True, error_model="numpy")
def _tanh_of_sum(a, b, c, out):  # pragma: no cover - jit
    """out = tanh((a + b) + c), all (N,)."""
    for k in range(out.size):
        out[k] = normal_or_zero(out, tanh(a[k] + b[k] + c[k]))


@njit(cache=True, error_model="numpy")
def _lstm_cell_forward(xw, hw, bias, c, h, gates, cell, y):  # pragma: no cover - jit
    """One sequence's LSTM step; every array 1-D: xw (the input projection without
    the bias), hw, bias (b_ih + b_hh), gates (4H,), the rest (H,).

    One loop per gate block and kind of nonlinearity, so that each vectorises.
    """
    H = c.size
    i_f, g, o = slice(0, 2 * H), slice(2 * H, 3 * H), slice(3 * H, 4 * H)
    _sigmoid_of_sum(xw[i_f], hw[i_f], bias[i_f], gates[i_f])
    _tanh_of_sum(xw[g], hw[g], bias[g], gates[g])
    _sigmoid_of_sum(xw[o], hw[o], bias[o], gates[o])
    for k in range(H):
        cell[k] = normal_or_zero(
            cell, gates[H + k] * c[k] + gates[k] * gates[2 * H + k]
        )
    for k in range(H):
        y[k] = normal_or_zero(y, gates[3 * H + k] * tanh(cell[k]))
    c[:] = cell
    h[:] = y


@njit(cache=True)
def _lstm_forward_rows(
    xw, W_hh_packed, bias, lengths, h, c, y, gates, cells, b0, b1, threads
):  # pragma: no cover
    """The time loop for sequences ``b0 .. b1 - 1``; ``h``, ``c`` (B, H) their state."""
    T = y.shape[0]
    h_t, hw = packed_matmul.buffers(W_hh_packed, b1 - b0)
    for t in range(T):
        packed_matmul.rows_times(h[b0:b1], h_t, W_hh_packed, hw, threads)  # h W_hh
        for b in range(b0, b1):
            if t < lengths[b]:
                _lstm_cell_forward(
                    xw[t, b],
                    hw[b - b0],
                    bias,
                    c[b],
                    h[b],
                    gates[t, b],
                    cells[t, b],
                    y[t, b],
                )


@njit(cache=True, parallel=True)
def _lstm_forward_loop(
    xw, W_hh_packed, bias, lengths, h0, c0, y, gates, cells, threads
):  # pragma: no cover
    B = y.shape[1]
    h = h0.copy()
    c = c0.copy()
    args = (xw, W_hh_packed, bias, lengths, h, c, y, gates, cells)
    parts = min(threads, B)
    if parts <= 1:
        _lstm_forward_rows(*args, 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _lstm_forward_rows(*args, b0, b1, 1)
    return h, c


@njit(cache=True, error_model="numpy")
def _lstm_cell_backward(gates, cell, c_prev, dy, dh, dc, d_pre):  # pragma: no cover
    """One sequence's LSTM step backwards; gates, d_pre (4H,), the rest (H,)."""
    H = dh.shape[0]
    for k in range(H):
        i = gates[k]
        f = gates[H + k]
        g = gates[2 * H + k]
        o = gates[3 * H + k]
        tanh_c = cell.dtype.type(tanh(cell[k]))
        dh_t = dh[k] + dy[k]
        dc_t = dc[k] + dh_t * o * (_ONE - tanh_c * tanh_c)
        d_pre[k] = normal_or_zero(d_pre, dc_t * g * i * (_ONE - i))
        d_pre[H + k] = normal_or_zero(d_pre, dc_t * c_prev[k] * f * (_ONE - f))
        d_pre[2 * H + k] = normal_or_zero(d_pre, dc_t * i * (_ONE - g * g))
        d_pre[3 * H + k] = normal_or_zero(d_pre, dh_t * tanh_c * o * (_ONE - o))
        dc[k] = normal_or_zero(dc, dc_t * f)


@njit(cache=True)
def _lstm_backward_rows(
    dy, dh, dc, lengths, W_hh_T_packed, c0, gates, cells, d_pre, db, b0, b1, threads
):  # pragma: no cover - jit
    T, _, H = dy.shape
    d_t, dh_prev = packed_matmul.buffers(W_hh_T_packed, b1 - b0)
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            if t < lengths[b]:
                c_prev = c0[b] if t == 0 else cells[t - 1, b]
                _lstm_cell_backward(
                    gates[t, b],
                    cells[t, b],
                    c_prev,
                    dy[t, b],
                    dh[b],
                    dc[b],
                    d_pre[t, b],
                )
                _add_to(db, d_pre[t, b])
        # d_pre W_hh^T
        packed_matmul.rows_times(d_pre[t, b0:b1], d_t, W_hh_T_packed, dh_prev, threads)
        for b in range(b0, b1):
            if t < lengths[b]:
                dh[b, :] = dh_prev[b - b0, :H]


@njit(cache=True, parallel=True)
def _lstm_backward_loop(
    dy, dh_n, dc_n, lengths, W_hh_T_packed, c0, gates, cells, d_pre, db_parts, threads
):  # pragma: no cover - jit
    B = dy.shape[1]
    dh = dh_n.copy()
    dc = dc_n.copy()
    args = (dy, dh, dc, lengths, W_hh_T_packed, c0, gates, cells, d_pre)
    parts = min(threads, B)
    if parts <= 1:
        _lstm_backward_rows(*args, db_parts[0], 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _lstm_backward_rows(*args, db_parts[part], b0, b1, 1)
    return dh, dc


def lstm_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0):
    """See ``numpy_ref.rnn.lstm_forward``."""
    T, B, _ = x.shape
    H = W_hh.shape[0]
    xw = _project(x, W_ih)
    # the loop writes all of y, gates and cells at every step before each length
    y = _zero_past_lengths((T, B, H), x.dtype, lengths)
    gates = _zero_past_lengths((T, B, 4 * H), x.dtype, lengths)
    cells = _zero_past_lengths((T, B, H), x.dtype, lengths)
    W_hh_packed = packed_matmul.pack_panels(W_hh)
    h_n, c_n = _lstm_forward_loop(
        xw, W_hh_packed, b_ih + b_hh, lengths, h0, c0, y, gates, cells, _threads()
    )
    return y, gates, cells, h_n, c_n


def lstm_backward(dy, dh_n, dc_n, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells):
    """See ``numpy_ref.rnn.lstm_backward``."""
    # the loop writes all four gates' gradients at every step before each length
    d_pre = _zero_past_lengths(gates.shape, x.dtype, lengths)
    threads = _threads()
    db_parts = _bias_gradient_parts(threads, gates.shape[1], gates.shape[2], x.dtype)
    dh0, dc0 = _lstm_backward_loop(
        dy,
        dh_n,
        dc_n,
        lengths,
        packed_matmul.pack_panels(W_hh.T),
        c0,
        gates,
        cells,
        d_pre,
        db_parts,
        threads,
    )
    grads = _weight_gradients(x, y, h0, d_pre, d_pre, W_ih, db_parts.sum(axis=0))
    return (*grads, dh0, dc0)


# --- GRU ------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _gru_cell_forward(xw, hw, b_hh, h, gates, hn, y):  # pragma: no cover - jit
    """One sequence's GRU step; xw, hw, b_hh, gates (3H,), the rest (H,)."""
    H = h.size
    _sigmoid_of_sum(xw[: 2 * H], hw[: 2 * H], b_hh[: 2 * H], gates[: 2 * H])  # r, z
    for k in range(H):
        hn[k] = hw[2 * H + k] + b_hh[2 * H + k]
    _gru_candidate(xw[2 * H :], gates[:H], hn, gates[2 * H :])  # n
    for k in range(H):
        z = gates[H + k]
        y[k] = normal_or_zero(y, (_ONE - z) * gates[2 * H + k] + z * h[k])
    h[:] = y


@njit(cache=True, error_model="numpy")
def _gru_candidate(xw_n, r, hn, out):  # pragma: no cover - jit
    """out = tanh(xw_n + r hn), all (H,): the GRU's candidate state n."""
    for k in range(out.size):
        out[k] = normal_or_zero(out, tanh(xw_n[k] + r[k] * hn[k]))


@njit(cache=True)
def _gru_forward_rows(
    xw, W_hh_packed, b_hh, lengths, h, y, gates, hn_all, b0, b1, threads
):  # pragma: no cover - jit
    """The time loop for sequences ``b0 .. b1 - 1``; ``h`` (B, H) is their state."""
    T = y.shape[0]
    h_t, hw = packed_matmul.buffers(W_hh_packed, b1 - b0)
    for t in range(T):
        packed_matmul.rows_times(h[b0:b1], h_t, W_hh_packed, hw, threads)  # h W_hh
        for b in range(b0, b1):
            if t < lengths[b]:
                _gru_cell_forward(
                    xw[t, b], hw[b - b0], b_hh, h[b], gates[t, b], hn_all[t, b], y[t, b]
                )


@njit(cache=True, parallel=True)
def _gru_forward_loop(
    xw, W_hh_packed, b_hh, lengths, h0, y, gates, hn_all, threads
):  # pragma: no cover - jit
    B = y.shape[1]
    h = h0.copy()
    args = (xw, W_hh_packed, b_hh, lengths, h, y, gates, hn_all)
    parts = min(threads, B)
    if parts <= 1:
        _gru_forward_rows(*args, 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _gru_forward_rows(*args, b0, b1, 1)
    return h


@njit(cache=True)
def _gru_backward_rows(
    dy, dh, lengths, W_hh_T_packed, h0, y, gates, hn_all, d_in, d_rec, b0, b1, threads
):  # pragma: no cover - jit
    T, _, H = dy.shape
    dh_direct = np.zeros((b1 - b0, H), dtype=dy.dtype)  # dh_prev through h' = .. + z h
    d_t, dh_prev = packed_matmul.buffers(W_hh_T_packed, b1 - b0)
    for t in range(T - 1, -1, -1):
        for b in range(b0, b1):
            if t < lengths[b]:
                for k in range(H):
                    r = gates[t, b, k]
                    z = gates[t, b, H + k]
                    n = gates[t, b, 2 * H + k]
                    h_prev = h0[b, k] if t == 0 else y[t - 1, b, k]
                    dh_t = dh[b, k] + dy[t, b, k]
                    d_n_pre = normal_or_zero(d_in, dh_t * (_ONE - z) * (_ONE - n * n))
                    d_r_pre = normal_or_zero(
                        d_in, d_n_pre * hn_all[t, b, k] * r * (_ONE - r)
                    )
                    d_z_pre = normal_or_zero(d_in, dh_t * (h_prev - n) * z * (_ONE - z))
                    d_in[t, b, k] = d_r_pre
                    d_in[t, b, H + k] = d_z_pre
                    d_in[t, b, 2 * H + k] = d_n_pre
                    d_rec[t, b, k] = d_r_pre
                    d_rec[t, b, H + k] = d_z_pre
                    d_rec[t, b, 2 * H + k] = normal_or_zero(d_rec, d_n_pre * r)
                    dh_direct[b - b0, k] = normal_or_zero(dh_direct, dh_t * z)
        # d_rec W_hh^T
        packed_matmul.rows_times(d_rec[t, b0:b1], d_t, W_hh_T_packed, dh_prev, threads)
        for b in range(b0, b1):
            if t < lengths[b]:
                for k in range(H):
                    dh[b, k] = dh_prev[b - b0, k] + dh_direct[b - b0, k]


@njit(cache=True, parallel=True)
def _gru_backward_loop(
    dy, dh_n, lengths, W_hh_T_packed, h0, y, gates, hn_all, d_in, d_rec, threads
):  # pragma: no cover - jit
    B = dy.shape[1]
    dh = dh_n.copy()
    args = (dy, dh, lengths, W_hh_T_packed, h0, y, gates, hn_all, d_in, d_rec)
    parts = min(threads, B)
    if parts <= 1:
        _gru_backward_rows(*args, 0, B, threads)
    else:
        for part in prange(parts):
            b0, b1 = _rows_of_part(B, parts, part)
            _gru_backward_rows(*args, b0, b1, 1)
    return dh


def gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0):
    """See ``numpy_ref.rnn.gru_forward``."""
    T, B, _ = x.shape
    H = W_hh.shape[0]
    xw = _project(x, W_ih, b_ih)
    y = np.zeros((T, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 3 * H), dtype=x.dtype)
    hn_all = np.zeros((T, B, H), dtype=x.dtype)
    W_hh_packed = packed_matmul.pack_panels(W_hh)
    h_n = _gru_forward_loop(
        xw, W_hh_packed, b_hh, lengths, h0, y, gates, hn_all, _threads()
    )
    return y, gates, hn_all, h_n


def gru_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, gates, hn):
    """See ``numpy_ref.rnn.gru_backward``."""
    d_in = np.zeros(gates.shape, dtype=x.dtype)
    d_rec = np.zeros(gates.shape, dtype=x.dtype)
    dh0 = _gru_backward_loop(
        dy,
        dh_n,
        lengths,
        packed_matmul.pack_panels(W_hh.T),
        h0,
        y,
        gates,
        hn,
        d_in,
        d_rec,
        _threads(),
    )
    grads = _weight_gradients(x, y, h0, d_in, d_rec, W_ih)
    return (*grads, dh0)
