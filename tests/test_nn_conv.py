"""2D convolution over (time, frequency): gradients, PyTorch, lengths, backends."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import assert_gradient_close, random_projection
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    CONV_PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from npspeech.backends.numpy_ref import layers as ref_layers
from npspeech.errors import ConfigError
from npspeech.nn import conv


def _padded_batch(rng, T, lengths, C, F, dtype=np.float64):
    x = rng.standard_normal((T, len(lengths), C, F)).astype(dtype)
    x[np.arange(T)[:, None] >= np.asarray(lengths)[None, :]] = 0.0
    return x


def _parity_tol(dtype) -> dict:
    if dtype == np.float64:
        return {"rtol": 0, "atol": PARITY_ATOL_FLOAT64}
    return {"rtol": PARITY_RTOL_FLOAT32, "atol": CONV_PARITY_ATOL_FLOAT32}


def test_output_lengths_formula():
    lengths = np.array([100, 41, 40, 1])
    out = conv.output_lengths(lengths, (41, 11), (2, 2), (20, 5))
    np.testing.assert_array_equal(out, (lengths + 40 - 41) // 2 + 1)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(
        conv.output_lengths([3, 5], (5, 1), (1, 1), (0, 0)), [0, 1]
    )


@pytest.mark.parametrize(
    "stride, padding",
    [((1, 1), (0, 0)), ((2, 1), (1, 1)), ((2, 2), (2, 1)), ((1, 2), (2, 1))],
)
def test_gradients_with_mixed_lengths(rng, backend, stride, padding):
    C_in, C_out, kernel = 2, 3, (3, 2)
    lengths = np.array([7, 4, 2], dtype=np.int32)
    params = conv.init(rng, C_in, C_out, kernel, dtype=np.float64)
    x = _padded_batch(rng, 7, lengths, C_in, 5)
    y, cache = conv.forward(params, x, lengths, stride, padding, backend=backend)
    R = random_projection(rng, y.shape)

    def loss() -> float:
        y, _ = conv.forward(params, x, lengths, stride, padding, backend=backend)
        return float((y * R).sum())

    dx, grads = conv.backward(params, R, cache, backend=backend)
    assert set(grads) == {"W", "b"}
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["W"], loss, params["W"], name="dW")
    assert_gradient_close(grads["b"], loss, params["b"], name="db")
    out_lengths = conv.output_lengths(lengths, kernel, stride, padding)
    for b, n in enumerate(out_lengths):
        assert np.all(y[n:, b] == 0.0)
        assert np.all(dx[lengths[b] :, b] == 0.0)


def test_batch_gives_each_sequence_its_own_result(rng, backend):
    kernel, stride, padding = (5, 3), (2, 2), (2, 1)
    params = conv.init(rng, 1, 4, kernel, dtype=np.float64)
    lengths = np.array([11, 6, 9], dtype=np.int32)
    x = _padded_batch(rng, 11, lengths, 1, 8)
    x[:, 1][6:] = 5.0  # garbage past the end must be ignored
    y, _ = conv.forward(params, x, lengths, stride, padding, backend=backend)
    out_lengths = conv.output_lengths(lengths, kernel, stride, padding)
    for b, L in enumerate(lengths):
        sequence = x[:L, b : b + 1].copy()  # (L, 1, C, F): the sequence on its own
        alone, _ = conv.forward(params, sequence, [L], stride, padding, backend=backend)
        assert alone.shape[0] == out_lengths[b]
        n = out_lengths[b]
        np.testing.assert_allclose(y[:n, b], alone[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [(2, 1), (1, 2)])
def test_chunked_unfold_equals_single_unfold(rng, monkeypatch, backend, stride):
    from npspeech.backends.numba_cpu import conv as numba_conv

    params = conv.init(rng, 2, 3, (3, 3), dtype=np.float64)
    lengths = np.array([9, 5])
    x = _padded_batch(rng, 9, lengths, 2, 6)
    whole_y, cache = conv.forward(params, x, lengths, stride, (0, 0), backend=backend)
    dy = rng.standard_normal(whole_y.shape)
    whole_dx, whole_grads = conv.backward(params, dy, cache, backend=backend)
    # one output frame per GEMM slice
    monkeypatch.setattr(ref_layers, "CONV_CHUNK_BYTES", 1)
    monkeypatch.setattr(numba_conv, "CONV_CHUNK_BYTES", 1)
    y, cache = conv.forward(params, x, lengths, stride, (0, 0), backend=backend)
    dx, grads = conv.backward(params, dy, cache, backend=backend)
    np.testing.assert_allclose(y, whole_y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, whole_dx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["W"], whole_grads["W"], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("stride", [(2, 1), (1, 1)])
def test_input_grad_false_skips_dx_only(rng, backend, stride):
    params = conv.init(rng, 2, 3, (3, 3), dtype=np.float64)
    lengths = np.array([9, 5])
    x = _padded_batch(rng, 9, lengths, 2, 6)
    y, cache = conv.forward(params, x, lengths, stride, (0, 0), backend=backend)
    dy = rng.standard_normal(y.shape)
    _, grads = conv.backward(params, dy, cache, backend=backend)
    dx, skipped = conv.backward(params, dy, cache, input_grad=False, backend=backend)
    assert dx is None
    for name in grads:
        np.testing.assert_array_equal(skipped[name], grads[name], err_msg=name)


@pytest.mark.parametrize("stride", [(2, 2), (1, 2)])
def test_backends_agree(rng, stride):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        params = conv.init(rng, 3, 4, (5, 3), dtype=dtype)
        lengths = np.array([12, 7])
        x = _padded_batch(rng, 12, lengths, 3, 10, dtype)
        results = {}
        for name in ("numpy", "numba"):
            y, cache = conv.forward(params, x, lengths, stride, (2, 1), backend=name)
            dy = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
            dx, grads = conv.backward(params, dy, cache, backend=name)
            assert y.dtype == dx.dtype == grads["W"].dtype == dtype
            results[name] = (y, dx, grads["W"], grads["b"])
        for ref, fast in zip(results["numpy"], results["numba"]):
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


def test_bad_arguments(rng):
    params = conv.init(rng, 2, 3, (3, 3))
    x = np.zeros((5, 1, 2, 4), np.float32)
    with pytest.raises(ConfigError, match="channels"):
        conv.forward(params, np.zeros((5, 1, 3, 4), np.float32), [5])
    with pytest.raises(ConfigError, match="smaller than the kernel"):
        conv.forward(params, np.zeros((2, 1, 2, 4), np.float32), [2])
    with pytest.raises(ConfigError, match="stride"):
        conv.forward(params, x, [5], stride=(0, 1))
    with pytest.raises(ConfigError, match="lengths"):
        conv.forward(params, x, [6])
    with pytest.raises(ConfigError, match="conv x is float64"):
        conv.forward(params, x.astype(np.float64), [5])
    _, cache = conv.forward(params, x, [5])
    with pytest.raises(ConfigError, match="conv dy"):
        conv.backward(params, np.zeros((5, 1, 3, 4), np.float32), cache)


def test_init_schemes(rng):
    params = conv.init(rng, 1, 32, (41, 11))
    assert params["W"].shape == (32, 1, 41, 11) and params["b"].shape == (32,)
    bound = 1 / np.sqrt(41 * 11)
    assert params["W"].dtype == np.float32 and np.abs(params["W"]).max() <= bound
    glorot = conv.init(rng, 32, 32, (21, 11), dtype=np.float64, scheme="glorot_uniform")
    assert np.abs(glorot["W"]).max() <= np.sqrt(6 / (2 * 32 * 21 * 11))
    np.testing.assert_array_equal(glorot["b"], 0.0)


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "C_in, C_out, kernel, stride, padding",
    [
        (1, 4, (9, 5), (2, 2), (4, 2)),  # DS2's first layer, scaled down
        (4, 4, (5, 5), (2, 1), (2, 2)),
        (4, 4, (5, 5), (1, 2), (2, 2)),  # DS2's second layer, scaled down
        (2, 3, (3, 2), (1, 3), (0, 1)),
    ],
)
def test_matches_torch_conv2d(
    rng, backend, dtype, C_in, C_out, kernel, stride, padding
):
    torch = pytest.importorskip("torch")
    T, B, F = 16, 2, 13
    params = conv.init(rng, C_in, C_out, kernel, dtype=dtype)
    x = rng.standard_normal((T, B, C_in, F)).astype(dtype)
    lengths = np.full(B, T)
    y, cache = conv.forward(params, x, lengths, stride, padding, backend=backend)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, grads = conv.backward(params, dy, cache, backend=backend)

    tx = torch.from_numpy(x.transpose(1, 2, 0, 3).copy()).requires_grad_(
        True
    )  # (B, C, T, F)
    tW = torch.from_numpy(params["W"]).requires_grad_(True)
    tb = torch.from_numpy(params["b"]).requires_grad_(True)
    ty = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding)
    ty.backward(torch.from_numpy(dy.transpose(1, 2, 0, 3).copy()))
    tol = _parity_tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(2, 0, 1, 3), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(2, 0, 1, 3), **tol)
    np.testing.assert_allclose(grads["W"], tW.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), **tol)


@pytest.mark.peers
def test_padded_sequence_matches_torch_on_its_own_frames(rng, backend):
    torch = pytest.importorskip("torch")
    kernel, stride, padding = (5, 3), (2, 1), (2, 1)
    params = conv.init(rng, 2, 3, kernel, dtype=np.float64)
    lengths = np.array([14, 9])
    x = _padded_batch(rng, 14, lengths, 2, 7)
    y, _ = conv.forward(params, x, lengths, stride, padding, backend=backend)
    alone = torch.from_numpy(x[:9, 1].transpose(1, 0, 2)[None].copy())  # (1, C, 9, F)
    expected = (
        torch.nn.functional.conv2d(
            alone,
            torch.from_numpy(params["W"]),
            torch.from_numpy(params["b"]),
            stride=stride,
            padding=padding,
        )[0]
        .numpy()
        .transpose(1, 0, 2)
    )  # (T', C_out, F')
    n = conv.output_lengths([9], kernel, stride, padding)[0]
    assert expected.shape[0] == n
    np.testing.assert_allclose(y[:n, 1], expected, rtol=0, atol=PARITY_ATOL_FLOAT64)
    assert np.all(y[n:, 1] == 0.0)


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 1)),
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_padding_invariance_property(kernel, stride, padding, lengths, seed):
    rng = np.random.default_rng(seed)
    T, F = max(max(lengths), kernel[0]), 5
    params = conv.init(rng, 1, 2, kernel, dtype=np.float64)
    x = rng.standard_normal((T, len(lengths), 1, F))  # garbage past each end as well
    y, _ = conv.forward(params, x, lengths, stride, padding, backend="numpy")
    out_lengths = conv.output_lengths(lengths, kernel, stride, padding)
    for b, L in enumerate(lengths):
        assert np.all(y[out_lengths[b] :, b] == 0.0)
        if out_lengths[b] == 0:
            continue
        alone, _ = conv.forward(params, x[:L, b : b + 1], [L], stride, padding)
        assert alone.shape[0] == out_lengths[b]
        np.testing.assert_allclose(
            y[: out_lengths[b], b], alone[:, 0], rtol=1e-12, atol=1e-12
        )
