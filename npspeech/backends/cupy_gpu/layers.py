"""layers kernels of the cupy_gpu backend: the non-recurrent layers on the device.

The same names, signatures and results as :mod:`npspeech.backends.numpy_ref.layers`
(read that module for what each kernel computes); see
:mod:`npspeech.backends.cupy_gpu._runtime` for where results live. GEMMs go through
CuPy's matmul (cuBLAS); the clip, the bias-and-clip of a dense layer, dropout and the
Adam update are fused element-wise CUDA kernels (:mod:`._compile`); the rest are CuPy
array expressions, which CuPy runs as element-wise and reduction kernels.

Shape legend: T frames, B batch, F features, C channels, K positions per channel,
N rows, V classes.
"""

from __future__ import annotations

import math

import numpy as np

from ._compile import elementwise
from ._runtime import cupy, follow_input

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

#: bytes of one im2col patch matrix on the device; larger than the CPU's chunk since
#: the GEMM wants tall matrices and the device has the memory
GPU_CONV_CHUNK_BYTES = 256 * 2**20


# --- fused element-wise kernels ------------------------------------------------------
# ``x < low ? low : ...`` rather than fmin/fmax so that NaN passes through as np.clip
# lets it (fmax would drop it).


def _clip_twin(x, low, high, y):
    y[...] = np.clip(x, low, high)


def _bias_clip_twin(z, b, low, high, n_out, y):
    y[...] = np.clip(z.reshape(-1, int(n_out)) + b, low, high).reshape(y.shape)


def _clip_grad_twin(dy, y, low, high, dx):
    dx[...] = np.where((y > low) & (y < high), dy, 0)


def _dropout_twin(x, keep, scale, y):
    y[...] = np.where(keep, x * scale, 0)


def _adam_twin(g, beta1, rest1, beta2, rest2, eps, wd, decay, decoupled, step_size,
               bias2_sqrt, p, m, v):  # fmt: skip
    grad = g if decoupled else g + wd * p
    p_new = p * decay if decoupled else p
    m[...] = beta1 * m + rest1 * grad
    v[...] = beta2 * v + rest2 * grad * grad
    p[...] = p_new - step_size * m / (np.sqrt(v) / bias2_sqrt + eps)


_clip = elementwise(
    "T x, T low, T high",
    "T y",
    "y = x < low ? low : (x > high ? high : x)",
    "npspeech_clip",
    _clip_twin,
)
_bias_clip = elementwise(
    "T z, raw T b, T low, T high, int32 n_out",
    "T y",
    "T a = z + b[i % n_out]; y = a < low ? low : (a > high ? high : a)",
    "npspeech_bias_clip",
    _bias_clip_twin,
)
_clip_grad = elementwise(
    "T dy, T y, T low, T high",
    "T dx",
    "dx = (y > low && y < high) ? dy : (T)0",
    "npspeech_clip_grad",
    _clip_grad_twin,
)
_dropout = elementwise(
    "T x, bool keep, T scale",
    "T y",
    "y = keep ? x * scale : (T)0",
    "npspeech_dropout",
    _dropout_twin,
)
# In place on (p, m, v): one pass over the four arrays instead of PyTorch's foreach
# chain. Decoupled (AdamW) decays the weight; coupled adds the L2 term to the gradient.
# 1 - beta and 1 - lr * weight_decay arrive computed in double on the host: 1 - beta2
# taken in float32 from a rounded 0.999 would be off by 5e-5 relative.
_adam = elementwise(
    "T g, T beta1, T rest1, T beta2, T rest2, T eps, T wd, T decay, bool decoupled, "
    "T step_size, T bias2_sqrt",
    "T p, T m, T v",
    """
    T grad = decoupled ? g : g + wd * p;
    T p_new = decoupled ? p * decay : p;
    m = beta1 * m + rest1 * grad;
    v = beta2 * v + rest2 * grad * grad;
    p = p_new - step_size * m / (sqrt(v) / bias2_sqrt + eps);
    """,
    "npspeech_adam",
    _adam_twin,
)


def _valid(lengths, T: int):
    """(T, B) bool on the device: frame t lies inside sequence b."""
    xp = cupy()
    return xp.arange(T, dtype=np.int32)[:, None] < lengths[None, :]


