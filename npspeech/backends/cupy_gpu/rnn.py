"""rnn kernels of the cupy_gpu backend: one direction of a recurrent layer on the
device.

The same names, signatures and results as :mod:`npspeech.backends.numpy_ref.rnn`
(read it for the equations and for what happens past each sequence's length).

How the time loop runs on the device:

- the input projection ``x W_ih`` of every frame is one cuBLAS GEMM before the loop
  (with the biases added once), and the weight gradients, ``dx`` and the bias sums are
  GEMMs and reductions after it, over the pre-activation gradients of all steps;
- each step is one cuBLAS GEMM for the recurrent product ``h W_hh`` and ONE fused CUDA
  kernel for everything element-wise: the gate nonlinearities, the cell update, the
  length mask and the state carry. In the backward pass that kernel also applies the
  previous step's masked state update (``dh = active ? g : dh``), so no step needs a
  third launch;
- the LSTM and GRU forward passes of up to
  :data:`~.rnn_fused.FUSED_STEP_MAX_HIDDEN` hidden units instead run each step as ONE
  raw kernel that computes the recurrent product itself (:mod:`.rnn_fused`), where
  launches cost more than reading ``W_hh`` a few times from L2.

Shape legend: T frames, B batch, F input features, H hidden units, G gates.
"""

from __future__ import annotations

import numpy as np

from . import rnn_fused
from ._compile import elementwise
from ._runtime import cupy, follow_input

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _rows(lengths, t):
    """(B, 1) bool of the twins: sequence b is active at step t."""
    return (t < lengths)[:, None]


# --- vanilla RNN with clipped ReLU ----------------------------------------------------


def _rnn_step_twin(xw, rec, lengths, t, H, ceiling, h, y):
    h_new = np.clip(xw + rec, 0, ceiling)
    active = _rows(lengths, t)
    y[...] = np.where(active, h_new, 0)
    h[...] = np.where(active, h_new, h)


def _rnn_back_twin(dy, y_t, g, lengths, t, T, H, ceiling, dh, d_pre):
    next_active = _rows(lengths, t + 1) & (t + 1 < T)
    dh[...] = np.where(next_active, g, dh)
    inside = (y_t > 0) & (y_t < ceiling)
    d_pre[...] = np.where(_rows(lengths, t) & inside, dh + dy, 0)


_rnn_step = elementwise(
    "raw T xw, raw T rec, raw int32 lengths, int32 t, int32 H, T ceiling",
    "T h, raw T y",
    """
    int b = i / H;
    T a = xw[i] + rec[i];
    T h_new = a < (T)0 ? (T)0 : (a > ceiling ? ceiling : a);
    bool active = t < lengths[b];
    y[i] = active ? h_new : (T)0;
    if (active) h = h_new;
    """,
    "npspeech_rnn_step",
    _rnn_step_twin,
)
_rnn_back = elementwise(
    "raw T dy, raw T y_t, raw T g, raw int32 lengths, int32 t, int32 T_, int32 H, "
    "T ceiling",
    "T dh, raw T d_pre",
    """
    int b = i / H;
    if (t + 1 < T_ && t + 1 < lengths[b]) dh = g[i];
    T y = y_t[i];
    bool pass = t < lengths[b] && y > (T)0 && y < ceiling;
    d_pre[i] = pass ? dh + dy[i] : (T)0;
    """,
    "npspeech_rnn_back",
    _rnn_back_twin,
)


# --- LSTM -----------------------------------------------------------------------------


def _lstm_step_twin(xw, rec, lengths, t, H, h, c, gates, cells, y):
    a = xw + rec  # (B, 4H)
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H]), _sigmoid(a[:, 3 * H :])
    g = np.tanh(a[:, 2 * H : 3 * H])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    gates[...] = np.concatenate([i, f, g, o], axis=1)
    cells[...] = c_new
    active = _rows(lengths, t)
    y[...] = np.where(active, h_new, 0)
    h[...] = np.where(active, h_new, h)
    c[...] = np.where(active, c_new, c)


