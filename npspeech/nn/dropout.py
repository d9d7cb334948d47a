"""Inverted dropout: zero each value with probability ``rate``, scale the rest by
``1 / (1 - rate)`` so that the expected activation is unchanged and inference needs no
rescaling. Identity when not training or when ``rate`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from . import _checks


@dataclass(frozen=True)
class DropoutCache:
    """What :func:`dropout_backward` needs.

    Attributes
    ----------
    keep : bool array shaped like the input, on its device, or None
        Which values were kept; None when the forward pass was the identity.
    scale : float
        ``1 / (1 - rate)``.
    shape : tuple of int
        The input's shape.
    """

    keep: np.ndarray | None
    scale: float
    shape: tuple


def dropout_forward(
    x: np.ndarray,
    rate: float,
    rng: np.random.Generator | None,
    training: bool = True,
    *,
    backend=None,
) -> tuple[np.ndarray, DropoutCache]:
    """Inverted dropout.

    Parameters
    ----------
    x : array, any shape, float32 or float64
    rate : float
        Probability of zeroing a value, in ``[0, 1)``.
    rng : numpy.random.Generator
        Draws the mask, so a seeded generator makes the mask reproducible; unused (and
        may be None) when not training or when ``rate`` is 0.
    training : bool
        False at inference: the identity.

    Returns
    -------
    y : array shaped like x, x's dtype (``x`` itself when the identity)
    cache : DropoutCache
    """
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout: rate must lie in [0, 1), got {rate}")
    x = _checks.float_array(x, "dropout x")
    if not training or rate == 0.0:
        return x, DropoutCache(keep=None, scale=1.0, shape=x.shape)
    if rng is None:
        raise ConfigError("dropout: training with rate > 0 needs an rng")
    keep = rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(
        rate
    )  # P(keep) = 1 - rate
    # Drawn on the host, so a seed gives the same masks on every backend; moved to x's
    # device once here, so that the backward pass reuses it instead of uploading again.
    keep = _checks.xp_of(x).asarray(keep)
    scale = 1.0 / (1.0 - rate)
    y = get_backend(backend).dropout_apply(x, keep, scale)
    return y, DropoutCache(keep=keep, scale=scale, shape=x.shape)


def dropout_backward(
    dy: np.ndarray, cache: DropoutCache, *, backend=None
) -> np.ndarray:
    """Gradient of :func:`dropout_forward`: the same mask and scale applied to ``dy``.

    Parameters
    ----------
    dy : array shaped like the forward output, float
    cache : DropoutCache

    Returns
    -------
    dx : array shaped like dy (``dy`` itself when the forward pass was the identity)
    """
    dy = _checks.float_array(dy, "dropout dy")
    _checks.expect_shape("dropout dy", dy, cache.shape)
    if cache.keep is None:
        return dy
    return get_backend(backend).dropout_apply(dy, cache.keep, cache.scale)