def _mask(lengths, shape, ndim_after: int):
    """The valid-frame mask shaped ``(T, B, 1, ...)`` for broadcasting."""
    valid = _valid(lengths, shape[0])
    return valid.reshape(valid.shape + (1,) * ndim_after)


@follow_input(out="out")
def mask_padded(x, lengths, out=None):
    """Zero the padded frames; see the NumPy reference."""
    xp = cupy()
    keep = _mask(lengths, x.shape, x.ndim - 2)
    if out is None:
        return xp.where(keep, x, x.dtype.type(0))
    out[...] = xp.where(keep, x, x.dtype.type(0))  # out may be x itself
    return out


# --- dense ---------------------------------------------------------------------------


@follow_input()
def dense_forward(x, W, b):
    """``y = x @ W + b`` (cuBLAS GEMM, then the bias in place)."""
    y = x @ W  # (N, F_out)
    y += b
    return y


@follow_input()
def dense_backward(x, W, dy, need_dx=True):
    """Gradients of :func:`dense_forward`: two GEMMs and a column sum."""
    dx = dy @ W.T if need_dx else None  # (N, F_in)
    dW = x.T @ dy  # (F_in, F_out)
    db = dy.sum(axis=0)
    return dx, dW, db


@follow_input()
def dense_clip_forward(x, W, b, low, high):
    """The GEMM, then one fused pass that adds the bias and clips, in place."""
    y = x @ W  # (N, F_out)
    t = y.dtype.type
    _bias_clip(y, b, t(low), t(high), np.int32(W.shape[1]), y)
    return y


@follow_input()
def dense_clip_backward(x, W, y, dy, low, high, need_dx=True):
    """The clip's gradient (one fused pass), then :func:`dense_backward`."""
    g = cupy().empty_like(dy)
    t = dy.dtype.type
    _clip_grad(dy, y, t(low), t(high), g)
    return dense_backward.device_kernel(x, W, g, need_dx)


# --- element-wise activations --------------------------------------------------------


@follow_input()
def clip_forward(x, low, high):
    """``min(max(x, low), high)`` in one fused pass."""
    y = cupy().empty_like(x)
    _clip(x, x.dtype.type(low), x.dtype.type(high), y)
    return y


@follow_input()
def clip_backward(dy, y, low, high):
    """``dy`` where ``low < y < high``, else 0, in one fused pass."""
    dx = cupy().empty_like(dy)
    _clip_grad(dy, y, dy.dtype.type(low), dy.dtype.type(high), dx)
    return dx


@follow_input()
def log_softmax_forward(x):
    """Log-softmax of each row, the row maximum subtracted first."""
    xp = cupy()
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


@follow_input()
def log_softmax_backward(dy, y):
    """``dx = dy - softmax * sum(dy)`` per row."""
    return dy - cupy().exp(y) * dy.sum(axis=1, keepdims=True)


@follow_input()
def dropout_apply(x, keep, scale):
    """``x * scale`` where ``keep`` else 0, in one fused pass."""
    y = cupy().empty_like(x)
    _dropout(x, keep, x.dtype.type(scale), y)
    return y


# --- 2D convolution as im2col + GEMM --------------------------------------------------


@follow_input()
def im2col(xp_, kt, kf, st, sf, t_start, t_stop):
    """Unfold the patches of output frames ``t_start <= t < t_stop`` into rows
    ``((t - t_start) * B + b) * F' + f`` of ``C * kt * kf`` values (a strided view of
    the padded input, copied once by the reshape)."""
    xp = cupy()
    Tp, B, C, Fp = xp_.shape
    F_out = (Fp - kf) // sf + 1
    n_t = t_stop - t_start
    s0, s1, s2, s3 = xp_.strides
    # (n_t, B, F', C, kt, kf) view: patch (t, b, f) starts at frame t*st, bin f*sf
    view = xp.lib.stride_tricks.as_strided(
        xp_[t_start * st :],
        shape=(n_t, B, F_out, C, kt, kf),
        strides=(s0 * st, s1, s3 * sf, s2, s0, s3),
    )
    return view.reshape(n_t * B * F_out, C * kt * kf)  # copies into rows


