"""Parameter-free activations: clipped ReLU, hard-tanh and log-softmax.

Each is a pair ``xxx_forward(x, ...) -> (y, cache)`` and
``xxx_backward(dy, cache) -> dx``; arrays of any shape, float32 or float64, and the
output keeps the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from . import _checks

#: DeepSpeech clips its ReLU at 20 (``relu_clip`` in DeepSpeech 0.9's flags).
RELU_CLIP = 20.0


@dataclass(frozen=True)
class ClipCache:
    """What the backward pass of a clipping activation needs.

    Attributes
    ----------
    y : array, any shape, float
        The forward output; ``low < y < high`` marks where the slope is 1.
    low, high : float
        The clipping bounds.
    """

    y: np.ndarray
    low: float
    high: float


@dataclass(frozen=True)
class LogSoftmaxCache:
    """What :func:`log_softmax_backward` needs.

    Attributes
    ----------
    y : array, shape (N, V), float
        The forward output with the softmax axis moved last and the rest flattened.
    axis : int
        The softmax axis of the caller's array.
    shape : tuple of int
        The caller's shape with ``axis`` moved last.
    lengths : int32 array, shape (B,), or None
        When given, padded frames of the (T, B, ...) output were zeroed.
    """

    y: np.ndarray
    axis: int
    shape: tuple
    lengths: np.ndarray | None


def hardtanh_forward(
    x: np.ndarray, low: float = 0.0, high: float = 20.0, *, backend=None
) -> tuple[np.ndarray, ClipCache]:
    """``min(max(x, low), high)`` element-wise (DeepSpeech2's clipped activation).

    Parameters
    ----------
    x : array, any shape, float32 or float64
    low, high : float
        The bounds, ``low < high``.

    Returns
    -------
    y : array shaped like x, x's dtype
    cache : ClipCache
    """
    if not float(low) < float(high):
        raise ConfigError(f"hardtanh: need low < high, got low={low}, high={high}")
    x = _checks.float_array(x, "hardtanh x")
    y = get_backend(backend).clip_forward(x, float(low), float(high))
    return y, ClipCache(y=y, low=float(low), high=float(high))


def hardtanh_backward(dy: np.ndarray, cache: ClipCache, *, backend=None) -> np.ndarray:
    """Gradient of :func:`hardtanh_forward`: ``dy`` where ``low < x < high``, else 0.

    Parameters
    ----------
    dy : array shaped like the forward output, its dtype
    cache : ClipCache

    Returns
    -------
    dx : array shaped like dy
    """
    dy = _checks.float_array(dy, "hardtanh dy")
    _checks.expect_shape("hardtanh dy", dy, cache.y.shape)
    _checks.same_dtype("hardtanh dy", dy, cache.y, "the forward input")
    return get_backend(backend).clip_backward(dy, cache.y, cache.low, cache.high)


def clipped_relu_forward(
    x: np.ndarray, ceiling: float = RELU_CLIP, *, backend=None
) -> tuple[np.ndarray, ClipCache]:
    """``min(max(x, 0), ceiling)``: DeepSpeech's ReLU clipped at 20.

    Parameters
    ----------
    x : array, any shape, float32 or float64
    ceiling : float
        The clip value, > 0.

    Returns
    -------
    y : array shaped like x, x's dtype
    cache : ClipCache
    """
    if not float(ceiling) > 0.0:
        raise ConfigError(f"clipped_relu: ceiling must be > 0, got {ceiling}")
    return hardtanh_forward(x, 0.0, ceiling, backend=backend)


def clipped_relu_backward(
    dy: np.ndarray, cache: ClipCache, *, backend=None
) -> np.ndarray:
    """Gradient of :func:`clipped_relu_forward` (``dy`` where ``0 < x < ceiling``)."""
    return hardtanh_backward(dy, cache, backend=backend)


def log_softmax_forward(
    x: np.ndarray, axis: int = -1, lengths: np.ndarray | None = None, *, backend=None
) -> tuple[np.ndarray, LogSoftmaxCache]:
    """Log-softmax along ``axis``, computed stably (the maximum is subtracted first).

    Parameters
    ----------
    x : array, any shape, float32 or float64
        Usually logits (T, B, V).
    axis : int
        The class axis.
    lengths : int32 array, shape (B,), optional
        For a time-major (T, B, ...) input whose ``axis`` is not 0 or 1: zero the padded
        output frames (a padded frame of zeros would otherwise give ``-log V``).

    Returns
    -------
    y : array shaped like x, x's dtype
    cache : LogSoftmaxCache
    """
    x = _checks.float_array(x, "log_softmax x")
    if x.ndim == 0:
        raise ConfigError("log_softmax x: needs at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise ConfigError(
            f"log_softmax: axis {axis} is out of range for shape {x.shape}"
        )
    axis = axis % x.ndim
    if x.shape[axis] == 0:
        raise ConfigError(f"log_softmax x: the class axis {axis} is empty")
    if lengths is not None:
        if x.ndim < 3 or axis < 2:
            raise ConfigError("log_softmax: lengths need a (T, B, ..., V) input")
        lengths = _checks.lengths_array(lengths, x.shape[1], x.shape[0])
    xp = _checks.xp_of(x)
    moved = xp.ascontiguousarray(xp.moveaxis(x, axis, -1))
    kernels = get_backend(backend)
    y = kernels.log_softmax_forward(moved.reshape(-1, moved.shape[-1]))
    y = y.reshape(moved.shape)
    if lengths is not None:
        y = kernels.mask_padded(y, lengths, out=y)
    cache = LogSoftmaxCache(
        y=y.reshape(-1, moved.shape[-1]), axis=axis, shape=moved.shape, lengths=lengths
    )
    return xp.moveaxis(y, -1, axis), cache


def log_softmax(x: np.ndarray, axis: int = -1, *, backend=None) -> np.ndarray:
    """Log-probabilities along ``axis`` (:func:`log_softmax_forward` without its cache).

    Returns
    -------
    array shaped like x, x's dtype
    """
    return log_softmax_forward(x, axis, backend=backend)[0]


def log_softmax_backward(
    dy: np.ndarray, cache: LogSoftmaxCache, *, backend=None
) -> np.ndarray:
    """Gradient of :func:`log_softmax_forward`: ``dy - softmax(x) * sum(dy)`` per row.

    Parameters
    ----------
    dy : array shaped like the forward output, its dtype
    cache : LogSoftmaxCache

    Returns
    -------
    dx : array shaped like dy
    """
    dy = _checks.float_array(dy, "log_softmax dy")
    xp = _checks.xp_of(dy)
    moved = xp.ascontiguousarray(xp.moveaxis(dy, cache.axis, -1))
    _checks.expect_shape("log_softmax dy (class axis last)", moved, cache.shape)
    _checks.same_dtype("log_softmax dy", dy, cache.y, "the forward input")
    kernels = get_backend(backend)
    if cache.lengths is not None:
        moved = kernels.mask_padded(moved, cache.lengths)
    dx = kernels.log_softmax_backward(moved.reshape(cache.y.shape), cache.y)
    return xp.moveaxis(dx.reshape(cache.shape), -1, cache.axis)
