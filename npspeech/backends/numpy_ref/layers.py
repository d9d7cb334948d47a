"""layers kernels of the numpy_ref backend: the spec of every non-recurrent layer.

Shape legend: T frames, B batch, F features, C channels, K positions per channel
(frequencies of a conv output; 1 for sequence-wise batch norm), N rows, V classes.

Kernels trust their inputs: C-contiguous float32/float64 arrays of matching dtype and
``lengths`` as int32. They keep the input dtype and never modify an input; the only
kernel that writes into an argument is :func:`col2im_add`, whose ``dxp`` is an output
buffer by contract. The public layers in :mod:`npspeech.nn` validate arguments first.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...constants import CONV_CHUNK_BYTES

__all__ = [
    "adam_update",
    "batch_norm_apply",
    "batch_norm_backward",
    "clip_backward",
    "clip_forward",
    "col2im_add",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_clip_backward",
    "dense_clip_forward",
    "dense_forward",
    "dropout_apply",
    "im2col",
    "layer_norm_backward",
    "layer_norm_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "lookahead_backward",
    "lookahead_forward",
    "mask_padded",
    "masked_moments",
    "sgd_update",
]


def _valid_frames(lengths: np.ndarray, T: int) -> np.ndarray:
    """(T, B) bool: True where frame t lies inside sequence b."""
    return np.arange(T)[:, None] < lengths[None, :]


def mask_padded(x: np.ndarray, lengths: np.ndarray, out: np.ndarray | None = None):
    """Zero the padded frames ``t >= lengths[b]`` of a time-major array.

    Parameters
    ----------
    x : array, shape (T, B, ...), float
    lengths : int32 array, shape (B,)
    out : array shaped like ``x``, optional
        Where to write; may be ``x`` itself when the caller owns it.

    Returns
    -------
    array shaped like ``x``: ``x`` with its padded frames zeroed.
    """
    if out is None:
        out = x.copy()
    elif out is not x:
        out[...] = x
    out[~_valid_frames(lengths, x.shape[0])] = 0
    return out


# --- dense ---------------------------------------------------------------------------


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``y = x @ W + b``, one GEMM over every row.

    x (N, F_in), W (F_in, F_out), b (F_out,) -> y (N, F_out).
    """
    y = x @ W  # (N, F_out)
    y += b
    return y


def dense_backward(x: np.ndarray, W: np.ndarray, dy: np.ndarray, need_dx: bool = True):
    """Gradients of :func:`dense_forward`.

    x (N, F_in), W (F_in, F_out), dy (N, F_out) -> dx (N, F_in), dW (F_in, F_out),
    db (F_out,). ``need_dx=False`` skips ``dx`` (None): a network's first layer, whose
    input is data, saves one GEMM.
    """
    dx = dy @ W.T if need_dx else None  # (N, F_in)
    dW = x.T @ dy  # (F_in, F_out)
    db = dy.sum(axis=0)
    return dx, dW, db


def dense_clip_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, low: float, high: float
) -> np.ndarray:
    """``y = min(max(x @ W + b, low), high)``: a dense layer and its clipping activation
    (clipped ReLU, hard-tanh) as one operation, so that a backend can add the bias and
    clip in one pass over the output.

    x (N, F_in), W (F_in, F_out), b (F_out,) -> y (N, F_out).
    """
    return clip_forward(dense_forward(x, W, b), low, high)


def dense_clip_backward(
    x: np.ndarray,
    W: np.ndarray,
    y: np.ndarray,
    dy: np.ndarray,
    low: float,
    high: float,
    need_dx: bool = True,
):
    """Gradients of :func:`dense_clip_forward` from its output ``y`` (N, F_out):
    :func:`clip_backward`, then :func:`dense_backward`; the same shapes as that."""
    return dense_backward(x, W, clip_backward(dy, y, low, high), need_dx)


# --- element-wise activations --------------------------------------------------------


