"""Dense (fully connected) layer: ``y = x @ W + b`` over every frame with one GEMM,
optionally clipped (``clip=(low, high)``: DeepSpeech's clipped ReLU is ``(0, 20)``) in
the same pass.

Shape legend: T frames, B batch, N rows (T * B), F_in / F_out features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from . import _checks
from .activations import ClipCache
from .init import glorot_uniform, pytorch_uniform

SCHEMES = ("glorot_uniform", "pytorch")


@dataclass(frozen=True)
class DenseCache:
    """What :func:`backward` needs from :func:`forward`.

    Attributes
    ----------
    x : array, shape (N, F_in)
        The input flattened to rows (a view of the caller's array, never written).
    shape : tuple of int
        The input's own shape, ``(T, B, F_in)`` or ``(N, F_in)``.
    lengths : int32 array, shape (B,), or None
        When given to :func:`forward`, padded frames of ``y`` were zeroed.
    clip : ClipCache or None
        With ``clip`` given to :func:`forward`: its bounds and the clipped output as
        rows (N, F_out), for the clip's gradient.
    """

    x: np.ndarray
    shape: tuple
    lengths: np.ndarray | None
    clip: ClipCache | None = None


def init(
    rng: np.random.Generator,
    n_in: int,
    n_out: int,
    dtype=np.float32,
    scheme: str = "glorot_uniform",
) -> dict[str, np.ndarray]:
    """Parameters of a dense layer.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_in, n_out : int
        Input and output features.
    dtype : float32 or float64
    scheme : {"glorot_uniform", "pytorch"}
        ``glorot_uniform``: DeepSpeech's dense layers (Glorot-uniform weights, zero
        bias). ``pytorch``: ``torch.nn.Linear``'s default, weights and bias from
        ``U(-1/sqrt(n_in), 1/sqrt(n_in))``.

    Returns
    -------
    dict with ``W`` (n_in, n_out) and ``b`` (n_out,) of ``dtype``.
    """
    if scheme == "glorot_uniform":
        W = glorot_uniform(rng, (n_in, n_out), dtype)
        b = np.zeros(n_out, dtype=dtype)
    elif scheme == "pytorch":
        W = pytorch_uniform(rng, (n_in, n_out), n_in, dtype)
        b = pytorch_uniform(rng, (n_out,), n_in, dtype)
    else:
        raise ConfigError(
            f"dense.init: scheme must be one of {SCHEMES}, got {scheme!r}"
        )
    return {"W": W, "b": b}


def _check_params(params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    W = _checks.float_array(params["W"], "dense W", ndim=2)
    b = _checks.float_array(params["b"], "dense b", ndim=1)
    _checks.expect_shape("dense b", b, (W.shape[1],))
    _checks.same_dtype("dense b", b, W, "W")
    return W, b


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray | None = None,
    *,
    clip: tuple[float, float] | None = None,
    backend=None,
) -> tuple[np.ndarray, DenseCache]:
    """``y = x @ W + b``, or ``min(max(x @ W + b, low), high)`` with ``clip``.

    Parameters
    ----------
    params : dict
        ``W`` (F_in, F_out) and ``b`` (F_out,), float32 or float64.
    x : array, shape (T, B, F_in) or (N, F_in), W's dtype
    lengths : int32 array, shape (B,), optional
        For a (T, B, F_in) batch: zero the padded output frames (which would otherwise
        hold ``b``).
    clip : (low, high), optional
        Clip the output in the pass that adds the bias, and take the clip's gradient
        in :func:`backward`: the same results as
        :func:`~npspeech.nn.activations.clipped_relu_forward` (``(0, ceiling)``) or
        :func:`~npspeech.nn.activations.hardtanh_forward` after the layer, with one
        pass over the output less each way. Padded frames are zero after the clip.
    backend : str or module, optional
        Kernel backend (default: ``$NPSPEECH_BACKEND`` or numba).

    Returns
    -------
    y : array, shape (T, B, F_out) or (N, F_out), x's dtype
    cache : DenseCache
    """
    kernels = get_backend(backend)
    W, b = _check_params(params)
    x = _checks.float_array(x, "dense x", ndim=(2, 3))
    _checks.same_dtype("dense x", x, W, "W")
    if x.shape[-1] != W.shape[0]:
        raise ConfigError(
            f"dense x: {x.shape[-1]} input features but W expects {W.shape[0]}"
        )
    if lengths is not None:
        if x.ndim != 3:
            raise ConfigError("dense: lengths need a time-major (T, B, F) input")
        lengths = _checks.lengths_array(lengths, x.shape[1], x.shape[0])
    if clip is not None:
        low, high = (float(bound) for bound in clip)
        if not low < high:
            raise ConfigError(f"dense clip: low {low} must be below high {high}")
    rows = x.reshape(-1, x.shape[-1])  # (N, F_in), N = T * B: one GEMM for all frames
    if clip is None:
        y_rows = kernels.dense_forward(rows, W, b)  # (N, F_out)
    else:
        y_rows = kernels.dense_clip_forward(rows, W, b, low, high)
    y = y_rows.reshape(x.shape[:-1] + (W.shape[1],))
    if lengths is not None:
        y = kernels.mask_padded(y, lengths, out=y)
    if clip is not None:
        clip = ClipCache(y=y.reshape(-1, W.shape[1]), low=low, high=high)
    return y, DenseCache(x=rows, shape=x.shape, lengths=lengths, clip=clip)


def backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: DenseCache,
    *,
    input_grad: bool = True,
    backend=None,
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Gradients of :func:`forward`.

    Parameters
    ----------
    params : dict
        The parameters given to :func:`forward`.
    dy : array, shaped like the forward output, its dtype
    cache : DenseCache
    input_grad : bool
        False skips ``dx`` (returned as None), for a first layer whose input is data.

    Returns
    -------
    dx : array shaped like the forward input, or None
    grads : dict with ``W`` (F_in, F_out) and ``b`` (F_out,)
    """
    kernels = get_backend(backend)
    W, _ = _check_params(params)
    dy = _checks.float_array(dy, "dense dy")
    out_shape = cache.shape[:-1] + (W.shape[1],)
    _checks.expect_shape("dense dy", dy, out_shape)
    _checks.same_dtype("dense dy", dy, W, "W")
    if cache.lengths is not None:
        # padded outputs were set to zero, so no gradient flows back through them
        dy = kernels.mask_padded(dy, cache.lengths)
    dy_rows = dy.reshape(-1, W.shape[1])  # (N, F_out)
    if cache.clip is None:
        dx, dW, db = kernels.dense_backward(cache.x, W, dy_rows, need_dx=input_grad)
    else:
        clip = cache.clip
        dx, dW, db = kernels.dense_clip_backward(
            cache.x, W, clip.y, dy_rows, clip.low, clip.high, need_dx=input_grad
        )
    if dx is not None:
        dx = dx.reshape(cache.shape)
    return dx, {"W": dW, "b": db}