@follow_input(out="dxp")
def col2im_add(dcols, dxp, kt, kf, st, sf, t_start):
    """``dxp += col2im(dcols)``: one strided add per kernel offset (the targets of one
    offset are distinct, so each add is exact)."""
    _, B, C, Fp = dxp.shape
    F_out = (Fp - kf) // sf + 1
    n_t = dcols.shape[0] // (B * F_out)
    patches = dcols.reshape(n_t, B, F_out, C, kt, kf)
    for i in range(kt):
        t0 = t_start * st + i
        rows = slice(t0, t0 + st * (n_t - 1) + 1, st)
        for j in range(kf):
            cols = slice(j, j + sf * (F_out - 1) + 1, sf)
            dxp[rows, :, :, cols] += patches[:, :, :, :, i, j].transpose(0, 1, 3, 2)


def _chunk(B, F_out, patch, itemsize):
    return max(1, GPU_CONV_CHUNK_BYTES // max(1, B * F_out * patch * itemsize))


@follow_input()
def conv2d_forward(xp_, W, b, st, sf):
    """2D convolution of a padded (Tp, B, C_in, Fp) input as im2col + one GEMM per
    chunk of output frames; y (T', B, C_out, F')."""
    xp = cupy()
    Tp, B, _, Fp = xp_.shape
    C_out, _, kt, kf = W.shape
    T_out = (Tp - kt) // st + 1
    F_out = (Fp - kf) // sf + 1
    W_rows = W.reshape(C_out, -1)  # (C_out, C_in*kt*kf)
    y = xp.empty((T_out, B, F_out, C_out), dtype=xp_.dtype)
    step = _chunk(B, F_out, W_rows.shape[1], xp_.dtype.itemsize)
    for t0 in range(0, T_out, step):
        t1 = min(T_out, t0 + step)
        cols = im2col.device_kernel(xp_, kt, kf, st, sf, t0, t1)
        y[t0:t1] = (cols @ W_rows.T).reshape(t1 - t0, B, F_out, C_out)
    y += b
    return xp.ascontiguousarray(y.transpose(0, 1, 3, 2))  # (T', B, C_out, F')


@follow_input()
def conv2d_backward(dy, xp_, W, st, sf, need_dx=True):
    """Gradients of :func:`conv2d_forward`: GEMMs against the unfolded input, col2im."""
    xp = cupy()
    C_out, _, kt, kf = W.shape
    T_out, B, _, F_out = dy.shape
    W_rows = W.reshape(C_out, -1)  # (C_out, P)
    dy_rows = xp.ascontiguousarray(dy.transpose(0, 1, 3, 2))  # (T', B, F', C_out)
    db = dy.sum(axis=(0, 1, 3))
    dW_rows = xp.zeros_like(W_rows)
    dxp = xp.zeros_like(xp_) if need_dx else None
    step = _chunk(B, F_out, W_rows.shape[1], xp_.dtype.itemsize)
    for t0 in range(0, T_out, step):
        t1 = min(T_out, t0 + step)
        cols = im2col.device_kernel(xp_, kt, kf, st, sf, t0, t1)  # (n, P)
        g = dy_rows[t0:t1].reshape(-1, C_out)  # (n, C_out)
        dW_rows += g.T @ cols
        if need_dx:
            col2im_add.device_kernel(g @ W_rows, dxp, kt, kf, st, sf, t0)
    return dxp, dW_rows.reshape(W.shape), db


# --- batch norm ----------------------------------------------------------------------


@follow_input()
def masked_moments(x, lengths):
    """Per-channel mean and biased variance over the valid frames, two passes; the
    valid count stays on the device (no synchronisation)."""
    xp = cupy()
    valid = _mask(lengths, x.shape, 2)  # (T, B, 1, 1)
    zero = x.dtype.type(0)
    count = lengths.sum().astype(x.dtype) * x.shape[3]
    mean = xp.where(valid, x, zero).sum(axis=(0, 1, 3)) / count
    centred = xp.where(valid, x - mean[:, None], zero)
    var = (centred * centred).sum(axis=(0, 1, 3)) / count
    return mean.astype(x.dtype), var.astype(x.dtype)


@follow_input()
def batch_norm_apply(x, lengths, scale, shift):
    """``x * scale + shift`` per channel on valid frames, 0 on padded frames."""
    y = x * scale[:, None] + shift[:, None]
    return mask_padded.device_kernel(y, lengths, out=y)


@follow_input()
def batch_norm_backward(dy, x, lengths, mean, invstd, gamma, training):
    """Gradients of batch normalisation over the valid frames."""
    xp = cupy()
    valid = _mask(lengths, x.shape, 2)
    g = xp.where(valid, dy, dy.dtype.type(0))
    xhat = (x - mean[:, None]) * invstd[:, None]
    dbeta = g.sum(axis=(0, 1, 3))
    dgamma = (g * xhat).sum(axis=(0, 1, 3))
    if training:
        count = lengths.sum().astype(x.dtype) * x.shape[3]
        dxhat = g - (dbeta[:, None] + xhat * dgamma[:, None]) / count
    else:
        dxhat = g
    dx = xp.where(valid, dxhat * (gamma * invstd)[:, None], 0).astype(x.dtype)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# --- layer norm ----------------------------------------------------------------------


@follow_input()
def layer_norm_forward(x, gamma, beta, eps):
    """Normalise each row over its features; y, xhat (N, F), invstd (N,)."""
    xp = cupy()
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=1, keepdims=True)
    invstd = 1.0 / xp.sqrt(var + x.dtype.type(eps))
    xhat = centred * invstd
    return xhat * gamma + beta, xhat, invstd[:, 0]