def _lstm_back_twin(dy, gates, cells, c_prev, g, lengths, t, T, H, dh, dc, d_pre):
    dh[...] = np.where(_rows(lengths, t + 1) & (t + 1 < T), g, dh)
    i, f, gg, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    tanh_c = np.tanh(cells)
    dh_t = dh + dy
    dc_t = dc + dh_t * o * (1 - tanh_c**2)
    pre = np.concatenate(
        [
            dc_t * gg * i * (1 - i),
            dc_t * c_prev * f * (1 - f),
            dc_t * i * (1 - gg**2),
            dh_t * tanh_c * o * (1 - o),
        ],
        axis=1,
    )
    active = _rows(lengths, t)
    d_pre[...] = np.where(active, pre, 0)
    dc[...] = np.where(active, dc_t * f, dc)


_LSTM_GATES = """
    int b = i / H;
    int j = i - b * H;
    int row = b * 4 * H + j;
"""
_lstm_step = elementwise(
    "raw T xw, raw T rec, raw int32 lengths, int32 t, int32 H",
    "T h, T c, raw T gates, raw T cells, raw T y",
    _LSTM_GATES
    + """
    T gi = (T)1 / ((T)1 + exp(-(xw[row] + rec[row])));
    T gf = (T)1 / ((T)1 + exp(-(xw[row + H] + rec[row + H])));
    T gg = tanh(xw[row + 2 * H] + rec[row + 2 * H]);
    T go = (T)1 / ((T)1 + exp(-(xw[row + 3 * H] + rec[row + 3 * H])));
    T c_new = gf * c + gi * gg;
    T h_new = go * tanh(c_new);
    gates[row] = gi; gates[row + H] = gf; gates[row + 2 * H] = gg;
    gates[row + 3 * H] = go;
    cells[i] = c_new;
    bool active = t < lengths[b];
    y[i] = active ? h_new : (T)0;
    if (active) { h = h_new; c = c_new; }
    """,
    "npspeech_lstm_step",
    _lstm_step_twin,
)
_lstm_back = elementwise(
    "raw T dy, raw T gates, raw T cells, raw T c_prev, raw T g, raw int32 lengths, "
    "int32 t, int32 T_, int32 H",
    "T dh, T dc, raw T d_pre",
    _LSTM_GATES
    + """
    if (t + 1 < T_ && t + 1 < lengths[b]) dh = g[i];
    T gi = gates[row], gf = gates[row + H], gg = gates[row + 2 * H];
    T go = gates[row + 3 * H];
    T tanh_c = tanh(cells[i]);
    T dh_t = dh + dy[i];
    T dc_t = dc + dh_t * go * ((T)1 - tanh_c * tanh_c);
    if (t < lengths[b]) {
        d_pre[row] = dc_t * gg * gi * ((T)1 - gi);
        d_pre[row + H] = dc_t * c_prev[i] * gf * ((T)1 - gf);
        d_pre[row + 2 * H] = dc_t * gi * ((T)1 - gg * gg);
        d_pre[row + 3 * H] = dh_t * tanh_c * go * ((T)1 - go);
        dc = dc_t * gf;
    } else {
        d_pre[row] = (T)0; d_pre[row + H] = (T)0;
        d_pre[row + 2 * H] = (T)0; d_pre[row + 3 * H] = (T)0;
    }
    """,
    "npspeech_lstm_back",
    _lstm_back_twin,
)


# --- GRU ------------------------------------------------------------------------------


def _gru_step_twin(ax, rec, b_hh, lengths, t, H, h, gates, hn_out, y):
    ah = rec + b_hh  # (B, 3H)
    r = _sigmoid(ax[:, :H] + ah[:, :H])
    z = _sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
    hn = ah[:, 2 * H :]
    n = np.tanh(ax[:, 2 * H :] + r * hn)
    h_new = (1 - z) * n + z * h
    gates[...] = np.concatenate([r, z, n], axis=1)
    hn_out[...] = hn
    active = _rows(lengths, t)
    y[...] = np.where(active, h_new, 0)
    h[...] = np.where(active, h_new, h)


