"""The inference kernels in plain NumPy: the spec that :mod:`._numba` accelerates.

Every kernel runs a whole chunk of frames; none keeps anything for a backward pass. The
recurrent kernels carry their state in place (``h``, ``c`` are read as the state
entering the chunk and left as the state after each sequence's last valid frame), so a
stream is the same call repeated chunk by chunk.

Shape legend: T frames, B batch, N rows, F features, H hidden units, G gates (LSTM 4 in
order i, f, g, o; GRU 3 in order r, z, n; RNN 1).

The recurrent weight ``W_hh (H, G*H)`` is passed in the form :func:`pack_recurrent`
returns; here that is the matrix itself (the Numba kernels pack it into column panels
once, when the network is built).

int8 weights (``npspeech quantize``): ``W = q * scale``, ``q`` int8 and one float32
scale per output column (per output channel of a convolution). The ``pack_*_int8``
functions return an :class:`Int8Matrix`; every kernel takes it wherever it takes a
float weight and computes ``(x @ q) * scale``: the product of the float activations
with the integer weights, then each column scaled. Activations stay float.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Int8Matrix",
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


class Int8Matrix(NamedTuple):
    """An int8 weight ``W = q * scale``.

    Attributes
    ----------
    q : int8 array
        (K, N) for a dense or recurrent weight; (C_out, C_in, kt, kf) for a
        convolution.
    scale : float32 array
        (N,), one per output column; (C_out,) for a convolution.
    """

    q: np.ndarray
    scale: np.ndarray


def pack_dense(W: np.ndarray) -> np.ndarray:
    """A dense layer's weight as :func:`dense` reads it: unchanged, C-contiguous
    (F_in, F_out)."""
    return np.ascontiguousarray(W)


def pack_dense_int8(q: np.ndarray, scale: np.ndarray) -> Int8Matrix:
    """An int8 dense weight: q int8 (F_in, F_out), scale float32 (F_out,)."""
    return Int8Matrix(np.ascontiguousarray(q, dtype=np.int8), np.asarray(scale))


def _times(x: np.ndarray, W) -> np.ndarray:
    """``x @ W`` for a float weight or an :class:`Int8Matrix`, in x's dtype."""
    if isinstance(W, Int8Matrix):
        return (x @ W.q.astype(x.dtype)) * W.scale.astype(x.dtype)
    return x @ W


def dense(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ W + b``.

    x (N, F_in), W (F_in, F_out) or its :class:`Int8Matrix`, b (F_out,), one float
    dtype -> y (N, F_out).
    """
    return _times(x, W) + b


def dense_clip(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, low: float, high: float
) -> np.ndarray:
    """``min(max(x @ W + b, low), high)``: a dense layer and its clipped ReLU
    (``(0, 20)`` in DeepSpeech) or hardtanh.

    x (N, F_in), W (F_in, F_out), b (F_out,), one float dtype -> y (N, F_out).
    """
    return np.clip(_times(x, W) + b, x.dtype.type(low), x.dtype.type(high))


def pack_conv(W: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """A convolution's weight as :func:`conv_clip` reads it: unchanged, C-contiguous
    (C_out, C_in, kt, kf) (``stride`` is for the compiled kernels' layout)."""
    return np.ascontiguousarray(W)


def pack_conv_int8(q: np.ndarray, scale: np.ndarray, stride) -> Int8Matrix:
    """An int8 convolution: q int8 (C_out, C_in, kt, kf), scale float32 (C_out,)."""
    return Int8Matrix(np.ascontiguousarray(q, dtype=np.int8), np.asarray(scale))


def conv_clip(xp, W_packed, b, kernel, stride, low, high) -> np.ndarray:
    """A 2D convolution (PyTorch's ``conv2d``, a cross-correlation) and a clip.

    Parameters
    ----------
    xp : array, shape (Tp, B, C_in, Fp)
        The input, zero-padded in time and frequency.
    W_packed : array
        ``W`` (C_out, C_in, kt, kf) as :func:`pack_conv` gives it, or the
        :class:`Int8Matrix` of :func:`pack_conv_int8`.
    b : array, shape (C_out,)
    kernel, stride : (int, int)
        ``(kt, kf)`` and ``(st, sf)``.
    low, high : float

    Returns
    -------
    y : array, shape (T', B, C_out, F'), ``T' = (Tp - kt) // st + 1``,
        ``F' = (Fp - kf) // sf + 1``; ``min(max(conv + b, low), high)``.
    """
    (kt, kf), (st, sf) = kernel, stride
    T_out = (xp.shape[0] - kt) // st + 1
    F_out = (xp.shape[3] - kf) // sf + 1
    # patches (T', B, F', C_in, kt, kf): output position by kernel offset
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kt, kf), axis=(0, 3))
    windows = windows[: (T_out - 1) * st + 1 : st, :, :, : (F_out - 1) * sf + 1 : sf]
    # windows (T', B, C_in, F', kt, kf); y[t, b, o, f] = sum_ckl W[o, c, k, l] win
    if isinstance(W_packed, Int8Matrix):
        W = (
            W_packed.q.astype(xp.dtype)
            * W_packed.scale.astype(xp.dtype)[:, None, None, None]
        )
    else:
        W = W_packed
    y = np.einsum("tbcfkl,ockl->tbof", windows, W, optimize=True) + b[:, None]
    return np.clip(y, xp.dtype.type(low), xp.dtype.type(high)).astype(xp.dtype)


