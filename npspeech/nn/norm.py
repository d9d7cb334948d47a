"""Batch normalisation over valid frames, and layer normalisation.

- :func:`batch_norm_forward`: sequence-wise batch norm of ``(T, B, F)`` RNN inputs
  (DeepSpeech2, section 3.2): per-feature statistics over the valid frames of every
  sequence, so padding changes nothing.
- :func:`batch_norm_conv_forward`: per-channel batch norm of ``(T, B, C, F)`` conv
  outputs, statistics over the valid frames and all frequencies (PyTorch's
  ``BatchNorm2d`` on ``(B, C, T, F)`` when nothing is padded).
- :func:`layer_norm_forward`: per-frame normalisation over the last axis.

Running statistics follow PyTorch: ``running = (1 - momentum) * running + momentum *
batch``, with the *unbiased* batch variance in ``running_var`` while the batch itself is
normalised with the biased one. Evaluation mode normalises with the running statistics.
The state is never updated in place: the new state is returned.

Every function is array-module agnostic: CuPy inputs (with the cupy backend) keep the
outputs, the cache and the new state on their device.

Shape legend: T frames, B batch, F features, C channels, K positions per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..constants import BATCH_NORM_EPS, BATCH_NORM_MOMENTUM
from ..errors import ConfigError
from . import _checks


@dataclass(frozen=True)
class BatchNormCache:
    """What the batch-norm backward passes need.

    Attributes
    ----------
    x : array, shape (T, B, C, K), float
        The input as four dimensions (K = 1 for sequence-wise batch norm).
    lengths : int32 array, shape (B,)
    mean, invstd : arrays, shape (C,)
        The statistics used to normalise: the batch's in training, the running ones in
        evaluation; ``invstd = 1 / sqrt(var + eps)``.
    training : bool
        Whether ``mean`` and ``invstd`` came from ``x`` (and so carry gradient).
    shape : tuple of int
        The caller's input shape, ``(T, B, F)`` or ``(T, B, C, F)``.
    """

    x: np.ndarray
    lengths: np.ndarray
    mean: np.ndarray
    invstd: np.ndarray
    training: bool
    shape: tuple


@dataclass(frozen=True)
class LayerNormCache:
    """What :func:`layer_norm_backward` needs.

    Attributes
    ----------
    xhat : array, shape (N, F), float
        The normalised input rows (N = the product of the leading dimensions).
    invstd : array, shape (N,)
        ``1 / sqrt(var + eps)`` of each row.
    shape : tuple of int
        The caller's input shape.
    lengths : int32 array, shape (B,), or None
        When given, the padded frames of the (T, B, F) output were zeroed.
    """

    xhat: np.ndarray
    invstd: np.ndarray
    shape: tuple
    lengths: np.ndarray | None


# --- batch norm ----------------------------------------------------------------------


def batch_norm_init(
    n_features: int, dtype=np.float32
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Parameters and running state of a batch norm over ``n_features`` channels.

    Returns
    -------
    params : dict
        ``gamma`` (ones) and ``beta`` (zeros), shape (n_features,).
    state : dict
        ``running_mean`` (zeros) and ``running_var`` (ones), shape (n_features,).
    """
    if int(n_features) < 1:
        raise ConfigError(f"batch_norm_init: n_features must be >= 1, got {n_features}")
    n = int(n_features)
    params = {"gamma": np.ones(n, dtype=dtype), "beta": np.zeros(n, dtype=dtype)}
    state = {
        "running_mean": np.zeros(n, dtype=dtype),
        "running_var": np.ones(n, dtype=dtype),
    }
    return params, state


def _check_channel_arrays(params, state, channels: int, dtype, where: str):
    arrays = {}
    for source, keys in (
        (params, ("gamma", "beta")),
        (state, ("running_mean", "running_var")),
    ):
        for key in keys:
            if key not in source:
                raise ConfigError(f"{where}: missing {key!r}")
            array = _checks.float_array(source[key], f"{where} {key}", ndim=1)
            _checks.expect_shape(f"{where} {key}", array, (channels,))
            if array.dtype != dtype:
                raise ConfigError(f"{where} {key} is {array.dtype} but x is {dtype}")
            arrays[key] = array
    return arrays


def training_count(lengths: np.ndarray, positions: int, where: str) -> int:
    """The values per channel a training batch norm averages over:
    ``sum(lengths) * positions``, checked to be at least 2 (the unbiased variance
    divides by ``count - 1``).

    Parameters
    ----------
    lengths : int array, shape (B,), on the host
    positions : int
        K, the values per frame and channel (1 for sequence-wise batch norm, the
        frequencies for the conv variant).
    where : str
        The layer, for the message.

    Raises
    ------
    ConfigError
        When the count is below 2. A device-resident step calls this with the host
        copy of its lengths, since the layer skips the check for device lengths.
    """
    count = int(np.asarray(lengths).sum()) * int(positions)
    if count < 2:
        raise ConfigError(
            f"{where}: training needs more than one valid value per channel, got "
            f"{count} (lengths {np.asarray(lengths).tolist()})"
        )
    return count


