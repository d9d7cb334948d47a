"""The numba backend's gate nonlinearities: the vectorisable float32 sigmoid and tanh
against float64 NumPy rounded to float32, and the float64 path against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

rnn_kernels = pytest.importorskip("npspeech.backends.numba_cpu.rnn")

# values where the formulas switch or saturate: the tanh series threshold (1e-3),
# float32 overflow and underflow of exp (88.7, -87.3 / -103.9 subnormal), the clamp 110
SPECIAL = np.array(
    [
        *(0.0, 1e-30, 1e-8, 9.99e-4, 1e-3, 1.01e-3, 0.5, 1.0, 20.0, 44.0),
        *(87.0, 88.8, 103.9, 104.0, 110.0, 200.0, 1e30, np.inf),
    ],
    dtype=np.float32,
)


def _inputs(rng):
    """(N,) float32: wide random values, their negations and the special values."""
    wide = rng.standard_normal(200_000) * 12.0
    small = rng.standard_normal(20_000) * 1e-3
    values = np.concatenate([wide, small, SPECIAL, -SPECIAL]).astype(np.float32)
    return values


def _ulps(got, exact):
    """|got - exact| in units of the float32 spacing at the rounded exact value."""
    rounded = exact.astype(np.float32)
    spacing = np.spacing(np.abs(rounded)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


@pytest.mark.parametrize(
    "kernel, exact_of",
    [
        (rnn_kernels._sigmoid_of_sum, lambda a: 1.0 / (1.0 + np.exp(-a))),
        (rnn_kernels._tanh_of_sum, np.tanh),
    ],
    ids=["sigmoid", "tanh"],
)
def test_float32_gates_are_rounded_as_float32_allows(rng, kernel, exact_of):
    x = _inputs(rng)
    # the kernels take the sum of two arrays: split the finite values in two parts
    finite = np.isfinite(x)
    a = np.where(finite, x / np.float32(2.0), x).astype(np.float32)
    b = np.zeros_like(x)
    b[finite] = x[finite] - a[finite]
    out = np.empty_like(x)
    kernel(a, b, out)
    total = (a + b).astype(np.float64)  # the float32 sum the kernel sees, exactly
    with np.errstate(over="ignore"):
        exact = exact_of(total)
    ulps = _ulps(out, exact)
    assert out.dtype == np.float32
    assert ulps.max() <= 1.0, f"max error {ulps.max()} ulp at {total[ulps.argmax()]}"
    # correctly rounded almost everywhere (libm's float32 exp path is not)
    assert np.mean(ulps > 0.5) < 1e-4
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "kernel", [rnn_kernels._sigmoid_of_sum, rnn_kernels._tanh_of_sum]
)
def test_float32_gates_propagate_nan(kernel):
    x = np.array([np.nan, 1.0, -np.nan], dtype=np.float32)
    out = np.empty_like(x)
    kernel(x, np.zeros_like(x), out)
    assert np.isnan(out[0]) and np.isnan(out[2]) and np.isfinite(out[1])


def test_float32_saturation_is_exact():
    x = np.array([-np.inf, -200.0, 200.0, np.inf], dtype=np.float32)
    out = np.empty_like(x)
    rnn_kernels._sigmoid_of_sum(x, np.zeros_like(x), out)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1.0, 1.0])
    rnn_kernels._tanh_of_sum(x, np.zeros_like(x), out)
    np.testing.assert_array_equal(out, [-1.0, -1.0, 1.0, 1.0])


def test_float64_gates_match_numpy(rng):
    x = np.concatenate([rng.standard_normal(10_000) * 12.0, [0.0, 1e-300, -5e-4]])
    a = x / 2.0
    b = x - a
    out = np.empty_like(x)
    rnn_kernels._sigmoid_of_sum(a, b, out)
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-(a + b))), rtol=1e-14)
    rnn_kernels._tanh_of_sum(a, b, out)
    # 2 sigmoid(2a) - 1 above the series' range keeps ~1 float64 ulp of 1 absolute
    np.testing.assert_allclose(out, np.tanh(a + b), rtol=1e-14, atol=1e-15)