def _gru_back_twin(dy, gates, hn, h_prev, g, lengths, t, T, H, dh, carry, d_ax, d_ah):
    dh[...] = np.where(_rows(lengths, t + 1) & (t + 1 < T), g + carry, dh)
    r, z, n = (gates[:, k * H : (k + 1) * H] for k in range(3))
    dh_t = dh + dy
    d_n = dh_t * (1 - z) * (1 - n**2)
    d_r = d_n * hn * r * (1 - r)
    d_z = dh_t * (h_prev - n) * z * (1 - z)
    active = _rows(lengths, t)
    d_ax[...] = np.where(active, np.concatenate([d_r, d_z, d_n], axis=1), 0)
    d_ah[...] = np.where(active, np.concatenate([d_r, d_z, d_n * r], axis=1), 0)
    carry[...] = dh_t * z


_GRU_GATES = """
    int b = i / H;
    int j = i - b * H;
    int row = b * 3 * H + j;
"""
_gru_step = elementwise(
    "raw T ax, raw T rec, raw T b_hh, raw int32 lengths, int32 t, int32 H",
    "T h, raw T gates, raw T hn_out, raw T y",
    _GRU_GATES
    + """
    T r = (T)1 / ((T)1 + exp(-(ax[row] + rec[row] + b_hh[j])));
    T z = (T)1 / ((T)1 + exp(-(ax[row + H] + rec[row + H] + b_hh[j + H])));
    T hn = rec[row + 2 * H] + b_hh[j + 2 * H];
    T n = tanh(ax[row + 2 * H] + r * hn);
    T h_new = ((T)1 - z) * n + z * h;
    gates[row] = r; gates[row + H] = z; gates[row + 2 * H] = n;
    hn_out[i] = hn;
    bool active = t < lengths[b];
    y[i] = active ? h_new : (T)0;
    if (active) h = h_new;
    """,
    "npspeech_gru_step",
    _gru_step_twin,
)
# ``carry`` holds dh_t * z of the step after this one: the part of the state gradient
# that bypasses W_hh; ``g`` holds that step's d_ah @ W_hh^T.
_gru_back = elementwise(
    "raw T dy, raw T gates, raw T hn, raw T h_prev, raw T g, raw int32 lengths, "
    "int32 t, int32 T_, int32 H",
    "T dh, T carry, raw T d_ax, raw T d_ah",
    _GRU_GATES
    + """
    if (t + 1 < T_ && t + 1 < lengths[b]) dh = g[i] + carry;
    T r = gates[row], z = gates[row + H], n = gates[row + 2 * H];
    T dh_t = dh + dy[i];
    T d_n = dh_t * ((T)1 - z) * ((T)1 - n * n);
    T d_r = d_n * hn[i] * r * ((T)1 - r);
    T d_z = dh_t * (h_prev[i] - n) * z * ((T)1 - z);
    bool active = t < lengths[b];
    d_ax[row] = active ? d_r : (T)0;
    d_ax[row + H] = active ? d_z : (T)0;
    d_ax[row + 2 * H] = active ? d_n : (T)0;
    d_ah[row] = active ? d_r : (T)0;
    d_ah[row + H] = active ? d_z : (T)0;
    d_ah[row + 2 * H] = active ? d_n * r : (T)0;
    carry = dh_t * z;
    """,
    "npspeech_gru_back",
    _gru_back_twin,
)


# --- orchestration --------------------------------------------------------------------


def _project(x, W, bias):
    """``x W + bias`` for every frame at once: (T, B, F) -> (T, B, G*H), one GEMM."""
    T, B, F = x.shape
    out = (x.reshape(T * B, F) @ W).reshape(T, B, W.shape[1])
    out += bias
    return out