def _batch_norm_forward(
    params, state, x4, lengths, training, momentum, eps, kernels, where, shape
):
    """The shared body of both batch norms on a (T, B, C, K) view."""
    C = x4.shape[2]
    arrays = _check_channel_arrays(params, state, C, x4.dtype, where)
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ConfigError(f"{where}: momentum must lie in [0, 1], got {momentum}")
    if not float(eps) > 0.0:
        raise ConfigError(f"{where}: eps must be > 0, got {eps}")
    dtype = x4.dtype.type
    xp = _checks.xp_of(x4)
    if training:
        if _checks.on_device(lengths):
            # The count stays on the device (reading it back would stall every
            # layer); the caller checks it on the host (training_count).
            count = lengths.astype(np.int64).sum() * x4.shape[3]
            bessel = (count / (count - 1)).astype(x4.dtype)
        else:
            count = training_count(lengths, x4.shape[3], where)
            bessel = dtype(count / (count - 1))
        mean, var = kernels.masked_moments(x4, lengths)
        unbiased = var * bessel  # Bessel's correction, as PyTorch
        new_state = {
            "running_mean": (
                dtype(1 - momentum) * arrays["running_mean"] + dtype(momentum) * mean
            ),
            "running_var": (
                dtype(1 - momentum) * arrays["running_var"] + dtype(momentum) * unbiased
            ),
        }
    else:
        mean, var = arrays["running_mean"], arrays["running_var"]
        new_state = {"running_mean": mean.copy(), "running_var": var.copy()}
    invstd = (dtype(1.0) / xp.sqrt(var + dtype(eps))).astype(x4.dtype)
    scale = arrays["gamma"] * invstd
    shift = arrays["beta"] - mean * scale
    y4 = kernels.batch_norm_apply(x4, lengths, scale, shift)
    cache = BatchNormCache(
        x=x4,
        lengths=lengths,
        mean=mean,
        invstd=invstd,
        training=bool(training),
        shape=shape,
    )
    return y4.reshape(shape), cache, new_state


def batch_norm_forward(
    params: dict[str, np.ndarray],
    state: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray,
    training: bool = True,
    momentum: float = BATCH_NORM_MOMENTUM,
    eps: float = BATCH_NORM_EPS,
    *,
    backend=None,
) -> tuple[np.ndarray, BatchNormCache, dict[str, np.ndarray]]:
    """Sequence-wise batch norm of a padded batch of frames.

    Parameters
    ----------
    params : dict
        ``gamma``, ``beta``, shape (F,).
    state : dict
        ``running_mean``, ``running_var``, shape (F,).
    x : array, shape (T, B, F), float32 or float64 (the dtype of params and state)
        NumPy, or CuPy with params, state and lengths on the same device.
    lengths : int array, shape (B,)
        Host lengths are checked to give at least two values per channel in
        training; device lengths are not read back (the caller checks them with
        :func:`training_count`).
    training : bool
        True: normalise with this batch's statistics over its valid frames and update
        the running statistics. False: normalise with the running statistics.
    momentum : float
        Weight of this batch in the running statistics.
    eps : float
        Added to the variance.

    Returns
    -------
    y : array, shape (T, B, F), x's dtype; zero on padded frames
    cache : BatchNormCache
    new_state : dict
        The updated running statistics (copies of the old ones in evaluation).
    """
    kernels = get_backend(backend)
    x = _checks.float_array(x, "batch_norm x", ndim=3)
    T, B, F = x.shape
    lengths = _checks.lengths_array(lengths, B, T)
    return _batch_norm_forward(
        params,
        state,
        x.reshape(T, B, F, 1),
        lengths,
        training,
        momentum,
        eps,
        kernels,
        "batch_norm",
        x.shape,
    )


def batch_norm_conv_forward(
    params: dict[str, np.ndarray],
    state: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray,
    training: bool = True,
    momentum: float = BATCH_NORM_MOMENTUM,
    eps: float = BATCH_NORM_EPS,
    *,
    backend=None,
) -> tuple[np.ndarray, BatchNormCache, dict[str, np.ndarray]]:
    """Per-channel batch norm of a padded batch of conv outputs.

    As :func:`batch_norm_forward`, with x of shape (T, B, C, F): each channel's
    statistics run over the valid frames and every frequency; params and state have
    shape (C,).

    Returns
    -------
    y : array, shape (T, B, C, F), x's dtype; zero on padded frames
    cache : BatchNormCache
    new_state : dict
    """
    kernels = get_backend(backend)
    x = _checks.float_array(x, "batch_norm_conv x", ndim=4)
    lengths = _checks.lengths_array(lengths, x.shape[1], x.shape[0])
    return _batch_norm_forward(
        params,
        state,
        x,
        lengths,
        training,
        momentum,
        eps,
        kernels,
        "batch_norm_conv",
        x.shape,
    )


