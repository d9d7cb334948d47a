"""2D convolution over (time, frequency), DeepSpeech2's front end.

The input is time-major ``(T, B, C, F)`` with ``lengths (B,)``; the weight has PyTorch's
layout ``(C_out, C_in, kt, kf)`` and the operation is PyTorch's ``conv2d`` (a
cross-correlation) on ``(B, C, T, F)``. Each sequence's output length follows from its
input length; output frames past it are zero, and input frames past a sequence's end are
treated as zero, so a batch gives each sequence the result it gets alone.

Implemented as im2col (a strided unfold) and one GEMM per slice of output frames; the
backward pass is two GEMMs and col2im, a scatter-add. The layer is array-module
agnostic: CuPy inputs (with the cupy backend) stay on their device, lengths included.

Shape legend: T frames, B batch, C channels, F frequencies, kt/kf kernel size, st/sf
strides, pt/pf zero padding on each side, T'/F' output sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import get_backend
from ..errors import ConfigError
from . import _checks
from .init import glorot_uniform, pytorch_uniform

SCHEMES = ("pytorch", "glorot_uniform")


@dataclass(frozen=True)
class ConvCache:
    """What :func:`backward` needs from :func:`forward`.

    Attributes
    ----------
    xp : array, shape (T + 2 pt, B, C_in, F + 2 pf), float
        The input with padded frames zeroed and zero padding added.
    lengths : int32 array, shape (B,)
        Input lengths.
    out_lengths : int32 array, shape (B,)
        Output lengths.
    stride, padding : (int, int)
        ``(st, sf)`` and ``(pt, pf)``.
    shape : tuple of int
        The input's shape ``(T, B, C_in, F)``.
    """

    xp: np.ndarray
    lengths: np.ndarray
    out_lengths: np.ndarray
    stride: tuple
    padding: tuple
    shape: tuple


def init(
    rng: np.random.Generator,
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int] = (41, 11),
    dtype=np.float32,
    scheme: str = "pytorch",
) -> dict[str, np.ndarray]:
    """Parameters of a 2D convolution.

    Parameters
    ----------
    rng : numpy.random.Generator
    in_channels, out_channels : int
    kernel : (int, int)
        ``(kt, kf)``, kernel size in time and frequency.
    dtype : float32 or float64
    scheme : {"pytorch", "glorot_uniform"}
        ``pytorch``: ``torch.nn.Conv2d``'s default, weights and bias from
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = C_in * kt * kf``.
        ``glorot_uniform``: TensorFlow's default for conv kernels, zero bias.

    Returns
    -------
    dict with ``W`` (C_out, C_in, kt, kf) and ``b`` (C_out,) of ``dtype``.
    """
    kt, kf = _checks.pair(kernel, "conv kernel", minimum=1)
    shape = (int(out_channels), int(in_channels), kt, kf)
    if min(shape[:2]) < 1:
        raise ConfigError(f"conv.init: channels must be >= 1, got {shape[:2]}")
    if scheme == "pytorch":
        fan_in = shape[1] * kt * kf
        W = pytorch_uniform(rng, shape, fan_in, dtype)
        b = pytorch_uniform(rng, (shape[0],), fan_in, dtype)
    elif scheme == "glorot_uniform":
        W = glorot_uniform(rng, shape, dtype)
        b = np.zeros(shape[0], dtype=dtype)
    else:
        raise ConfigError(f"conv.init: scheme must be one of {SCHEMES}, got {scheme!r}")
    return {"W": W, "b": b}


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output frames (or frequencies): ``(size + 2 pad - k) // stride + 1``, >= 0."""
    return max(0, (int(size) + 2 * int(padding) - int(kernel)) // int(stride) + 1)


def output_lengths(lengths, kernel, stride=(1, 1), padding=(0, 0)) -> np.ndarray:
    """Each sequence's output length: ``(L + 2 pt - kt) // st + 1``, at least 0.

    Parameters
    ----------
    lengths : int array, shape (B,)
        NumPy or CuPy; the result is computed where the lengths are.
    kernel, stride, padding : (int, int) or int
        Time is the first of each pair.

    Returns
    -------
    int32 array, shape (B,), on the device of ``lengths``
    """
    kt, _ = _checks.pair(kernel, "conv kernel", minimum=1)
    st, _ = _checks.pair(stride, "conv stride", minimum=1)
    pt, _ = _checks.pair(padding, "conv padding", minimum=0)
    xp = _checks.xp_of(lengths)
    lengths = xp.asarray(lengths, dtype=np.int64)
    out = (lengths + 2 * pt - kt) // st + 1
    return xp.maximum(out, 0).astype(np.int32)


def _check_params(params):
    W = _checks.float_array(params["W"], "conv W", ndim=4)
    b = _checks.float_array(params["b"], "conv b", ndim=1)
    _checks.expect_shape("conv b", b, (W.shape[0],))
    _checks.same_dtype("conv b", b, W, "W")
    return W, b


def forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    lengths: np.ndarray,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    *,
    backend=None,
) -> tuple[np.ndarray, ConvCache]:
    """2D convolution of a padded batch.

    Parameters
    ----------
    params : dict
        ``W`` (C_out, C_in, kt, kf) and ``b`` (C_out,).
    x : array, shape (T, B, C_in, F), W's dtype
        NumPy, or CuPy with the weights and lengths on the same device (the output
        and the cache stay there).
    lengths : int array, shape (B,)
        Valid frames per sequence; frames past them are read as zero.
    stride : (int, int)
        ``(st, sf)``.
    padding : (int, int)
        ``(pt, pf)`` zeros added on both sides of time and frequency.
    backend : str or module, optional

    Returns
    -------
    y : array, shape (T', B, C_out, F'), x's dtype
        ``T' = (T + 2 pt - kt) // st + 1``, ``F' = (F + 2 pf - kf) // sf + 1``; frames
        past :func:`output_lengths` are zero.
    cache : ConvCache
    """
    kernels = get_backend(backend)
    W, b = _check_params(params)
    x = _checks.float_array(x, "conv x", ndim=4)
    _checks.same_dtype("conv x", x, W, "W")
    T, B, C, F = x.shape
    C_out, C_in, kt, kf = W.shape
    if C != C_in:
        raise ConfigError(f"conv x: {C} channels but W expects {C_in}")
    lengths = _checks.lengths_array(lengths, B, T)
    st, sf = _checks.pair(stride, "conv stride", minimum=1)
    pt, pf = _checks.pair(padding, "conv padding", minimum=0)
    T_out = output_size(T, kt, st, pt)
    F_out = output_size(F, kf, sf, pf)
    if T_out < 1 or F_out < 1:
        raise ConfigError(
            f"conv: input (T={T}, F={F}) with padding {(pt, pf)} is smaller than "
            f"the kernel {(kt, kf)}"
        )
    padded = _checks.xp_of(x).zeros((T + 2 * pt, B, C, F + 2 * pf), dtype=x.dtype)
    padded[pt : pt + T, :, :, pf : pf + F] = kernels.mask_padded(x, lengths)
    y = kernels.conv2d_forward(padded, W, b, st, sf)  # (T', B, C_out, F')
    out_lengths = output_lengths(lengths, (kt, kf), (st, sf), (pt, pf))
    y = kernels.mask_padded(y, out_lengths, out=y)
    cache = ConvCache(
        xp=padded,
        lengths=lengths,
        out_lengths=out_lengths,
        stride=(st, sf),
        padding=(pt, pf),
        shape=x.shape,
    )
    return y, cache


