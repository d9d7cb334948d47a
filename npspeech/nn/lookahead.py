"""Lookahead (row) convolution over future frames, for streaming DeepSpeech2.

DeepSpeech2 (Amodei et al., 2016, section 3.5) puts this layer after a unidirectional
RNN so that each output sees ``context`` frames of the future without a bidirectional
layer: per feature f,

    y[t, b, f] = sum over k = 0..context of W[k, f] * x[t + k, b, f]

where frames at or past a sequence's end count as zero. It equals a depthwise
``conv1d`` (``groups = F``, kernel ``context + 1``) over the sequence padded with
``context`` zeros at its end.

The layer is array-module agnostic: CuPy inputs (with the cupy backend) keep the
output and the cache on their device.

Shape legend: T frames, B batch, F features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from . import _checks
from .init import pytorch_uniform


@dataclass(frozen=True)
class LookaheadCache:
    """What :func:`backward` needs from :func:`forward`.

    Attributes
    ----------
    x : array, shape (T, B, F), float
        The input (the caller's array, never written).
    lengths : int32 array, shape (B,)
    """

    x: np.ndarray
    lengths: np.ndarray


def init(
    rng: np.random.Generator, n_features: int, context: int, dtype=np.float32
) -> dict[str, np.ndarray]:
    """Parameters of a lookahead convolution.

    The weights come from ``U(-1/sqrt(context + 1), 1/sqrt(context + 1))``, PyTorch's
    default for the equivalent depthwise ``Conv1d`` (fan_in = kernel size).

    Parameters
    ----------
    rng : numpy.random.Generator
    n_features : int
    context : int
        Future frames seen, >= 0.
    dtype : float32 or float64

    Returns
    -------
    dict with ``W`` (context + 1, n_features) of ``dtype``.
    """
    if int(context) < 0 or int(n_features) < 1:
        raise ConfigError(
            f"lookahead.init: need context >= 0 and n_features >= 1, got {context} and "
            f"{n_features}"
        )
    taps = int(context) + 1
    return {"W": pytorch_uniform(rng, (taps, int(n_features)), taps, dtype)}


def _check_weight(params, F: int, dtype) -> np.ndarray:
    W = _checks.float_array(params["W"], "lookahead W", ndim=2)
    if W.shape[1] != F:
        raise ConfigError(f"lookahead: x has {F} features but W has {W.shape[1]}")
    if W.dtype != dtype:
        raise ConfigError(f"lookahead W is {W.dtype} but x is {dtype}")
    return W


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray,
    *,
    backend=None,
) -> tuple[np.ndarray, LookaheadCache]:
    """Row convolution over the current and ``context`` future frames.

    Parameters
    ----------
    params : dict
        ``W`` (context + 1, F).
    x : array, shape (T, B, F), W's dtype
    lengths : int array, shape (B,)

    Returns
    -------
    y : array, shape (T, B, F), x's dtype; zero on padded frames
    cache : LookaheadCache
    """
    x = _checks.float_array(x, "lookahead x", ndim=3)
    W = _check_weight(params, x.shape[2], x.dtype)
    lengths = _checks.lengths_array(lengths, x.shape[1], x.shape[0])
    y = get_backend(backend).lookahead_forward(x, lengths, W)
    return y, LookaheadCache(x=x, lengths=lengths)


def backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: LookaheadCache,
    *,
    backend=None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of :func:`forward`.

    Parameters
    ----------
    params : dict
        The parameters given to :func:`forward`.
    dy : array, shape (T, B, F), the forward output's dtype
        Values on padded frames are ignored.
    cache : LookaheadCache

    Returns
    -------
    dx : array, shape (T, B, F); zero on padded frames
    grads : dict with ``W`` (context + 1, F)
    """
    dy = _checks.float_array(dy, "lookahead dy", ndim=3)
    _checks.expect_shape("lookahead dy", dy, cache.x.shape)
    W = _check_weight(params, dy.shape[2], dy.dtype)
    dx, dW = get_backend(backend).lookahead_backward(dy, cache.x, cache.lengths, W)
    return dx, {"W": dW}
