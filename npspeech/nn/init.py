"""Parameter initializers matching DeepSpeech (TensorFlow) and PyTorch defaults.

- :func:`glorot_uniform`: TensorFlow's ``glorot_uniform`` (``VarianceScaling(1.0,
  "fan_avg", "uniform")``), which DeepSpeech 0.9 uses for its dense weights:
  ``U(-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``.
- :func:`pytorch_uniform`: ``U(-1/sqrt(fan), 1/sqrt(fan))``. With ``fan = fan_in``
  this is what PyTorch's ``Linear`` and ``Conv`` give weights
  (``kaiming_uniform_(a=sqrt(5))`` reduces to it) and biases; with
  ``fan = hidden_size`` it is PyTorch's RNN/LSTM/GRU initialisation of every weight
  and bias.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight in npspeech's layouts.

    - ``(F_in, F_out)``: a dense weight (``y = x @ W``);
    - ``(C_out, C_in, k1, k2, ...)``: a PyTorch-layout conv weight, whose fans count
      every kernel tap (``C_in * k1 * k2`` in, ``C_out * k1 * k2`` out);
    - ``(F,)``: fan_in = fan_out = F.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 0:
        raise ConfigError("initializer: a scalar has no fans; give a shape")
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    taps = math.prod(shape[2:])
    return shape[1] * taps, shape[0] * taps


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], dtype=np.float32
) -> np.ndarray:
    """Glorot/Xavier uniform weights, as TensorFlow's ``glorot_uniform``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        A layout :func:`fans` knows.
    dtype : float32 or float64

    Returns
    -------
    array of ``shape`` and ``dtype`` from ``U(-limit, limit)``,
    ``limit = sqrt(6 / (fan_in + fan_out))``.
    """
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def pytorch_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], fan: int, dtype=np.float32
) -> np.ndarray:
    """``U(-1/sqrt(fan), 1/sqrt(fan))``, PyTorch's default for Linear, Conv and RNNs.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    fan : int
        ``fan_in`` for Linear/Conv weights and biases, ``hidden_size`` for recurrent
        layers.
    dtype : float32 or float64

    Returns
    -------
    array of ``shape`` and ``dtype``.
    """
    if int(fan) <= 0:
        raise ConfigError(f"pytorch_uniform: fan must be positive, got {fan}")
    bound = 1.0 / math.sqrt(int(fan))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def zeros(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An all-zero array of ``shape`` and ``dtype`` (biases, batch-norm shifts)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An all-one array of ``shape`` and ``dtype`` (batch/layer-norm scales)."""
    return np.ones(shape, dtype=dtype)
