"""rnn kernels of the numba_cpu backend: the same names, signatures and results as
``numpy_ref.rnn`` (read that module for the equations and the shape legend).

How the work is split, so that nearly all of it runs in BLAS:

- forward: the input projection of every step at once, ``x W_ih + b`` as one GEMM of
  ``(T*B, F) x (F, G*H)``; then one ``@njit`` function runs the whole time loop, calling
  ``np.dot(h, W_hh)`` per step (Numba routes it to BLAS) and fusing the gate math of each
  step into one loop over ``(B, H)``;
- backward: one ``@njit`` function runs the time loop backwards, fusing the per-step gate
  gradients and calling ``np.dot(d_pre, W_hh^T)`` per step; it keeps every step's
  pre-activation gradients ``(T, B, G*H)``, so the weight gradients and ``dx`` are three
  large GEMMs after the loop: ``dW_hh = H_prev^T d_pre``, ``dW_ih = X^T d_pre``,
  ``dx = d_pre W_ih^T``.

The gate loops are serial on purpose: per step they cost a few percent of the GEMM
``h W_hh``, which BLAS already spreads over the threads; a parallel region per step would
add a barrier per step and contend with BLAS's own threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


def _project(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x W + b`` for every step in one GEMM: (T, B, F) -> (T, B, G*H), C-contiguous."""
    T, B, F = x.shape
    out = x.reshape(T * B, F) @ W  # (T*B, G*H)
    out += b
    return out.reshape(T, B, W.shape[1])


def _weight_gradients(x, h_prev, d_in, d_rec, W_ih):
    """The post-loop GEMMs: dx, dW_ih, dW_hh, db_ih, db_hh from the per-step gradients of
    the input-side pre-activations ``d_in`` and recurrent-side ones ``d_rec`` (T, B, G*H)."""
    T, B, F = x.shape
    GH = d_in.shape[2]
    d_in2 = d_in.reshape(T * B, GH)
    d_rec2 = d_rec.reshape(T * B, GH)
    dx = (d_in2 @ W_ih.T).reshape(T, B, F)
    dW_ih = x.reshape(T * B, F).T @ d_in2
    dW_hh = h_prev.reshape(T * B, h_prev.shape[2]).T @ d_rec2
    return dx, dW_ih, dW_hh, d_in2.sum(axis=0), d_rec2.sum(axis=0)


def _shifted_states(y: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """(T, B, H) state entering each step: h0, y[0], ..., y[T-2] (valid where it matters:
    at active steps, since an active sequence was active at every earlier step)."""
    h_prev = np.empty_like(y)
    h_prev[0] = h0
    h_prev[1:] = y[:-1]
    return h_prev


# --- vanilla RNN with clipped ReLU ---------------------------------------------------------


@njit(cache=True)
def _rnn_forward_loop(xw, W_hh, lengths, h0, ceiling, y):  # pragma: no cover - jit
    T, B, H = y.shape
    h = h0.copy()
    for t in range(T):
        hw = np.dot(h, W_hh)  # (B, H)
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                v = min(max(xw[t, b, k] + hw[b, k], 0.0), ceiling)
                y[t, b, k] = v
                h[b, k] = v
    return h


@njit(cache=True)
def _rnn_backward_loop(dy, dh_n, lengths, W_hh_T, y, ceiling, d_pre):  # pragma: no cover
    T, B, H = dy.shape
    dh = dh_n.copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                v = y[t, b, k]
                if v > 0.0 and v < ceiling:
                    d_pre[t, b, k] = dh[b, k] + dy[t, b, k]
        dh_prev = np.dot(d_pre[t], W_hh_T)  # (B, H)
        for b in range(B):
            if t < lengths[b]:
                dh[b, :] = dh_prev[b, :]
    return dh


def rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling):
    """See ``numpy_ref.rnn.rnn_forward``."""
    T, B, _ = x.shape
    xw = _project(x, W_ih, b_ih + b_hh)
    y = np.zeros((T, B, W_hh.shape[0]), dtype=x.dtype)
    h_n = _rnn_forward_loop(xw, W_hh, lengths, h0, x.dtype.type(ceiling), y)
    return y, h_n


