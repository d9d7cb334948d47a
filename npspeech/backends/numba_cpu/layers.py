"""layers kernels of the numba_cpu backend.

Same names, signatures and results as :mod:`npspeech.backends.numpy_ref.layers`, which
is the spec. Dense layers' products stay in NumPy's BLAS except the weight gradient
``x.T @ dy``, a shape that BLAS runs slowly (:mod:`.weight_product`); the element-wise
and reduction parts run here as fused Numba loops, so each array is read once instead
of once per NumPy temporary. The convolution is in :mod:`.conv`.

The ``_kernel`` functions take flat or fixed-rank C-contiguous arrays; the public
wrappers reshape to and from the caller's shape. Kernels with independent work items
are compiled twice, serial and with ``prange`` threads, and the wrapper picks by the
amount of work: waking the thread pool costs microseconds on an idle machine but
milliseconds on a loaded one, more than small arrays (a streaming chunk, a test) take
to process serially.
"""

from __future__ import annotations

import math
from types import FunctionType

import numba
import numpy as np
from numba import njit, prange

from ..numpy_ref.layers import sgd_update
from .weight_product import transposed_product

__all__ = [
    "adam_update",
    "batch_norm_apply",
    "batch_norm_backward",
    "clip_backward",
    "clip_forward",
    "dense_backward",
    "dense_clip_backward",
    "dense_clip_forward",
    "dense_forward",
    "dropout_apply",
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

#: Work (elements touched) below which the serial build of a kernel runs. High on
#: purpose: on the shared 2-core project machine under load, the threaded build of the
#: padding mask took 15 ms on 200,000 values where the serial one took 0.9 ms.
PARALLEL_MIN_WORK = 1 << 20


class _SerialOrParallel:
    """A kernel compiled serial and parallel; called as ``kernel(work, *args)``."""

    def __init__(self, func):
        self.serial = njit(cache=True)(func)
        # A renamed twin, so that Numba's on-disk cache keeps the builds apart.
        twin = FunctionType(
            func.__code__,
            func.__globals__,
            func.__name__ + "_parallel",
            func.__defaults__,
            func.__closure__,
        )
        twin.__qualname__ = func.__qualname__ + "_parallel"
        self.parallel = njit(cache=True, parallel=True)(twin)

    def __call__(self, work, *args):
        kernel = self.parallel if work >= PARALLEL_MIN_WORK else self.serial
        return kernel(*args)


# --- dense ---------------------------------------------------------------------------
# The passes around a dense layer's products. NumPy's ``y += b`` and ``dy.sum(axis=0)``
# run on one thread: at a training batch's size (4800 x 512 values, 10 MB) they took
# 1.7 and 1.5 ms where a threaded clip over the same array took 1.0 (two threads).


@_SerialOrParallel
def _add_row_kernel(y, row):
    # y (N, F) += row (F,), in place
    for i in prange(y.shape[0]):
        y[i, :] += row


def add_row(y: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``y += row`` in place for a C-contiguous y (N, F) and row (F,); returns y."""
    _add_row_kernel(y.size, y, row.astype(y.dtype, copy=False))
    return y


@_SerialOrParallel
def _column_sums_kernel(x, partial):
    # partial (P, F): part p sums rows p*N//P .. (p+1)*N//P - 1 of x (N, F)
    N = x.shape[0]
    P = partial.shape[0]
    for p in prange(P):
        partial[p, :] = 0.0
        for i in range(p * N // P, (p + 1) * N // P):
            partial[p, :] += x[i, :]


def _column_sum_parts(x: np.ndarray) -> np.ndarray:
    """The (P, F) partial sums a column-sum kernel fills for x (N, F): one row per
    thread, or one for an array too small to split."""
    parts = numba.get_num_threads() if x.size >= PARALLEL_MIN_WORK else 1
    return np.empty((parts, x.shape[1]), dtype=x.dtype)


def _total(partial: np.ndarray) -> np.ndarray:
    """The column sums from their parts (P, F) -> (F,)."""
    return partial[0] if partial.shape[0] == 1 else partial.sum(axis=0)


def column_sums(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=0)`` of a C-contiguous x (N, F), rows split over the threads.

    Each part adds its rows in order, as NumPy does down a column; the parts' sums are
    then added. Returns (F,), x's dtype.
    """
    partial = _column_sum_parts(x)
    _column_sums_kernel(x.size, x, partial)
    return _total(partial)


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """See ``numpy_ref.layers.dense_forward``; the bias added by :func:`add_row`."""
    return add_row(x @ W, b)  # (N, F_out)


def dense_backward(x: np.ndarray, W: np.ndarray, dy: np.ndarray, need_dx: bool = True):
    """See ``numpy_ref.layers.dense_backward``; ``dW`` by :func:`transposed_product`,
    ``db`` by :func:`column_sums`."""
    dx = dy @ W.T if need_dx else None  # (N, F_in)
    dW = transposed_product(x, dy, numba.get_num_threads())  # (F_in, F_out)
    db = column_sums(np.ascontiguousarray(dy))
    return dx, dW, db


# A dense layer followed by a clipping activation (DeepSpeech's clipped ReLU) as one
# operation: the bias add and the clip are one pass over the output, and the clip's
# gradient and the bias gradient's column sums one pass over dy, where the layer and
# the activation apart take two each (each pass over a DeepSpeech layer at H=512,
# 4800 x 512 values, costs ~1.5 ms on one thread). Same arithmetic in the same order
# as the two apart, so the same bits.


@_SerialOrParallel
def _add_row_clip_kernel(y, row, low, high):
    # y (N, F) = min(max(y + row, low), high), in place
    for i in prange(y.shape[0]):
        for j in range(y.shape[1]):
            value = y[i, j] + row[j]
            y[i, j] = low if value < low else (high if value > high else value)


@_SerialOrParallel
def _clip_backward_sums_kernel(dy, y, low, high, d_pre, partial):
    # d_pre (N, F) = dy where low < y < high, else 0; partial (P, F): part p's column
    # sums of d_pre, added as _column_sums_kernel adds them
    N = dy.shape[0]
    P = partial.shape[0]
    for p in prange(P):
        partial[p, :] = 0.0
        for i in range(p * N // P, (p + 1) * N // P):
            for j in range(dy.shape[1]):
                d_pre[i, j] = dy[i, j] if low < y[i, j] < high else 0.0
            partial[p, :] += d_pre[i, :]


def dense_clip_forward(x, W, b, low, high):
    """See ``numpy_ref.layers.dense_clip_forward``."""
    y = x @ W  # (N, F_out)
    _add_row_clip_kernel(
        y.size, y, b.astype(y.dtype, copy=False), float(low), float(high)
    )
    return y


def dense_clip_backward(x, W, y, dy, low, high, need_dx=True):
    """See ``numpy_ref.layers.dense_clip_backward``."""
    dy = np.ascontiguousarray(dy)
    d_pre = np.empty_like(dy)  # (N, F_out): the gradient before the clip
    partial = _column_sum_parts(dy)
    _clip_backward_sums_kernel(
        dy.size, dy, np.ascontiguousarray(y), float(low), float(high), d_pre, partial
    )
    dx = d_pre @ W.T if need_dx else None  # (N, F_in)
    dW = transposed_product(x, d_pre, numba.get_num_threads())  # (F_in, F_out)
    return dx, dW, _total(partial)


# --- padding -------------------------------------------------------------------------


@_SerialOrParallel
def _mask_kernel(x3, lengths, out3):
    # x3, out3: (T, B, R) with R the product of the trailing dimensions
    T, B, R = x3.shape
    for b in prange(B):
        for t in range(T):
            # whole rows at a time: a branch-free copy or fill the compiler vectorises
            if t < lengths[b]:
                out3[t, b, :] = x3[t, b, :]
            else:
                out3[t, b, :] = 0.0


def mask_padded(x, lengths, out=None):
    """Zero the padded frames ``t >= lengths[b]``; see the numpy_ref spec."""
    if out is None:
        out = np.empty_like(x)
    T, B = x.shape[:2]
    R = math.prod(x.shape[2:])  # explicit: reshape cannot infer -1 for an empty array
    _mask_kernel(x.size, x.reshape(T, B, R), lengths, out.reshape(T, B, R))
    return out


# --- element-wise activations --------------------------------------------------------


@_SerialOrParallel
def _clip_forward_kernel(x, low, high, y):
    for i in prange(x.size):
        value = x[i]
        y[i] = low if value < low else (high if value > high else value)


@_SerialOrParallel
def _clip_backward_kernel(dy, y, low, high, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if low < y[i] < high else 0.0


def clip_forward(x, low, high):
    """``min(max(x, low), high)``; see the numpy_ref spec."""
    y = np.empty_like(x)
    _clip_forward_kernel(x.size, x.reshape(-1), float(low), float(high), y.reshape(-1))
    return y


def clip_backward(dy, y, low, high):
    """Gradient of :func:`clip_forward` from its output; see the numpy_ref spec."""
    dx = np.empty_like(dy)
    _clip_backward_kernel(
        dy.size, dy.reshape(-1), y.reshape(-1), float(low), float(high), dx.reshape(-1)
    )
    return dx


@_SerialOrParallel
def _log_softmax_forward_kernel(x, y):
    N, V = x.shape
    for n in prange(N):
        peak = x[n, 0]
        for v in range(1, V):
            peak = max(peak, x[n, v])
        total = 0.0
        for v in range(V):
            total += math.exp(x[n, v] - peak)  # accumulated in float64
        log_total = math.log(total)
        for v in range(V):
            y[n, v] = (x[n, v] - peak) - log_total


@_SerialOrParallel
def _log_softmax_backward_kernel(dy, y, dx):
    N, V = dy.shape
    for n in prange(N):
        total = 0.0
        for v in range(V):
            total += dy[n, v]
        for v in range(V):
            dx[n, v] = dy[n, v] - math.exp(y[n, v]) * total


def log_softmax_forward(x):
    """Log-softmax of each row of x (N, V); see the numpy_ref spec."""
    y = np.empty_like(x)
    _log_softmax_forward_kernel(x.size, x, y)
    return y


def log_softmax_backward(dy, y):
    """Gradient of :func:`log_softmax_forward`; see the numpy_ref spec."""
    dx = np.empty_like(dy)
    _log_softmax_backward_kernel(dy.size, dy, y, dx)
    return dx


@_SerialOrParallel
def _dropout_kernel(x, keep, scale, y):
    for i in prange(x.size):
        y[i] = x[i] * scale if keep[i] else 0.0


def dropout_apply(x, keep, scale):
    """``x * scale`` where ``keep`` else 0; see the numpy_ref spec."""
    y = np.empty_like(x)
    # the scale in x's dtype, so float32 products round as NumPy's do
    _dropout_kernel(
        x.size, x.reshape(-1), keep.reshape(-1), x.dtype.type(scale), y.reshape(-1)
    )
    return y


# --- batch norm ----------------------------------------------------------------------


@njit(cache=True)
def _moments_kernel(x, lengths, mean, var):
    # Partial sums per (channel, position) in float64, visited in memory order: the
    # innermost loop has no loop-carried dependency, so it vectorises, and the final
    # per-channel sums add K partial sums instead of N * K values in a row.
    T, B, C, K = x.shape
    count = 0
    for b in range(B):
        count += lengths[b]
    count *= K
    partial = np.zeros((C, K))
    for t in range(T):
        for b in range(B):
            if t < lengths[b]:
                for c in range(C):
                    for k in range(K):
                        partial[c, k] += x[t, b, c, k]
    centre = np.empty(C)
    for c in range(C):
        centre[c] = partial[c].sum() / count
    partial[:] = 0.0
    for t in range(T):
        for b in range(B):
            if t < lengths[b]:
                for c in range(C):
                    for k in range(K):
                        deviation = x[t, b, c, k] - centre[c]
                        partial[c, k] += deviation * deviation
    for c in range(C):
        mean[c] = centre[c]
        var[c] = partial[c].sum() / count


def masked_moments(x, lengths):
    """Per-channel mean and biased variance of valid frames; see the numpy_ref spec."""
    C = x.shape[2]
    mean = np.empty(C, dtype=x.dtype)
    var = np.empty(C, dtype=x.dtype)
    _moments_kernel(x, lengths, mean, var)
    return mean, var


@_SerialOrParallel
def _affine_kernel(x, lengths, scale, shift, y):
    T, B, C, K = x.shape
    for b in prange(B):
        for t in range(T):
            valid = t < lengths[b]
            for c in range(C):
                for k in range(K):
                    y[t, b, c, k] = (
                        x[t, b, c, k] * scale[c] + shift[c] if valid else 0.0
                    )


def batch_norm_apply(x, lengths, scale, shift):
    """``x * scale + shift`` per channel, 0 on padded frames; see the numpy_ref spec."""
    y = np.empty_like(x)
    _affine_kernel(x.size, x, lengths, scale, shift, y)
    return y


@njit(cache=True)
def _bn_backward_kernel(
    dy, x, lengths, mean, invstd, gamma, training, dx, dgamma, dbeta
):
    # Two passes in memory order: per-channel sums (partial sums per position, as in
    # _moments_kernel), then the element-wise gradient.
    T, B, C, K = x.shape
    count = 0
    for b in range(B):
        count += lengths[b]
    count *= K
    sum_dy = np.zeros((C, K))
    sum_dy_xhat = np.zeros((C, K))
    for t in range(T):
        for b in range(B):
            if t < lengths[b]:
                for c in range(C):
                    for k in range(K):
                        g = dy[t, b, c, k]
                        sum_dy[c, k] += g
                        sum_dy_xhat[c, k] += g * ((x[t, b, c, k] - mean[c]) * invstd[c])
    total_dy = np.empty(C)
    total_dy_xhat = np.empty(C)
    for c in range(C):
        total_dy[c] = sum_dy[c].sum()
        total_dy_xhat[c] = sum_dy_xhat[c].sum()
        dbeta[c] = total_dy[c]
        dgamma[c] = total_dy_xhat[c]
    for t in range(T):
        for b in range(B):
            if t >= lengths[b]:
                dx[t, b] = 0.0
                continue
            for c in range(C):
                factor = gamma[c] * invstd[c]
                if training:
                    # d/dx of gamma (x - mean) / std with batch statistics: dy minus its
                    # projections onto 1 and onto xhat, over the valid values
                    shift = total_dy[c] / count
                    slope = total_dy_xhat[c] / count
                    for k in range(K):
                        xhat = (x[t, b, c, k] - mean[c]) * invstd[c]
                        dx[t, b, c, k] = (
                            dy[t, b, c, k] - shift - xhat * slope
                        ) * factor
                else:
                    for k in range(K):
                        dx[t, b, c, k] = dy[t, b, c, k] * factor


def batch_norm_backward(dy, x, lengths, mean, invstd, gamma, training):
    """Gradients of batch normalisation over valid frames; see the numpy_ref spec."""
    C = x.shape[2]
    dx = np.empty_like(x)
    dgamma = np.empty(C, dtype=x.dtype)
    dbeta = np.empty(C, dtype=x.dtype)
    _bn_backward_kernel(
        dy, x, lengths, mean, invstd, gamma, bool(training), dx, dgamma, dbeta
    )
    return dx, dgamma, dbeta


# --- layer norm ----------------------------------------------------------------------


@_SerialOrParallel
def _layer_norm_forward_kernel(x, gamma, beta, eps, y, xhat, invstd):
    N, F = x.shape
    for n in prange(N):
        total = 0.0
        for f in range(F):
            total += x[n, f]
        mean = total / F
        squares = 0.0
        for f in range(F):
            deviation = x[n, f] - mean
            squares += deviation * deviation
        inv = 1.0 / math.sqrt(squares / F + eps)
        invstd[n] = inv
        for f in range(F):
            normalised = (x[n, f] - mean) * inv
            xhat[n, f] = normalised
            y[n, f] = normalised * gamma[f] + beta[f]


def layer_norm_forward(x, gamma, beta, eps):
    """Row-wise layer normalisation of x (N, F); see the numpy_ref spec."""
    y = np.empty_like(x)
    xhat = np.empty_like(x)
    invstd = np.empty(x.shape[0], dtype=x.dtype)
    _layer_norm_forward_kernel(x.size, x, gamma, beta, float(eps), y, xhat, invstd)
    return y, xhat, invstd


@_SerialOrParallel
def _layer_norm_backward_rows(dy, xhat, invstd, gamma, dx):
    N, F = dy.shape
    for n in prange(N):
        sum_g = 0.0
        sum_g_xhat = 0.0
        for f in range(F):
            g = dy[n, f] * gamma[f]
            sum_g += g
            sum_g_xhat += g * xhat[n, f]
        scale = invstd[n] / F
        for f in range(F):
            g = dy[n, f] * gamma[f]
            dx[n, f] = scale * (F * g - sum_g - xhat[n, f] * sum_g_xhat)


def layer_norm_backward(dy, xhat, invstd, gamma):
    """Gradients of :func:`layer_norm_forward`; see the numpy_ref spec."""
    dx = np.empty_like(dy)
    _layer_norm_backward_rows(dy.size, dy, xhat, invstd, gamma, dx)
    # the parameter gradients are column sums: NumPy's pairwise sums are fast and exact
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# --- lookahead (row) convolution -----------------------------------------------------


@_SerialOrParallel
def _lookahead_forward_kernel(x, lengths, W, y):
    T, B, F = x.shape
    taps = W.shape[0]
    for b in prange(B):
        end = lengths[b]
        for t in range(T):
            for f in range(F):
                y[t, b, f] = 0.0
            if t >= end:
                continue
            for k in range(min(taps, end - t)):
                for f in range(F):
                    y[t, b, f] += W[k, f] * x[t + k, b, f]


@_SerialOrParallel
def _lookahead_backward_kernel(dy, x, lengths, W, dx, dW_per_batch):
    T, B, F = x.shape
    taps = W.shape[0]
    for b in prange(B):
        end = lengths[b]
        for t in range(T):
            for f in range(F):
                dx[t, b, f] = 0.0
        for t in range(end):
            for k in range(min(taps, end - t)):
                for f in range(F):
                    dx[t + k, b, f] += W[k, f] * dy[t, b, f]
                    dW_per_batch[b, k, f] += dy[t, b, f] * x[t + k, b, f]


def lookahead_forward(x, lengths, W):
    """Row convolution over future frames; see the numpy_ref spec."""
    y = np.empty_like(x)
    _lookahead_forward_kernel(x.size * W.shape[0], x, lengths, W, y)
    return y


def lookahead_backward(dy, x, lengths, W):
    """Gradients of :func:`lookahead_forward`; see the numpy_ref spec."""
    dx = np.empty_like(x)
    # one dW slice per batch entry so that the parallel loop has no shared writes
    dW_per_batch = np.zeros((x.shape[1],) + W.shape, dtype=W.dtype)
    _lookahead_backward_kernel(x.size * W.shape[0], dy, x, lengths, W, dx, dW_per_batch)
    return dx, dW_per_batch.sum(axis=0)


# --- optimizer updates ---------------------------------------------------------------


@_SerialOrParallel
def _adam_kernel(
    param,
    grad,
    exp_avg,
    exp_avg_sq,
    decay,
    weight_decay,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    eps,
    decoupled,
    step_size,
    bias_correction2_sqrt,
    new_param,
    new_avg,
    new_avg_sq,
):
    # every scalar comes in the arrays' dtype, so float32 data is updated in float32
    # arithmetic, as the NumPy spec does it, 16 lanes at a time
    for i in prange(param.size):
        p = param[i]
        g = grad[i]
        if decoupled:
            p = p * decay
        elif weight_decay != 0:
            g = g + weight_decay * p
        m = beta1 * exp_avg[i] + one_minus_beta1 * g
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        new_avg[i] = m
        new_avg_sq[i] = v
        new_param[i] = p - step_size * m / (np.sqrt(v) / bias_correction2_sqrt + eps)


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
    """One Adam/AdamW update in one pass over the arrays; see the numpy_ref spec."""
    new_param = np.empty_like(param)
    new_avg = np.empty_like(param)
    new_avg_sq = np.empty_like(param)
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    scalar = param.dtype.type
    _adam_kernel(
        param.size,
        param.reshape(-1),
        grad.reshape(-1),
        exp_avg.reshape(-1),
        exp_avg_sq.reshape(-1),
        scalar(1.0 - lr * float(weight_decay)),
        scalar(weight_decay),
        scalar(beta1),
        scalar(1.0 - beta1),
        scalar(beta2),
        scalar(1.0 - beta2),
        scalar(eps),
        bool(decoupled),
        scalar(lr / (1.0 - beta1 ** int(step))),
        scalar(math.sqrt(1.0 - beta2 ** int(step))),
        new_param.reshape(-1),
        new_avg.reshape(-1),
        new_avg_sq.reshape(-1),
    )
    return new_param, new_avg, new_avg_sq