def clip_forward(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``min(max(x, low), high)``: hard-tanh; ReLU clipped at ``high`` when low = 0."""
    return np.clip(x, low, high).astype(x.dtype, copy=False)


def clip_backward(dy: np.ndarray, y: np.ndarray, low: float, high: float) -> np.ndarray:
    """Gradient of :func:`clip_forward` from its output ``y``.

    The slope is 1 strictly inside ``(low, high)`` and 0 elsewhere, as PyTorch's
    hardtanh defines it at the kinks; ``low < y < high`` holds exactly when
    ``low < x < high``, so the output is all the backward pass needs.
    """
    inside = (y > low) & (y < high)
    return np.where(inside, dy, 0).astype(dy.dtype, copy=False)


def log_softmax_forward(x: np.ndarray) -> np.ndarray:
    """Log-softmax of each row: x (N, V) -> y (N, V).

    The row maximum is subtracted first so that ``exp`` cannot overflow.
    """
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of :func:`log_softmax_forward`: ``dx = dy - softmax * sum(dy)`` per row.

    dy (N, V), y (N, V) the forward output -> dx (N, V).
    """
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def dropout_apply(x: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """``x * scale`` where ``keep`` else 0 (inverted dropout; also its backward).

    x (...), keep bool (...) shaped like x -> y shaped like x.
    """
    return np.where(keep, x * x.dtype.type(scale), 0).astype(x.dtype, copy=False)


# --- 2D convolution as im2col + GEMM --------------------------------------------------


def im2col(
    xp: np.ndarray, kt: int, kf: int, st: int, sf: int, t_start: int, t_stop: int
) -> np.ndarray:
    """Unfold the patches of output frames ``t_start <= t < t_stop`` into rows.

    Parameters
    ----------
    xp : array, shape (Tp, B, C, Fp), float
        The input, already zero-padded in time and frequency.
    kt, kf : int
        Kernel size in time and frequency.
    st, sf : int
        Stride in time and frequency.
    t_start, t_stop : int
        The range of output frames to unfold.

    Returns
    -------
    cols : array, shape ((t_stop - t_start) * B * F', C * kt * kf), xp's dtype
        Row ``((t - t_start) * B + b) * F' + f`` holds the patch feeding output
        ``(t, b, :, f)``, ordered (channel, time offset, frequency offset) like a
        PyTorch weight ``(C_out, C_in, kt, kf)`` flattened.
    """
    Tp, B, C, Fp = xp.shape
    F_out = (Fp - kf) // sf + 1
    first = t_start * st  # first padded input frame used
    last = (t_stop - 1) * st + kt  # one past the last
    windows = sliding_window_view(xp[first:last], (kt, kf), axis=(0, 3))
    # windows: (n_t', B, C, Fp - kf + 1, kt, kf); keep every stride-th start
    windows = windows[::st, :, :, ::sf][:, :, :, :F_out]  # (n_t, B, C, F', kt, kf)
    patches = windows.transpose(0, 1, 3, 2, 4, 5)  # (n_t, B, F', C, kt, kf)
    return patches.reshape(-1, C * kt * kf)  # copies: ((n_t*B*F'), C*kt*kf)


def col2im_add(
    dcols: np.ndarray,
    dxp: np.ndarray,
    kt: int,
    kf: int,
    st: int,
    sf: int,
    t_start: int,
) -> None:
    """Scatter-add patch gradients back onto the padded input (the adjoint of im2col).

    Parameters
    ----------
    dcols : array, shape (n_t * B * F', C * kt * kf), float
        Gradients of the rows :func:`im2col` produced for output frames
        ``t_start <= t < t_start + n_t``.
    dxp : array, shape (Tp, B, C, Fp), float
        Output buffer, updated in place: ``dxp += col2im(dcols)``.
    """
    _, B, C, Fp = dxp.shape
    F_out = (Fp - kf) // sf + 1
    n_t = dcols.shape[0] // (B * F_out)
    patches = dcols.reshape(n_t, B, F_out, C, kt, kf)
    for i in range(kt):
        t0 = t_start * st + i
        for j in range(kf):
            # For one kernel offset the targets are distinct, so a plain += is exact.
            rows = slice(t0, t0 + st * (n_t - 1) + 1, st)
            cols = slice(j, j + sf * (F_out - 1) + 1, sf)
            # patches[..., i, j]: (n_t, B, F', C) -> (n_t, B, C, F')
            dxp[rows, :, :, cols] += patches[:, :, :, :, i, j].transpose(0, 1, 3, 2)


def conv_chunk_frames(B: int, F_out: int, patch: int, itemsize: int) -> int:
    """Output frames per im2col slice, so that one patch matrix is ~CONV_CHUNK_BYTES."""
    return max(1, CONV_CHUNK_BYTES // max(1, B * F_out * patch * itemsize))


def conv2d_forward(
    xp: np.ndarray, W: np.ndarray, b: np.ndarray, st: int, sf: int
) -> np.ndarray:
    """2D convolution over (time, frequency) of a padded input, as im2col + GEMM.

    Parameters
    ----------
    xp : array, shape (Tp, B, C_in, Fp), float
        The input, zero-padded in time and frequency.
    W : array, shape (C_out, C_in, kt, kf), xp's dtype
        PyTorch's layout (cross-correlation, as ``torch.nn.functional.conv2d``).
    b : array, shape (C_out,)
    st, sf : int
        Strides in time and frequency.

    Returns
    -------
    y : array, shape (T', B, C_out, F'), xp's dtype
        ``T' = (Tp - kt) // st + 1``, ``F' = (Fp - kf) // sf + 1``; no frame is masked.
    """
    return _conv2d_forward(xp, W, b, st, sf, im2col)


def conv2d_backward(
    dy: np.ndarray,
    xp: np.ndarray,
    W: np.ndarray,
    st: int,
    sf: int,
    need_dx: bool = True,
):
    """Gradients of :func:`conv2d_forward`: GEMMs against the unfolded input, col2im.

    dy (T', B, C_out, F'), xp (Tp, B, C_in, Fp), W (C_out, C_in, kt, kf) ->
    dxp (Tp, B, C_in, Fp), dW (C_out, C_in, kt, kf), db (C_out,). ``need_dx=False``
    skips ``dxp`` (None) and its GEMM and col2im: a network's first layer.
    """
    return _conv2d_backward(dy, xp, W, st, sf, im2col, col2im_add, need_dx)


def _conv2d_forward(xp, W, b, st, sf, unfold):
    """:func:`conv2d_forward` with the unfolding kernel passed in (shared code)."""
    Tp, B, _, Fp = xp.shape
    C_out, _, kt, kf = W.shape
    T_out = (Tp - kt) // st + 1
    F_out = (Fp - kf) // sf + 1
    W_rows = W.reshape(C_out, -1)  # (C_out, C_in*kt*kf), the patch order of im2col
    y = np.empty((T_out, B, F_out, C_out), dtype=xp.dtype)
    chunk = conv_chunk_frames(B, F_out, W_rows.shape[1], xp.dtype.itemsize)
    for t0 in range(0, T_out, chunk):
        t1 = min(T_out, t0 + chunk)
        cols = unfold(xp, kt, kf, st, sf, t0, t1)  # ((t1-t0)*B*F', C_in*kt*kf)
        y[t0:t1] = (cols @ W_rows.T).reshape(t1 - t0, B, F_out, C_out)
    y += b
    return np.ascontiguousarray(y.transpose(0, 1, 3, 2))  # (T', B, C_out, F')


def _conv2d_backward(dy, xp, W, st, sf, unfold, fold_add, need_dx=True):
    """:func:`conv2d_backward` with the (un)folding kernels passed in."""
    C_out, _, kt, kf = W.shape
    T_out, B, _, F_out = dy.shape
    W_rows = W.reshape(C_out, -1)  # (C_out, P), P = C_in*kt*kf
    dy_rows = np.ascontiguousarray(dy.transpose(0, 1, 3, 2))  # (T', B, F', C_out)
    db = dy.sum(axis=(0, 1, 3))
    dW_rows = np.zeros_like(W_rows)
    dxp = np.zeros_like(xp) if need_dx else None
    chunk = conv_chunk_frames(B, F_out, W_rows.shape[1], xp.dtype.itemsize)
    for t0 in range(0, T_out, chunk):
        t1 = min(T_out, t0 + chunk)
        cols = unfold(xp, kt, kf, st, sf, t0, t1)  # (n, P) with n = (t1-t0)*B*F'
        g = dy_rows[t0:t1].reshape(-1, C_out)  # (n, C_out)
        dW_rows += g.T @ cols  # (C_out, P)
        if need_dx:
            fold_add(g @ W_rows, dxp, kt, kf, st, sf, t0)  # (n, P) scattered onto dxp
    return dxp, dW_rows.reshape(W.shape), db


# --- batch norm ----------------------------------------------------------------------


def masked_moments(x: np.ndarray, lengths: np.ndarray):
    """Per-channel mean and biased variance over the valid frames.

    Parameters
    ----------
    x : array, shape (T, B, C, K), float
        K positions per channel (frequencies of a conv output, 1 for features).
    lengths : int32 array, shape (B,)

    Returns
    -------
    mean, var : arrays, shape (C,), x's dtype
        Over the ``sum(lengths) * K`` valid values of each channel; two passes (mean,
        then squared deviations) so that a large mean costs no precision.
    """
    valid = _valid_frames(lengths, x.shape[0])  # (T, B)
    values = x[valid]  # (N, C, K)
    count = values.shape[0] * values.shape[2]
    mean = values.sum(axis=(0, 2)) / count
    var = ((values - mean[None, :, None]) ** 2).sum(axis=(0, 2)) / count
    return mean.astype(x.dtype), var.astype(x.dtype)


def batch_norm_apply(
    x: np.ndarray, lengths: np.ndarray, scale: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """``y = x * scale + shift`` per channel on valid frames, 0 on padded frames.

    x (T, B, C, K), lengths int32 (B,), scale (C,), shift (C,) -> y (T, B, C, K).
    With ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale`` this is
    batch normalisation.
    """
    y = x * scale[:, None] + shift[:, None]
    return mask_padded(y, lengths, out=y)


def batch_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    lengths: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    gamma: np.ndarray,
    training: bool,
):
    """Gradients of batch normalisation over the valid frames.

    Parameters
    ----------
    dy, x : arrays, shape (T, B, C, K), float
    lengths : int32 array, shape (B,)
    mean, invstd, gamma : arrays, shape (C,)
        The statistics the forward pass normalised with (batch statistics in training,
        running statistics in evaluation) and the scale.
    training : bool
        True when the statistics came from this batch, so that they depend on ``x``.

    Returns
    -------
    dx : array, shape (T, B, C, K); zero on padded frames.
    dgamma, dbeta : arrays, shape (C,)
    """
    valid = _valid_frames(lengths, x.shape[0])[:, :, None, None]  # (T, B, 1, 1)
    g = np.where(valid, dy, 0)
    xhat = (x - mean[:, None]) * invstd[:, None]
    dbeta = g.sum(axis=(0, 1, 3))
    dgamma = (g * xhat).sum(axis=(0, 1, 3))
    if training:
        count = int(lengths.sum()) * x.shape[3]
        # d/dx of gamma * (x - mean(x)) / std(x): the mean and variance terms subtract
        # the projections of dy onto 1 and onto xhat.
        dxhat = g - (dbeta[:, None] + xhat * dgamma[:, None]) / count
    else:
        dxhat = g
    dx = np.where(valid, dxhat * (gamma * invstd)[:, None], 0).astype(
        x.dtype, copy=False
    )
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# --- layer norm ----------------------------------------------------------------------


def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
    """Normalise each row over its F features, then scale and shift.

    x (N, F), gamma (F,), beta (F,) -> y (N, F), xhat (N, F), invstd (N,).
    """
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=1, keepdims=True)  # biased, as PyTorch
    invstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = centred * invstd
    return xhat * gamma + beta, xhat, invstd[:, 0]


def layer_norm_backward(
    dy: np.ndarray, xhat: np.ndarray, invstd: np.ndarray, gamma: np.ndarray
):
    """Gradients of :func:`layer_norm_forward`.

    dy (N, F), xhat (N, F), invstd (N,), gamma (F,) ->
    dx (N, F), dgamma (F,), dbeta (F,).
    """
    F = xhat.shape[1]
    g = dy * gamma  # (N, F): gradient w.r.t. xhat
    dx = (invstd / F)[:, None] * (
        F * g
        - g.sum(axis=1, keepdims=True)
        - xhat * (g * xhat).sum(axis=1, keepdims=True)
    )
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# --- lookahead (row) convolution -----------------------------------------------------


def lookahead_forward(x: np.ndarray, lengths: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Row convolution over the current and future frames (DeepSpeech2, section 3.5).

    ``y[t, b, f] = sum_k W[k, f] * x[t + k, b, f]`` over ``0 <= k <= context`` and
    ``t + k < lengths[b]``; padded output frames are 0.

    x (T, B, F), lengths int32 (B,), W (context + 1, F) -> y (T, B, F).
    """
    xm = mask_padded(x, lengths)  # frames past the end count as zero
    T = x.shape[0]
    y = np.zeros_like(x)
    for k in range(min(W.shape[0], T)):
        y[: T - k] += W[k] * xm[k:]
    return mask_padded(y, lengths, out=y)


def lookahead_backward(
    dy: np.ndarray, x: np.ndarray, lengths: np.ndarray, W: np.ndarray
):
    """Gradients of :func:`lookahead_forward`.

    dy, x (T, B, F), lengths int32 (B,), W (context + 1, F) -> dx (T, B, F),
    dW (context + 1, F). dx is 0 on padded frames.
    """
    xm = mask_padded(x, lengths)
    g = mask_padded(dy, lengths)
    T = x.shape[0]
    dx = np.zeros_like(x)
    dW = np.zeros_like(W)
    for k in range(min(W.shape[0], T)):
        dx[k:] += W[k] * g[: T - k]
        dW[k] = (g[: T - k] * xm[k:]).sum(axis=(0, 1))
    return mask_padded(dx, lengths, out=dx), dW


# --- optimizer updates ---------------------------------------------------------------


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    step: int,
):
    """One Adam (AdamW when ``decoupled``) update of one array, as torch.optim does it.

    All arrays share one shape and dtype; ``step`` counts from 1 (this update).

    Returns
    -------
    param, exp_avg, exp_avg_sq : new arrays; the inputs are left as they were.
    """
    if decoupled:
        # AdamW (Loshchilov & Hutter): decay the weights directly, not via the moments.
        param = param * (1.0 - lr * weight_decay)
    elif weight_decay:
        grad = (
            grad + weight_decay * param
        )  # classic L2 penalty folded into the gradient
    exp_avg = beta1 * exp_avg + (1.0 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
    step_size = lr / (1.0 - beta1**step)
    denom = np.sqrt(exp_avg_sq) / math.sqrt(1.0 - beta2**step) + eps
    new_param = param - step_size * exp_avg / denom
    dtype = param.dtype
    return new_param.astype(dtype), exp_avg.astype(dtype), exp_avg_sq.astype(dtype)


def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    buf: np.ndarray,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    first: bool,
):
    """One SGD update of one array, with torch.optim.SGD's momentum equations.

    ``buf`` is the momentum buffer (ignored when ``first``: the first update starts it
    at the gradient, undampened, as PyTorch does).

    Returns
    -------
    param, buf : the updated parameter (a new array) and momentum buffer (``buf`` itself
        when ``momentum`` is 0); the inputs are left as they were.
    """
    if weight_decay:
        grad = grad + weight_decay * param
    if momentum:
        buf = grad.copy() if first else momentum * buf + (1.0 - dampening) * grad
        grad = grad + momentum * buf if nesterov else buf
    dtype = param.dtype
    return (param - lr * grad).astype(dtype), np.asarray(buf, dtype=dtype)