def rnn_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, ceiling):
    """See ``numpy_ref.rnn.rnn_backward``."""
    d_pre = np.zeros(y.shape, dtype=x.dtype)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    dh0 = _rnn_backward_loop(dy, dh_n, lengths, W_hh_T, y, x.dtype.type(ceiling), d_pre)
    grads = _weight_gradients(x, _shifted_states(y, h0), d_pre, d_pre, W_ih)
    return (*grads, dh0)


# --- LSTM ----------------------------------------------------------------------------------


@njit(cache=True)
def _lstm_forward_loop(xw, W_hh, lengths, h0, c0, y, gates, cells):  # pragma: no cover
    T, B, H = y.shape
    h = h0.copy()
    c = c0.copy()
    for t in range(T):
        hw = np.dot(h, W_hh)  # (B, 4H)
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                i = 1.0 / (1.0 + math.exp(-(xw[t, b, k] + hw[b, k])))
                f = 1.0 / (1.0 + math.exp(-(xw[t, b, H + k] + hw[b, H + k])))
                g = math.tanh(xw[t, b, 2 * H + k] + hw[b, 2 * H + k])
                o = 1.0 / (1.0 + math.exp(-(xw[t, b, 3 * H + k] + hw[b, 3 * H + k])))
                c_new = f * c[b, k] + i * g
                h_new = o * math.tanh(c_new)
                gates[t, b, k] = i
                gates[t, b, H + k] = f
                gates[t, b, 2 * H + k] = g
                gates[t, b, 3 * H + k] = o
                cells[t, b, k] = c_new
                y[t, b, k] = h_new
                c[b, k] = c_new
                h[b, k] = h_new
    return h, c


@njit(cache=True)
def _lstm_backward_loop(
    dy, dh_n, dc_n, lengths, W_hh_T, c0, gates, cells, d_pre
):  # pragma: no cover - jit
    T, B, H = dy.shape
    dh = dh_n.copy()
    dc = dc_n.copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                i = gates[t, b, k]
                f = gates[t, b, H + k]
                g = gates[t, b, 2 * H + k]
                o = gates[t, b, 3 * H + k]
                c_prev = c0[b, k] if t == 0 else cells[t - 1, b, k]
                tanh_c = math.tanh(cells[t, b, k])
                dh_t = dh[b, k] + dy[t, b, k]
                dc_t = dc[b, k] + dh_t * o * (1.0 - tanh_c * tanh_c)
                d_pre[t, b, k] = dc_t * g * i * (1.0 - i)
                d_pre[t, b, H + k] = dc_t * c_prev * f * (1.0 - f)
                d_pre[t, b, 2 * H + k] = dc_t * i * (1.0 - g * g)
                d_pre[t, b, 3 * H + k] = dh_t * tanh_c * o * (1.0 - o)
                dc[b, k] = dc_t * f
        dh_prev = np.dot(d_pre[t], W_hh_T)  # (B, H)
        for b in range(B):
            if t < lengths[b]:
                dh[b, :] = dh_prev[b, :]
    return dh, dc


def lstm_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0):
    """See ``numpy_ref.rnn.lstm_forward``."""
    T, B, _ = x.shape
    H = W_hh.shape[0]
    xw = _project(x, W_ih, b_ih + b_hh)
    y = np.zeros((T, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 4 * H), dtype=x.dtype)
    cells = np.zeros((T, B, H), dtype=x.dtype)
    h_n, c_n = _lstm_forward_loop(xw, W_hh, lengths, h0, c0, y, gates, cells)
    return y, gates, cells, h_n, c_n


def lstm_backward(dy, dh_n, dc_n, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells):
    """See ``numpy_ref.rnn.lstm_backward``."""
    d_pre = np.zeros(gates.shape, dtype=x.dtype)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    dh0, dc0 = _lstm_backward_loop(
        dy, dh_n, dc_n, lengths, W_hh_T, c0, gates, cells, d_pre
    )
    grads = _weight_gradients(x, _shifted_states(y, h0), d_pre, d_pre, W_ih)
    return (*grads, dh0, dc0)