def batch_norm_backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: BatchNormCache,
    *,
    backend=None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of :func:`batch_norm_forward` (and of the conv variant).

    Parameters
    ----------
    params : dict
        The parameters given to the forward pass.
    dy : array shaped like the forward output, its dtype
        Values on padded frames are ignored (those outputs are constant zero).
    cache : BatchNormCache

    Returns
    -------
    dx : array shaped like the forward input; zero on padded frames
    grads : dict with ``gamma`` and ``beta``
    """
    kernels = get_backend(backend)
    dy = _checks.float_array(dy, "batch_norm dy")
    _checks.expect_shape("batch_norm dy", dy, cache.shape)
    _checks.same_dtype("batch_norm dy", dy, cache.x, "the forward input")
    gamma = _checks.float_array(params["gamma"], "batch_norm gamma", ndim=1)
    dx, dgamma, dbeta = kernels.batch_norm_backward(
        dy.reshape(cache.x.shape),
        cache.x,
        cache.lengths,
        cache.mean,
        cache.invstd,
        gamma,
        cache.training,
    )
    return dx.reshape(cache.shape), {"gamma": dgamma, "beta": dbeta}


def batch_norm_conv_backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: BatchNormCache,
    *,
    backend=None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of :func:`batch_norm_conv_forward`; see :func:`batch_norm_backward`."""
    return batch_norm_backward(params, dy, cache, backend=backend)


# --- layer norm ----------------------------------------------------------------------


def layer_norm_init(n_features: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """``gamma`` (ones) and ``beta`` (zeros), shape (n_features,)."""
    if int(n_features) < 1:
        raise ConfigError(f"layer_norm_init: n_features must be >= 1, got {n_features}")
    return {
        "gamma": np.ones(int(n_features), dtype=dtype),
        "beta": np.zeros(int(n_features), dtype=dtype),
    }


def layer_norm_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray | None = None,
    eps: float = BATCH_NORM_EPS,
    *,
    backend=None,
) -> tuple[np.ndarray, LayerNormCache]:
    """Layer normalisation over the last axis (Ba et al., 2016), as PyTorch's LayerNorm.

    Parameters
    ----------
    params : dict
        ``gamma``, ``beta``, shape (F,).
    x : array, shape (..., F), float32 or float64
    lengths : int array, shape (B,), optional
        For a (T, B, F) batch: zero the padded output frames (they would hold ``beta``).
    eps : float

    Returns
    -------
    y : array shaped like x, x's dtype
    cache : LayerNormCache
    """
    kernels = get_backend(backend)
    x = _checks.float_array(x, "layer_norm x")
    if x.ndim < 1:
        raise ConfigError("layer_norm x: needs at least one dimension")
    F = x.shape[-1]
    gamma = _checks.float_array(params["gamma"], "layer_norm gamma", ndim=1)
    beta = _checks.float_array(params["beta"], "layer_norm beta", ndim=1)
    for name, array in (("gamma", gamma), ("beta", beta)):
        _checks.expect_shape(f"layer_norm {name}", array, (F,))
        _checks.same_dtype(f"layer_norm {name}", array, x, "x")
    if not float(eps) > 0.0:
        raise ConfigError(f"layer_norm: eps must be > 0, got {eps}")
    if lengths is not None:
        if x.ndim != 3:
            raise ConfigError("layer_norm: lengths need a time-major (T, B, F) input")
        lengths = _checks.lengths_array(lengths, x.shape[1], x.shape[0])
    y, xhat, invstd = kernels.layer_norm_forward(
        x.reshape(-1, F), gamma, beta, float(eps)
    )
    y = y.reshape(x.shape)
    if lengths is not None:
        y = kernels.mask_padded(y, lengths, out=y)
    return y, LayerNormCache(xhat=xhat, invstd=invstd, shape=x.shape, lengths=lengths)


def layer_norm_backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: LayerNormCache,
    *,
    backend=None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of :func:`layer_norm_forward`.

    Parameters
    ----------
    params : dict
        The parameters given to the forward pass.
    dy : array shaped like the forward output, its dtype
    cache : LayerNormCache

    Returns
    -------
    dx : array shaped like the forward input (zero on padded frames when lengths given)
    grads : dict with ``gamma`` and ``beta``, shape (F,)
    """
    kernels = get_backend(backend)
    dy = _checks.float_array(dy, "layer_norm dy")
    _checks.expect_shape("layer_norm dy", dy, cache.shape)
    _checks.same_dtype("layer_norm dy", dy, cache.xhat, "the forward input")
    if cache.lengths is not None:
        dy = kernels.mask_padded(dy, cache.lengths)
    gamma = _checks.float_array(params["gamma"], "layer_norm gamma", ndim=1)
    F = cache.shape[-1]
    dx, dgamma, dbeta = kernels.layer_norm_backward(
        dy.reshape(-1, F), cache.xhat, cache.invstd, gamma
    )
    return dx.reshape(cache.shape), {"gamma": dgamma, "beta": dbeta}
