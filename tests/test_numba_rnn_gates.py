"""The numba backend's gate nonlinearities (``gate_math``, through the gate loops of
``rnn``): the vectorisable float32 sigmoid and tanh against float64 NumPy, and the
float64 path against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

rnn_kernels = pytest.importorskip("npspeech.backends.numba_cpu.rnn")

# values where the formulas switch, clamp or saturate: exp's clamps (-87, 88), tanh's
# (10), float32 overflow and underflow of exp (88.7, -87.3 / -103.9 subnormal), the
# reduction's switch from n = 0 to n = +-1 (ln(2) / 2 = 0.3466, and half of it for tanh)
SPECIAL = np.array(
    [
        *(0.0, 1e-30, 1e-8, 1e-3, 0.1733, 0.1734, 0.3465, 0.3467, 0.5, 1.0),
        *(9.0, 10.0, 10.1, 20.0, 44.0, 86.9, 87.0, 87.1, 87.3, 87.9, 88.0, 88.1),
        *(88.8, 103.9, 104.0, 110.0, 200.0, 1e30, np.inf),
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
def test_float32_gates_are_within_three_ulp(rng, kernel, exact_of):
    x = _inputs(rng)
    # the kernels take the sum (a + b) + c of three arrays: split the finite values
    finite = np.isfinite(x)
    a = np.where(finite, x / np.float32(2.0), x).astype(np.float32)
    b = np.zeros_like(x)
    b[finite] = x[finite] / np.float32(4.0)
    c = np.zeros_like(x)
    c[finite] = x[finite] - a[finite] - b[finite]
    out = np.empty_like(x)
    kernel(a, b, c, out)
    total = ((a + b) + c).astype(np.float64)  # the float32 sum the kernel sees
    with np.errstate(over="ignore"):
        exact = exact_of(total)
    # results below float32's smallest normal number are flushed to zero (see rnn.py)
    exact[np.abs(exact) < np.finfo(np.float32).tiny] = 0.0
    ulps = _ulps(out, exact)
    assert out.dtype == np.float32
    # measured: at most 2.3 ulp (sigmoid) and 2.6 ulp (tanh), 0.41 ulp on average
    assert ulps.max() <= 3.0, f"max error {ulps.max()} ulp at {total[ulps.argmax()]}"
    assert ulps.mean() <= 0.5
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "kernel", [rnn_kernels._sigmoid_of_sum, rnn_kernels._tanh_of_sum]
)
def test_float32_gates_propagate_nan(kernel):
    x = np.array([np.nan, 1.0, -np.nan], dtype=np.float32)
    out = np.empty_like(x)
    kernel(x, np.zeros_like(x), np.zeros_like(x), out)
    assert np.isnan(out[0]) and np.isnan(out[2]) and np.isfinite(out[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_gates_are_flushed_to_zero(dtype):
    # sigmoid(-90) = 8e-40 is subnormal in float32; sigmoid(-709) = 1.2e-308 in float64
    deep = -90.0 if dtype == np.float32 else -709.0
    x = np.array([deep, deep / 2, 0.0], dtype=dtype)
    out = np.empty_like(x)
    rnn_kernels._sigmoid_of_sum(x, np.zeros_like(x), np.zeros_like(x), out)
    assert out[0] == 0.0
    assert out[1] >= np.finfo(dtype).tiny  # normal results are kept
    assert out[2] == 0.5


def test_float32_saturation_is_exact():
    x = np.array([-np.inf, -200.0, 200.0, np.inf], dtype=np.float32)
    out = np.empty_like(x)
    rnn_kernels._sigmoid_of_sum(x, np.zeros_like(x), np.zeros_like(x), out)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1.0, 1.0])
    rnn_kernels._tanh_of_sum(x, np.zeros_like(x), np.zeros_like(x), out)
    np.testing.assert_array_equal(out, [-1.0, -1.0, 1.0, 1.0])


def test_float64_gates_match_numpy(rng):
    x = np.concatenate([rng.standard_normal(10_000) * 12.0, [0.0, 1e-300, -5e-4]])
    a = x / 2.0
    b = x / 4.0
    c = x - a - b
    out = np.empty_like(x)
    rnn_kernels._sigmoid_of_sum(a, b, c, out)
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-(a + b + c))), rtol=1e-14)
    rnn_kernels._tanh_of_sum(a, b, c, out)
    np.testing.assert_allclose(out, np.tanh(a + b + c), rtol=1e-14)


def _subnormal_count(a):
    a = np.asarray(a)
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


def test_saturated_lstm_keeps_no_subnormals_and_matches_the_reference(rng):
    """A trained LSTM's saturated gates: no subnormal reaches the stored tape or the
    gradients, and the results still equal the unflushed NumPy reference."""
    from npspeech.backends.numpy_ref import rnn as reference

    T, B, F, H = 12, 3, 5, 8
    x = rng.standard_normal((T, B, F)).astype(np.float32)
    W_ih = (rng.standard_normal((F, 4 * H)) * 0.3).astype(np.float32)
    W_hh = (rng.standard_normal((H, 4 * H)) * 0.3).astype(np.float32)
    # input and output gates driven to about -88 .. -92: sigmoid is subnormal there
    b_ih = np.zeros(4 * H, np.float32)
    b_ih[:H] = -90.0
    b_ih[3 * H :] = -90.0
    b_hh = np.zeros(4 * H, np.float32)
    lengths = np.array([T, T - 4, 5])
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    args = (x, lengths, W_ih, W_hh, b_ih, b_hh, h0, c0)
    with np.errstate(over="ignore"):  # the reference's exp(90) overflows to inf: fine
        ref_forward = reference.lstm_forward(*args)
    assert _subnormal_count(ref_forward[1]) > 0  # the case really saturates
    forward = rnn_kernels.lstm_forward(*args)
    valid = np.arange(T)[:, None] < lengths[None, :]  # gates and cells past a length
    for got, want in zip(forward, ref_forward):  # are left unspecified
        assert _subnormal_count(got) == 0
        if got.ndim == 3:
            got, want = got[valid], want[valid]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    y, gates, cells = forward[:3]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    zeros = np.zeros((B, H), np.float32)
    backward = rnn_kernels.lstm_backward(
        dy, zeros, zeros, x, lengths, W_ih, W_hh, h0, c0, y, gates, cells
    )
    ref_backward = reference.lstm_backward(
        dy, zeros, zeros, x, lengths, W_ih, W_hh, h0, c0, *ref_forward[:3]
    )
    for got, want in zip(backward, ref_backward):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