# --- GRU -----------------------------------------------------------------------------------


@njit(cache=True)
def _gru_forward_loop(xw, W_hh, b_hh, lengths, h0, y, gates, hn_all):  # pragma: no cover
    T, B, H = y.shape
    h = h0.copy()
    for t in range(T):
        hw = np.dot(h, W_hh)  # (B, 3H)
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                r = 1.0 / (1.0 + math.exp(-(xw[t, b, k] + hw[b, k] + b_hh[k])))
                a_z = xw[t, b, H + k] + hw[b, H + k] + b_hh[H + k]
                z = 1.0 / (1.0 + math.exp(-a_z))
                hn = hw[b, 2 * H + k] + b_hh[2 * H + k]
                n = math.tanh(xw[t, b, 2 * H + k] + r * hn)
                h_new = (1.0 - z) * n + z * h[b, k]
                gates[t, b, k] = r
                gates[t, b, H + k] = z
                gates[t, b, 2 * H + k] = n
                hn_all[t, b, k] = hn
                y[t, b, k] = h_new
                h[b, k] = h_new
    return h


@njit(cache=True)
def _gru_backward_loop(
    dy, dh_n, lengths, W_hh_T, h0, y, gates, hn_all, d_in, d_rec
):  # pragma: no cover - jit
    T, B, H = dy.shape
    dh = dh_n.copy()
    dh_direct = np.zeros_like(dh)  # the part of dh_prev through h' = ... + z h
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if t >= lengths[b]:
                continue
            for k in range(H):
                r = gates[t, b, k]
                z = gates[t, b, H + k]
                n = gates[t, b, 2 * H + k]
                h_prev = h0[b, k] if t == 0 else y[t - 1, b, k]
                dh_t = dh[b, k] + dy[t, b, k]
                d_n_pre = dh_t * (1.0 - z) * (1.0 - n * n)
                d_r_pre = d_n_pre * hn_all[t, b, k] * r * (1.0 - r)
                d_z_pre = dh_t * (h_prev - n) * z * (1.0 - z)
                d_in[t, b, k] = d_r_pre
                d_in[t, b, H + k] = d_z_pre
                d_in[t, b, 2 * H + k] = d_n_pre
                d_rec[t, b, k] = d_r_pre
                d_rec[t, b, H + k] = d_z_pre
                d_rec[t, b, 2 * H + k] = d_n_pre * r
                dh_direct[b, k] = dh_t * z
        dh_prev = np.dot(d_rec[t], W_hh_T)  # (B, H)
        for b in range(B):
            if t < lengths[b]:
                for k in range(H):
                    dh[b, k] = dh_prev[b, k] + dh_direct[b, k]
    return dh


def gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0):
    """See ``numpy_ref.rnn.gru_forward``."""
    T, B, _ = x.shape
    H = W_hh.shape[0]
    xw = _project(x, W_ih, b_ih)
    y = np.zeros((T, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 3 * H), dtype=x.dtype)
    hn_all = np.zeros((T, B, H), dtype=x.dtype)
    h_n = _gru_forward_loop(xw, W_hh, b_hh, lengths, h0, y, gates, hn_all)
    return y, gates, hn_all, h_n


def gru_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, gates, hn):
    """See ``numpy_ref.rnn.gru_backward``."""
    d_in = np.zeros(gates.shape, dtype=x.dtype)
    d_rec = np.zeros(gates.shape, dtype=x.dtype)
    W_hh_T = np.ascontiguousarray(W_hh.T)
    dh0 = _gru_backward_loop(dy, dh_n, lengths, W_hh_T, h0, y, gates, hn, d_in, d_rec)
    grads = _weight_gradients(x, _shifted_states(y, h0), d_in, d_rec, W_ih)
    return (*grads, dh0)
