"""Finite-difference gradient checks in float64."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .tolerances import GRADCHECK_ATOL, GRADCHECK_EPS, GRADCHECK_RTOL


def numerical_gradient(
    scalar_fn: Callable[[], float], array: np.ndarray, eps: float = GRADCHECK_EPS
) -> np.ndarray:
    """d scalar_fn / d array by central differences, perturbing ``array`` in place.

    ``scalar_fn`` takes no arguments and reads ``array`` (a closure), so the same helper
    serves inputs and parameters alike. ``array`` is restored afterwards.

    Returns
    -------
    float64 array shaped like ``array``.
    """
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks run in float64, got {array.dtype}")
    gradient = np.zeros_like(array)
    flat = array.reshape(-1)  # a view: writes reach ``array``
    flat_gradient = gradient.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = scalar_fn()
        flat[i] = original - eps
        minus = scalar_fn()
        flat[i] = original
        flat_gradient[i] = (plus - minus) / (2 * eps)
    return gradient


def assert_gradient_close(
    analytic: np.ndarray,
    scalar_fn: Callable[[], float],
    array: np.ndarray,
    *,
    name: str = "gradient",
    rtol: float = GRADCHECK_RTOL,
    atol: float = GRADCHECK_ATOL,
    eps: float = GRADCHECK_EPS,
) -> None:
    """Assert that ``analytic`` equals the finite-difference gradient of
    ``scalar_fn``.
    """
    numeric = numerical_gradient(scalar_fn, array, eps)
    assert analytic.shape == array.shape, (
        f"{name}: shape {analytic.shape} != {array.shape}"
    )
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=name)


def random_projection(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed random cotangent: checking ``sum(y * R)`` exercises every
    output element.
    """
    return rng.standard_normal(shape)