def _int32(lengths):
    return lengths.astype(np.int32, copy=False)


def _previous_states(y, h0):
    """(T, B, H): the state entering each step of an active sequence (h0, then y)."""
    xp = cupy()
    return xp.concatenate([h0[None], y[:-1]], axis=0)


def _weight_grads(x, h_prev, W_ih, d_in, d_rec):
    """dx, dW_ih, dW_hh from the pre-activation gradients of every step.

    d_in (T, B, G*H) feeds the input side, d_rec the recurrent side (equal except
    for the GRU's candidate gate).
    """
    T, B, F = x.shape
    GH = d_in.shape[2]
    d_in_rows = d_in.reshape(T * B, GH)
    d_rec_rows = d_rec.reshape(T * B, GH)
    dx = (d_in_rows @ W_ih.T).reshape(T, B, F)
    dW_ih = x.reshape(T * B, F).T @ d_in_rows
    dW_hh = h_prev.reshape(T * B, -1).T @ d_rec_rows
    return dx, dW_ih, dW_hh


def _first_active(lengths):
    return (lengths > 0)[:, None]  # (B, 1)


@follow_input()
def rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling):
    """Clipped-ReLU RNN, one direction; y (T, B, H), h_n (B, H)."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    xw = _project(x, W_ih, b_ih + b_hh)  # (T, B, H)
    y = xp.zeros((T, B, H), dtype=x.dtype)
    h = h0.copy()
    rec = xp.empty((B, H), dtype=x.dtype)
    top = x.dtype.type(ceiling)
    for t in range(T):
        xp.matmul(h, W_hh, out=rec)
        _rnn_step(xw[t], rec, lengths, np.int32(t), np.int32(H), top, h, y[t])
    return y, h


@follow_input()
def rnn_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, ceiling):
    """Gradients of :func:`rnn_forward`."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    W_hhT = xp.ascontiguousarray(W_hh.T)
    d_pre = xp.empty((T, B, H), dtype=x.dtype)
    dh = dh_n.copy()
    g = xp.zeros((B, H), dtype=x.dtype)
    top = x.dtype.type(ceiling)
    for t in range(T - 1, -1, -1):
        _rnn_back(
            dy[t], y[t], g, lengths, np.int32(t), np.int32(T), np.int32(H), top, dh,
            d_pre[t],
        )  # fmt: skip
        xp.matmul(d_pre[t], W_hhT, out=g)
    if T:
        dh = xp.where(_first_active(lengths), g, dh)
    dx, dW_ih, dW_hh = _weight_grads(x, _previous_states(y, h0), W_ih, d_pre, d_pre)
    db = d_pre.reshape(T * B, H).sum(axis=0)
    return dx, dW_ih, dW_hh, db, db.copy(), dh