def pack_recurrent(W_hh: np.ndarray) -> np.ndarray:
    """The recurrent weight as the kernels of this module read it: unchanged,
    C-contiguous (H, G*H)."""
    return np.ascontiguousarray(W_hh)


def pack_recurrent_int8(q: np.ndarray, scale: np.ndarray) -> Int8Matrix:
    """An int8 recurrent weight: q int8 (H, G*H), scale float32 (G*H,)."""
    return Int8Matrix(np.ascontiguousarray(q, dtype=np.int8), np.asarray(scale))


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def lstm_sequence(xw, lengths, W_packed, bias, h, c, y) -> None:
    """An LSTM over a chunk of frames, state carried in place.

    Parameters
    ----------
    xw : array, shape (T, B, 4H)
        The input projection ``x W_ih`` without any bias.
    lengths : int array, shape (B,)
        Valid frames per sequence; later frames leave its state as it is.
    W_packed : array
        ``W_hh`` (H, 4H) as :func:`pack_recurrent` gives it, or its
        :class:`Int8Matrix`.
    bias : array, shape (4H,)
        ``b_ih + b_hh``.
    h, c : arrays, shape (B, H)
        State entering the chunk; overwritten with the state after each sequence's
        last valid frame.
    y : array, shape (T, B, H)
        Output: the hidden states, zero past each length.
    """
    H = h.shape[1]
    for t in range(xw.shape[0]):
        active = (t < np.asarray(lengths))[:, None]  # (B, 1)
        a = xw[t] + _times(h, W_packed) + bias  # (B, 4H)
        i = _sigmoid(a[:, :H])
        f = _sigmoid(a[:, H : 2 * H])
        g = np.tanh(a[:, 2 * H : 3 * H])
        o = _sigmoid(a[:, 3 * H :])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        y[t] = np.where(active, h_new, 0.0)
        h[...] = np.where(active, h_new, h)
        c[...] = np.where(active, c_new, c)


def gru_sequence(xw, lengths, W_packed, b_hh, h, y) -> None:
    """A GRU (PyTorch's definition) over a chunk of frames, state carried in place.

    Parameters
    ----------
    xw : array, shape (T, B, 3H)
        The input projection ``x W_ih + b_ih``.
    lengths : int array, shape (B,)
    W_packed : array
        ``W_hh`` (H, 3H) as :func:`pack_recurrent` gives it, or its
        :class:`Int8Matrix`.
    b_hh : array, shape (3H,)
        The recurrent bias (inside the reset gate's product for n, so kept apart).
    h : array, shape (B, H)
        State, updated in place.
    y : array, shape (T, B, H)
        Output, zero past each length.
    """
    H = h.shape[1]
    for t in range(xw.shape[0]):
        active = (t < np.asarray(lengths))[:, None]
        ah = _times(h, W_packed) + b_hh  # (B, 3H)
        r = _sigmoid(xw[t, :, :H] + ah[:, :H])
        z = _sigmoid(xw[t, :, H : 2 * H] + ah[:, H : 2 * H])
        n = np.tanh(xw[t, :, 2 * H :] + r * ah[:, 2 * H :])
        h_new = (1.0 - z) * n + z * h
        y[t] = np.where(active, h_new, 0.0)
        h[...] = np.where(active, h_new, h)


def rnn_sequence(xw, lengths, W_packed, bias, h, ceiling, y) -> None:
    """A vanilla RNN with ReLU clipped at ``ceiling`` over a chunk of frames.

    Parameters
    ----------
    xw : array, shape (T, B, H)
        The input projection ``x W_ih`` without any bias.
    lengths : int array, shape (B,)
    W_packed : array
        ``W_hh`` (H, H) as :func:`pack_recurrent` gives it, or its
        :class:`Int8Matrix`.
    bias : array, shape (H,)
        ``b_ih + b_hh``.
    h : array, shape (B, H)
        State, updated in place.
    ceiling : float
    y : array, shape (T, B, H)
        Output, zero past each length.
    """
    for t in range(xw.shape[0]):
        active = (t < np.asarray(lengths))[:, None]
        h_new = np.clip(xw[t] + _times(h, W_packed) + bias, 0.0, ceiling)
        y[t] = np.where(active, h_new, 0.0)
        h[...] = np.where(active, h_new, h)