def backward(
    params: dict[str, np.ndarray],
    dy: np.ndarray,
    cache: ConvCache,
    *,
    input_grad: bool = True,
    backend=None,
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Gradients of :func:`forward`.

    Parameters
    ----------
    params : dict
        The parameters given to :func:`forward`.
    dy : array, shape (T', B, C_out, F'), the forward output's dtype
        Values on padded output frames are ignored (those outputs are constant zero).
    cache : ConvCache
    input_grad : bool
        False skips ``dx`` (returned as None) and its col2im, for a first layer whose
        input is data.

    Returns
    -------
    dx : array, shape (T, B, C_in, F); zero on padded frames; or None
    grads : dict with ``W`` (C_out, C_in, kt, kf) and ``b`` (C_out,)
    """
    kernels = get_backend(backend)
    W, _ = _check_params(params)
    dy = _checks.float_array(dy, "conv dy", ndim=4)
    _checks.same_dtype("conv dy", dy, W, "W")
    T, B, C, F = cache.shape
    (st, sf), (pt, pf) = cache.stride, cache.padding
    C_out, _, kt, kf = W.shape
    expected = (output_size(T, kt, st, pt), B, C_out, output_size(F, kf, sf, pf))
    _checks.expect_shape("conv dy", dy, expected)
    dy = kernels.mask_padded(dy, cache.out_lengths)
    dxp, dW, db = kernels.conv2d_backward(dy, cache.xp, W, st, sf, need_dx=input_grad)
    if dxp is None:
        return None, {"W": dW, "b": db}
    dx = _checks.xp_of(dxp).ascontiguousarray(dxp[pt : pt + T, :, :, pf : pf + F])
    # inputs past a sequence's end were replaced by zeros, so they get no gradient
    dx = kernels.mask_padded(dx, cache.lengths, out=dx)
    return dx, {"W": dW, "b": db}
