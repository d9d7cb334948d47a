"""rnn kernels of the numpy_ref backend: one direction of a recurrent layer, run forward
in time.

Shape legend: T frames, B batch, F input features, H hidden units, G gates (4 for the
LSTM, 3 for the GRU, 1 for the vanilla RNN). Every kernel runs one direction forward in
time over a time-major batch ``x (T, B, F)`` with ``lengths (B,)``; the layer in
``npspeech.nn.rnn`` runs the backward direction by reversing each sequence within its
own length first.

Steps ``t >= lengths[b]`` leave sequence ``b``'s state untouched and its output zero, so
the final state of ``b`` is its state after step ``lengths[b] - 1``. In the backward
passes those steps pass the state gradient through unchanged and contribute nothing to
any other gradient.

Equations (PyTorch's, with ``x W`` for ``x @ W`` and gates fused along the last axis):

- RNN:  ``h' = min(max(x W_ih + b_ih + h W_hh + b_hh, 0), ceiling)``
- LSTM: ``[i, f, g, o] = [sig, sig, tanh, sig](x W_ih + b_ih + h W_hh + b_hh)``,
  ``c' = f c + i g``, ``h' = o tanh(c')``
- GRU:  ``[r, z] = sig(x W_ih[:, :2H] + b_ih[:2H] + h W_hh[:, :2H] + b_hh[:2H])``,
  ``n = tanh(x W_in + b_in + r (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``

The kernels trust their inputs: C-contiguous arrays of one float dtype, which they keep.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
]


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _active(t: int, lengths: np.ndarray) -> np.ndarray:
    """(B, 1) bool: which sequences still run at step ``t``."""
    return (t < lengths)[:, None]


def _previous(t: int, y: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """The state entering step ``t`` of a sequence that is active there: ``y[t - 1]`` or
    the initial state (an active sequence was active at every earlier step too)."""
    return initial if t == 0 else y[t - 1]


# --- vanilla RNN with clipped ReLU ----------------------------------------------------


def rnn_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, ceiling):
    """Clipped-ReLU RNN, one direction.

    Parameters
    ----------
    x : (T, B, F) float
    lengths : (B,) int
    W_ih : (F, H), W_hh : (H, H), b_ih, b_hh : (H,)
    h0 : (B, H) initial state
    ceiling : float, the ReLU's upper clip (20 in DeepSpeech)

    Returns
    -------
    y : (T, B, H) outputs, zero past each length
    h_n : (B, H) final state
    """
    T, B, _ = x.shape
    y = np.zeros((T, B, W_hh.shape[0]), dtype=x.dtype)
    h = h0.copy()
    for t in range(T):
        active = _active(t, lengths)
        h_new = np.clip(x[t] @ W_ih + b_ih + h @ W_hh + b_hh, 0.0, ceiling)
        h = np.where(active, h_new, h)
        y[t] = np.where(active, h_new, 0.0)
    return y, h


def rnn_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, ceiling):
    """Gradients of :func:`rnn_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient of the outputs
    dh_n : (B, H) gradient of the final state
    x, lengths, W_ih, W_hh, h0 : as given to the forward pass
    y : (T, B, H) the forward outputs
    ceiling : float

    Returns
    -------
    dx : (T, B, F), dW_ih : (F, H), dW_hh : (H, H), db_ih, db_hh : (H,), dh0 : (B, H)
    """
    T = x.shape[0]
    dx = np.zeros_like(x)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db = np.zeros(W_hh.shape[1], dtype=x.dtype)
    dh = dh_n.copy()
    for t in range(T - 1, -1, -1):
        active = _active(t, lengths)
        # the clip passes gradient only strictly inside (0, ceiling), as hardtanh does
        inside = (y[t] > 0.0) & (y[t] < ceiling)
        d_pre = np.where(active & inside, dh + dy[t], 0.0)  # (B, H)
        h_prev = _previous(t, y, h0)
        dx[t] = d_pre @ W_ih.T
        dW_ih += x[t].T @ d_pre
        dW_hh += h_prev.T @ d_pre
        db += d_pre.sum(axis=0)
        dh = np.where(active, d_pre @ W_hh.T, dh)
    return dx, dW_ih, dW_hh, db, db.copy(), dh


# --- LSTM -----------------------------------------------------------------------------


def lstm_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0):
    """LSTM, one direction, gates fused in order i, f, g, o.

    Parameters
    ----------
    x : (T, B, F) float
    lengths : (B,) int
    W_ih : (F, 4H), W_hh : (H, 4H), b_ih, b_hh : (4H,)
    h0, c0 : (B, H) initial hidden and cell state

    Returns
    -------
    y : (T, B, H) hidden states, zero past each length
    gates : (T, B, 4H) gate values after their activations (i, f, g, o)
    cells : (T, B, H) cell states (meaningless past each length)
    h_n, c_n : (B, H) final hidden and cell state
    """
    T, B, _ = x.shape
    H = W_hh.shape[0]
    y = np.zeros((T, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 4 * H), dtype=x.dtype)
    cells = np.zeros((T, B, H), dtype=x.dtype)
    h, c = h0.copy(), c0.copy()
    for t in range(T):
        active = _active(t, lengths)
        a = x[t] @ W_ih + b_ih + h @ W_hh + b_hh  # (B, 4H)
        i = _sigmoid(a[:, :H])
        f = _sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = _sigmoid(a[:, 3 * H :])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        cells[t] = c_new
        y[t] = np.where(active, h_new, 0.0)
        h = np.where(active, h_new, h)
        c = np.where(active, c_new, c)
    return y, gates, cells, h, c


def lstm_backward(dy, dh_n, dc_n, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells):
    """Gradients of :func:`lstm_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient of the outputs
    dh_n, dc_n : (B, H) gradients of the final hidden and cell state
    x, lengths, W_ih, W_hh, h0, c0 : as given to the forward pass
    y, gates, cells : as returned by the forward pass

    Returns
    -------
    dx : (T, B, F), dW_ih : (F, 4H), dW_hh : (H, 4H), db_ih, db_hh : (4H,),
    dh0, dc0 : (B, H)
    """
    T = x.shape[0]
    H = W_hh.shape[0]
    dx = np.zeros_like(x)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db = np.zeros(4 * H, dtype=x.dtype)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in range(T - 1, -1, -1):
        active = _active(t, lengths)
        i, f, g, o = (gates[t][:, k * H : (k + 1) * H] for k in range(4))
        c_prev = _previous(t, cells, c0)
        tanh_c = np.tanh(cells[t])
        dh_t = dh + dy[t]
        dc_t = dc + dh_t * o * (1.0 - tanh_c**2)
        # gradients of the pre-activations: sigmoid' = s (1 - s), tanh' = 1 - tanh^2
        d_pre = np.concatenate(
            [
                dc_t * g * i * (1.0 - i),
                dc_t * c_prev * f * (1.0 - f),
                dc_t * i * (1.0 - g**2),
                dh_t * tanh_c * o * (1.0 - o),
            ],
            axis=1,
        )
        d_pre = np.where(active, d_pre, 0.0)  # (B, 4H)
        h_prev = _previous(t, y, h0)
        dx[t] = d_pre @ W_ih.T
        dW_ih += x[t].T @ d_pre
        dW_hh += h_prev.T @ d_pre
        db += d_pre.sum(axis=0)
        dh = np.where(active, d_pre @ W_hh.T, dh)
        dc = np.where(active, dc_t * f, dc)
    return dx, dW_ih, dW_hh, db, db.copy(), dh, dc


# --- GRU ------------------------------------------------------------------------------


def gru_forward(x, lengths, W_ih, W_hh, b_ih, b_hh, h0):
    """GRU, one direction, gates fused in order r, z, n (PyTorch's definition).

    Parameters
    ----------
    x : (T, B, F) float
    lengths : (B,) int
    W_ih : (F, 3H), W_hh : (H, 3H), b_ih, b_hh : (3H,)
    h0 : (B, H) initial state

    Returns
    -------
    y : (T, B, H) hidden states, zero past each length
    gates : (T, B, 3H) r, z, n after their activations
    hn : (T, B, H) ``h W_hn + b_hn``, the recurrent part of n before the reset gate
    h_n : (B, H) final state
    """
    T, B, _ = x.shape
    H = W_hh.shape[0]
    y = np.zeros((T, B, H), dtype=x.dtype)
    gates = np.zeros((T, B, 3 * H), dtype=x.dtype)
    hn_all = np.zeros((T, B, H), dtype=x.dtype)
    h = h0.copy()
    for t in range(T):
        active = _active(t, lengths)
        ax = x[t] @ W_ih + b_ih  # (B, 3H)
        ah = h @ W_hh + b_hh  # (B, 3H)
        r = _sigmoid(ax[:, :H] + ah[:, :H])
        z = _sigmoid(ax[:, H : 2 * H] + ah[:, H : 2 * H])
        hn = ah[:, 2 * H :]
        n = np.tanh(ax[:, 2 * H :] + r * hn)
        h_new = (1.0 - z) * n + z * h
        gates[t] = np.concatenate([r, z, n], axis=1)
        hn_all[t] = hn
        y[t] = np.where(active, h_new, 0.0)
        h = np.where(active, h_new, h)
    return y, gates, hn_all, h


def gru_backward(dy, dh_n, x, lengths, W_ih, W_hh, h0, y, gates, hn):
    """Gradients of :func:`gru_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient of the outputs
    dh_n : (B, H) gradient of the final state
    x, lengths, W_ih, W_hh, h0 : as given to the forward pass
    y, gates, hn : as returned by the forward pass

    Returns
    -------
    dx : (T, B, F), dW_ih : (F, 3H), dW_hh : (H, 3H), db_ih, db_hh : (3H,), dh0 : (B, H)
    """
    T = x.shape[0]
    H = W_hh.shape[0]
    dx = np.zeros_like(x)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db_ih = np.zeros(3 * H, dtype=x.dtype)
    db_hh = np.zeros(3 * H, dtype=x.dtype)
    dh = dh_n.copy()
    for t in range(T - 1, -1, -1):
        active = _active(t, lengths)
        r, z, n = (gates[t][:, k * H : (k + 1) * H] for k in range(3))
        h_prev = _previous(t, y, h0)
        dh_t = dh + dy[t]
        d_n_pre = dh_t * (1.0 - z) * (1.0 - n**2)
        d_r_pre = d_n_pre * hn[t] * r * (1.0 - r)
        d_z_pre = dh_t * (h_prev - n) * z * (1.0 - z)
        # the input side sees n's pre-activation; the recurrent side sees it through r
        d_ax = np.where(
            active, np.concatenate([d_r_pre, d_z_pre, d_n_pre], axis=1), 0.0
        )
        d_ah = np.where(
            active, np.concatenate([d_r_pre, d_z_pre, d_n_pre * r], axis=1), 0.0
        )
        dx[t] = d_ax @ W_ih.T
        dW_ih += x[t].T @ d_ax
        dW_hh += h_prev.T @ d_ah
        db_ih += d_ax.sum(axis=0)
        db_hh += d_ah.sum(axis=0)
        dh = np.where(active, d_ah @ W_hh.T + dh_t * z, dh)
    return dx, dW_ih, dW_hh, db_ih, db_hh, dh
