"""Argument checks shared by the layers of :mod:`npspeech.nn`.

Kernels trust their inputs; the public layer functions call these first so that a
wrong shape or dtype raises a :class:`~npspeech.errors.ConfigError` naming the
argument, instead of a broadcasting accident deep inside a kernel.
"""

from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

from ..errors import ConfigError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def xp_of(value) -> ModuleType:
    """The array module of ``value``: ``cupy`` for a CuPy array, else ``numpy``.

    Never imports CuPy: an array can only be a CuPy array once the cupy backend has
    imported it, so a CPU run only ever sees ``numpy`` here.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(value, cupy.ndarray):
        return cupy
    return np


def on_device(value) -> bool:
    """Whether ``value`` is a CuPy (device) array."""
    return xp_of(value) is not np


def float_array(
    value, name: str, ndim: int | tuple[int, ...] | None = None
) -> np.ndarray:
    """``value`` as a C-contiguous float32/float64 array of the given rank(s).

    A CuPy array stays a CuPy array (made contiguous on its device); anything else
    becomes a NumPy array.

    Raises
    ------
    ConfigError
        When ``value`` is not a float32/float64 array or has another rank.
    """
    xp = xp_of(value)
    array = xp.asarray(value)
    if array.dtype not in FLOAT_DTYPES:
        raise ConfigError(f"{name}: expected float32 or float64, got {array.dtype}")
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in ranks:
            raise ConfigError(
                f"{name}: expected {' or '.join(map(str, ranks))} dimensions, "
                f"got shape {array.shape}"
            )
    return xp.ascontiguousarray(array)


def same_dtype(
    name: str, array: np.ndarray, reference: np.ndarray, ref_name: str
) -> None:
    """Raise unless ``array`` has the dtype of ``reference``: kernels never mix them."""
    if array.dtype != reference.dtype:
        raise ConfigError(
            f"{name} is {array.dtype} but {ref_name} is {reference.dtype}; "
            "cast one so both match"
        )


def expect_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise unless ``array.shape == shape``."""
    if array.shape != tuple(shape):
        raise ConfigError(f"{name}: expected shape {tuple(shape)}, got {array.shape}")


def lengths_array(
    lengths, batch: int, max_frames: int, name: str = "lengths"
) -> np.ndarray:
    """``lengths`` as C-contiguous int32 ``(batch,)``, each in ``[0, max_frames]``.

    CuPy lengths stay on their device and are checked for dtype and shape only:
    reading their range back would stall the device at every layer, and the model
    checks a device batch's lengths once, on the host, before uploading them
    (:func:`npspeech.models.forward`).

    Raises
    ------
    ConfigError
        For a non-integer array, a wrong shape or a length outside ``[0, max_frames]``.
    """
    xp = xp_of(lengths)
    array = xp.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise ConfigError(f"{name}: expected integers, got {array.dtype}")
    if array.shape != (batch,):
        raise ConfigError(f"{name}: expected shape ({batch},), got {array.shape}")
    if xp is not np:
        return xp.ascontiguousarray(array, dtype=np.int32)
    if batch and (array.min() < 0 or array.max() > max_frames):
        raise ConfigError(
            f"{name}: every length must lie in [0, {max_frames}], "
            f"got {array.min()}..{array.max()}"
        )
    return np.ascontiguousarray(array, dtype=np.int32)


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int or two ints) as a pair of ints, each at least ``minimum``."""
    if np.ndim(value) == 0:
        value = (value, value)
    try:
        first, second = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}: expected an int or two ints, got {value!r}"
        ) from None
    if first < minimum or second < minimum:
        raise ConfigError(f"{name}: each value must be >= {minimum}, got {value!r}")
    return first, second