@follow_input()
def layer_norm_backward(dy, xhat, invstd, gamma):
    """Gradients of :func:`layer_norm_forward`."""
    F = xhat.shape[1]
    g = dy * gamma
    dx = (invstd / F)[:, None] * (
        F * g
        - g.sum(axis=1, keepdims=True)
        - xhat * (g * xhat).sum(axis=1, keepdims=True)
    )
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# --- lookahead (row) convolution -----------------------------------------------------


@follow_input()
def lookahead_forward(x, lengths, W):
    """Row convolution over the current and future frames; padded frames 0."""
    xp = cupy()
    xm = mask_padded.device_kernel(x, lengths)
    T = x.shape[0]
    y = xp.zeros_like(x)
    for k in range(min(W.shape[0], T)):
        y[: T - k] += W[k] * xm[k:]
    return mask_padded.device_kernel(y, lengths, out=y)


@follow_input()
def lookahead_backward(dy, x, lengths, W):
    """Gradients of :func:`lookahead_forward`."""
    xp = cupy()
    xm = mask_padded.device_kernel(x, lengths)
    g = mask_padded.device_kernel(dy, lengths)
    T = x.shape[0]
    dx = xp.zeros_like(x)
    dW = xp.zeros_like(W)
    for k in range(min(W.shape[0], T)):
        dx[k:] += W[k] * g[: T - k]
        dW[k] = (g[: T - k] * xm[k:]).sum(axis=(0, 1))
    return mask_padded.device_kernel(dx, lengths, out=dx), dW


# --- optimizer updates ---------------------------------------------------------------


def adam_inplace(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled,
    step,
):
    """One Adam/AdamW update of device arrays in place, in one fused pass.

    param, exp_avg, exp_avg_sq are overwritten; ``step`` counts from 1. The bias
    corrections are computed on the host in double precision, as torch.optim does.
    """
    t = param.dtype.type
    step_size = lr / (1.0 - beta1**step)
    bias2_sqrt = math.sqrt(1.0 - beta2**step)
    _adam(
        grad, t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps),
        t(weight_decay), t(1.0 - lr * weight_decay), bool(decoupled), t(step_size),
        t(bias2_sqrt), param, exp_avg, exp_avg_sq,
    )  # fmt: skip


@follow_input()
def adam_update(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled,
    step,
):
    """One Adam (AdamW when ``decoupled``) update; new arrays, the inputs untouched."""
    p, m, v = param.copy(), exp_avg.copy(), exp_avg_sq.copy()
    adam_inplace(p, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)
    return p, m, v


@follow_input()
def sgd_update(
    param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first
):
    """One SGD update with torch.optim.SGD's momentum equations."""
    if weight_decay:
        grad = grad + weight_decay * param
    if momentum:
        buf = grad.copy() if first else momentum * buf + (1.0 - dampening) * grad
        grad = grad + momentum * buf if nesterov else buf
    dtype = param.dtype
    return (param - lr * grad).astype(dtype), cupy().asarray(buf, dtype=dtype)