@follow_input()
def lstm_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0):
    """LSTM, one direction; y, gates, cells, h_n, c_n as the reference."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    xw = _project(x, W_ih, b_ih + b_hh)  # (T, B, 4H)
    y = xp.zeros((T, B, H), dtype=x.dtype)
    gates = xp.zeros((T, B, 4 * H), dtype=x.dtype)
    cells = xp.zeros((T, B, H), dtype=x.dtype)
    h, c = h0.copy(), c0.copy()
    if rnn_fused.wanted(H, x.dtype):
        W_hh = xp.ascontiguousarray(W_hh)
        h_out = xp.empty_like(h)  # the state is double-buffered: h -> h_out
        for t in range(T):
            rnn_fused.lstm_step(
                xw[t], W_hh, lengths, t, h, h_out, c, gates[t], cells[t], y[t]
            )
            h, h_out = h_out, h
        return y, gates, cells, h, c
    rec = xp.empty((B, 4 * H), dtype=x.dtype)
    for t in range(T):
        xp.matmul(h, W_hh, out=rec)
        _lstm_step(
            xw[t], rec, lengths, np.int32(t), np.int32(H), h, c, gates[t], cells[t],
            y[t],
        )  # fmt: skip
    return y, gates, cells, h, c


@follow_input()
def lstm_backward(dy, dh_n, dc_n, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells):
    """Gradients of :func:`lstm_forward`."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    W_hhT = xp.ascontiguousarray(W_hh.T)
    d_pre = xp.empty((T, B, 4 * H), dtype=x.dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    g = xp.zeros((B, H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        c_prev = c0 if t == 0 else cells[t - 1]
        _lstm_back(
            dy[t], gates[t], cells[t], c_prev, g, lengths, np.int32(t), np.int32(T),
            np.int32(H), dh, dc, d_pre[t],
        )  # fmt: skip
        xp.matmul(d_pre[t], W_hhT, out=g)
    if T:
        dh = xp.where(_first_active(lengths), g, dh)
    dx, dW_ih, dW_hh = _weight_grads(x, _previous_states(y, h0), W_ih, d_pre, d_pre)
    db = d_pre.reshape(T * B, 4 * H).sum(axis=0)
    return dx, dW_ih, dW_hh, db, db.copy(), dh, dc


@follow_input()
def gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0):
    """GRU, one direction; y, gates, hn, h_n as the reference."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    ax = _project(x, W_ih, b_ih)  # (T, B, 3H); b_hh is added inside the step
    y = xp.zeros((T, B, H), dtype=x.dtype)
    gates = xp.zeros((T, B, 3 * H), dtype=x.dtype)
    hn = xp.zeros((T, B, H), dtype=x.dtype)
    h = h0.copy()
    if rnn_fused.wanted(H, x.dtype):
        W_hh = xp.ascontiguousarray(W_hh)
        b_hh = xp.ascontiguousarray(b_hh)
        h_out = xp.empty_like(h)  # the state is double-buffered: h -> h_out
        for t in range(T):
            rnn_fused.gru_step(
                ax[t], W_hh, b_hh, lengths, t, h, h_out, gates[t], hn[t], y[t]
            )
            h, h_out = h_out, h
        return y, gates, hn, h
    rec = xp.empty((B, 3 * H), dtype=x.dtype)
    for t in range(T):
        xp.matmul(h, W_hh, out=rec)
        _gru_step(
            ax[t], rec, b_hh, lengths, np.int32(t), np.int32(H), h, gates[t], hn[t],
            y[t],
        )  # fmt: skip
    return y, gates, hn, h


@follow_input()
def gru_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, gates, hn):
    """Gradients of :func:`gru_forward`."""
    xp = cupy()
    T, B, _ = x.shape
    H = W_hh.shape[0]
    lengths = _int32(lengths)
    W_hhT = xp.ascontiguousarray(W_hh.T)
    d_ax = xp.empty((T, B, 3 * H), dtype=x.dtype)
    d_ah = xp.empty((T, B, 3 * H), dtype=x.dtype)
    dh = dh_n.copy()
    g = xp.zeros((B, H), dtype=x.dtype)
    carry = xp.zeros((B, H), dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        h_prev = h0 if t == 0 else y[t - 1]
        _gru_back(
            dy[t], gates[t], hn[t], h_prev, g, lengths, np.int32(t), np.int32(T),
            np.int32(H), dh, carry, d_ax[t], d_ah[t],
        )  # fmt: skip
        xp.matmul(d_ah[t], W_hhT, out=g)
    if T:
        dh = xp.where(_first_active(lengths), g + carry, dh)
    dx, dW_ih, dW_hh = _weight_grads(x, _previous_states(y, h0), W_ih, d_ax, d_ah)
    db_ih = d_ax.reshape(T * B, 3 * H).sum(axis=0)
    db_hh = d_ah.reshape(T * B, 3 * H).sum(axis=0)
    return dx, dW_ih, dW_hh, db_ih, db_hh, dh
