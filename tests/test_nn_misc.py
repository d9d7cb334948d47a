"""Activations, log-softmax, dropout, lookahead convolution and initializers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import assert_gradient_close, random_projection
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    DROPOUT_RATE_ATOL,
    PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)

from npspeech.errors import ConfigError
from npspeech.nn import activations, dropout, init, lookahead


def _parity_tol(dtype) -> dict:
    if dtype == np.float64:
        return {"rtol": 0, "atol": PARITY_ATOL_FLOAT64}
    return {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}


def _away_from_kinks(rng, shape, kinks, scale):
    """Random values >= 1e-3 away from each kink, where finite differences are exact."""
    x = rng.uniform(-scale, scale, size=shape)
    for kink in kinks:
        near = np.abs(x - kink) < 1e-3
        x[near] += 2e-3
    return x


# --- clipped ReLU / hard-tanh -------------------------------------------------------


def test_clipped_relu_values_and_gradient(rng, backend):
    x = _away_from_kinks(rng, (5, 2, 4), kinks=(0.0, 20.0), scale=30.0)
    y, cache = activations.clipped_relu_forward(x, backend=backend)
    np.testing.assert_array_equal(y, np.minimum(np.maximum(x, 0.0), 20.0))
    R = random_projection(rng, x.shape)
    dx = activations.clipped_relu_backward(R, cache, backend=backend)

    def loss() -> float:
        return float(
            (activations.clipped_relu_forward(x, backend=backend)[0] * R).sum()
        )

    assert_gradient_close(dx, loss, x, name="dx")
    assert np.any(dx == 0.0) and np.any(dx != 0.0)  # both regimes were exercised


def test_hardtanh_gradient(rng, backend):
    x = _away_from_kinks(rng, (3, 7), kinks=(-1.0, 1.0), scale=2.0)
    R = random_projection(rng, x.shape)
    _, cache = activations.hardtanh_forward(x, -1.0, 1.0, backend=backend)
    dx = activations.hardtanh_backward(R, cache, backend=backend)

    def loss() -> float:
        return float(
            (activations.hardtanh_forward(x, -1.0, 1.0, backend=backend)[0] * R).sum()
        )

    assert_gradient_close(dx, loss, x, name="dx")


def test_clip_bad_bounds():
    with pytest.raises(ConfigError, match="low < high"):
        activations.hardtanh_forward(np.zeros(3), 1.0, 1.0)
    with pytest.raises(ConfigError, match="ceiling"):
        activations.clipped_relu_forward(np.zeros(3), ceiling=0.0)
    with pytest.raises(ConfigError, match="float32 or float64"):
        activations.clipped_relu_forward(np.zeros(3, dtype=np.int64))


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hardtanh_matches_torch(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    x = rng.uniform(-30, 30, size=(6, 3, 5)).astype(dtype)
    x[0, 0, :2] = (0.0, 20.0)  # the kinks themselves: PyTorch's slope there is 0
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = activations.hardtanh_forward(x, 0.0, 20.0, backend=backend)
    dx = activations.hardtanh_backward(dy, cache, backend=backend)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.functional.hardtanh(tx, 0.0, 20.0)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **_parity_tol(dtype))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **_parity_tol(dtype))


# --- log-softmax --------------------------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 1])
def test_log_softmax_gradient(rng, backend, axis):
    x = rng.standard_normal((3, 4, 5)) * 3
    R = random_projection(rng, x.shape)
    y, cache = activations.log_softmax_forward(x, axis=axis, backend=backend)
    np.testing.assert_allclose(np.exp(y).sum(axis=axis), 1.0, rtol=1e-12)
    dx = activations.log_softmax_backward(R, cache, backend=backend)

    def loss() -> float:
        y, _ = activations.log_softmax_forward(x, axis=axis, backend=backend)
        return float((y * R).sum())

    assert_gradient_close(dx, loss, x, name="dx")


def test_log_softmax_stable_for_large_logits(backend):
    x = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    y, _ = activations.log_softmax_forward(x, backend=backend)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0, :2], [0.0, -1000.0], atol=1e-3)


def test_log_softmax_lengths_zero_padded_frames(rng, backend):
    x = rng.standard_normal((4, 2, 3))
    lengths = np.array([4, 2])
    R = random_projection(rng, x.shape)
    y, cache = activations.log_softmax_forward(x, lengths=lengths, backend=backend)
    assert np.all(y[2:, 1] == 0.0) and np.all(y[:, 0] < 0.0)
    dx = activations.log_softmax_backward(R, cache, backend=backend)
    assert np.all(dx[2:, 1] == 0.0)

    def loss() -> float:
        y, _ = activations.log_softmax_forward(x, lengths=lengths, backend=backend)
        return float((y * R).sum())

    assert_gradient_close(dx, loss, x, name="dx")


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_softmax_matches_torch(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((5, 3, 29)) * 4).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = activations.log_softmax_forward(x, backend=backend)
    dx = activations.log_softmax_backward(dy, cache, backend=backend)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.log_softmax(tx, dim=-1)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), **_parity_tol(dtype))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **_parity_tol(dtype))


def test_activation_backends_agree(rng):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        x = (rng.standard_normal((6, 3, 11)) * 10).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        out = {}
        for name in ("numpy", "numba"):
            y1, c1 = activations.clipped_relu_forward(x, backend=name)
            y2, c2 = activations.log_softmax_forward(x, backend=name)
            out[name] = (
                y1,
                activations.clipped_relu_backward(dy, c1, backend=name),
                y2,
                activations.log_softmax_backward(dy, c2, backend=name),
            )
            assert all(a.dtype == dtype for a in out[name])
        for ref, fast in zip(out["numpy"], out["numba"]):
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


# --- dropout ------------------------------------------------------------------------


def test_dropout_is_inverted_and_seeded(backend):
    x = np.ones((200, 50), dtype=np.float32)
    y, cache = dropout.dropout_forward(
        x, 0.25, np.random.default_rng(7), backend=backend
    )
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(kept.mean() - 0.75) < DROPOUT_RATE_ATOL
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    again, _ = dropout.dropout_forward(
        x, 0.25, np.random.default_rng(7), backend=backend
    )
    np.testing.assert_array_equal(again, y)
    other, _ = dropout.dropout_forward(
        x, 0.25, np.random.default_rng(8), backend=backend
    )
    assert np.any(other != y)
    dy = np.full_like(x, 2.0)
    dx = dropout.dropout_backward(dy, cache, backend=backend)
    np.testing.assert_array_equal(
        dx, np.where(kept, 2.0 / 0.75, 0.0).astype(np.float32)
    )


def test_dropout_gradient(rng, backend):
    x = rng.standard_normal((4, 3, 5))
    R = random_projection(rng, x.shape)
    _, cache = dropout.dropout_forward(
        x, 0.4, np.random.default_rng(3), backend=backend
    )
    dx = dropout.dropout_backward(R, cache, backend=backend)

    def loss() -> float:
        y, _ = dropout.dropout_forward(
            x, 0.4, np.random.default_rng(3), backend=backend
        )
        return float((y * R).sum())

    assert_gradient_close(dx, loss, x, name="dx")


def test_dropout_identity_at_inference_and_rate_zero(rng, backend):
    x = rng.standard_normal((3, 4))
    for rate, training in ((0.5, False), (0.0, True)):
        y, cache = dropout.dropout_forward(
            x, rate, None, training=training, backend=backend
        )
        np.testing.assert_array_equal(y, x)
        dy = rng.standard_normal(x.shape)
        np.testing.assert_array_equal(dropout.dropout_backward(dy, cache), dy)


def test_dropout_bad_arguments():
    with pytest.raises(ConfigError, match="rate"):
        dropout.dropout_forward(np.zeros(3), 1.0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="rng"):
        dropout.dropout_forward(np.zeros(3), 0.5, None)


# --- initializers -------------------------------------------------------------------


def test_fans_of_dense_and_conv_layouts():
    assert init.fans((494, 2048)) == (494, 2048)
    assert init.fans((32, 1, 41, 11)) == (1 * 41 * 11, 32 * 41 * 11)
    assert init.fans((7,)) == (7, 7)
    with pytest.raises(ConfigError):
        init.fans(())


def test_glorot_uniform_bounds_and_variance(rng):
    W = init.glorot_uniform(rng, (400, 600), np.float64)
    limit = np.sqrt(6.0 / 1000)
    assert W.dtype == np.float64 and np.abs(W).max() <= limit
    # U(-a, a) has variance a^2 / 3 = 2 / (fan_in + fan_out)
    np.testing.assert_allclose(W.var(), 2.0 / 1000, rtol=0.02)


def test_pytorch_uniform_bounds_and_variance(rng):
    W = init.pytorch_uniform(rng, (512, 300), fan=256, dtype=np.float32)
    assert W.dtype == np.float32 and np.abs(W).max() <= 1 / 16
    np.testing.assert_allclose(W.var(), 1.0 / (3 * 256), rtol=0.02)
    with pytest.raises(ConfigError, match="fan"):
        init.pytorch_uniform(rng, (3,), fan=0)


@pytest.mark.peers
def test_pytorch_uniform_matches_torch_linear_and_conv(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    linear = torch.nn.Linear(300, 200)
    conv = torch.nn.Conv2d(8, 32, (5, 3))
    for layer, fan in ((linear, 300), (conv, 8 * 5 * 3)):
        ours = init.pytorch_uniform(rng, tuple(layer.weight.shape), fan, np.float64)
        theirs = layer.weight.detach().numpy().astype(np.float64)
        # same support and the same (uniform) variance
        np.testing.assert_allclose(np.abs(ours).max(), np.abs(theirs).max(), rtol=0.02)
        np.testing.assert_allclose(ours.var(), theirs.var(), rtol=0.1)
        ours_b = init.pytorch_uniform(rng, tuple(layer.bias.shape), fan, np.float64)
        assert np.abs(ours_b).max() <= 1 / np.sqrt(fan)
        assert layer.bias.abs().max().item() <= 1 / np.sqrt(fan)


# --- lookahead convolution ----------------------------------------------------------


def _lookahead_by_definition(x, lengths, W):
    """y[t, b, f] = sum_k W[k, f] x[t + k, b, f] over frames inside the sequence."""
    T, B, F = x.shape
    y = np.zeros_like(x)
    for b in range(B):
        for t in range(lengths[b]):
            for k in range(W.shape[0]):
                if t + k < lengths[b]:
                    y[t, b] += W[k] * x[t + k, b]
    return y


def test_lookahead_forward_by_definition(rng, backend):
    params = lookahead.init(rng, 4, context=3, dtype=np.float64)
    assert params["W"].shape == (4, 4)
    lengths = np.array([6, 2, 5])
    x = rng.standard_normal((6, 3, 4))
    x[2:, 1] = 9.0  # garbage past the end counts as zero
    y, _ = lookahead.forward(params, x, lengths, backend=backend)
    clean = x.copy()
    clean[2:, 1] = 0.0
    np.testing.assert_allclose(
        y, _lookahead_by_definition(clean, lengths, params["W"]), rtol=1e-12
    )


@pytest.mark.parametrize("context", [0, 2, 8])
def test_lookahead_gradients(rng, backend, context):
    params = lookahead.init(rng, 3, context, dtype=np.float64)
    lengths = np.array([5, 3])
    x = rng.standard_normal((5, 2, 3))
    x[3:, 1] = 0.0
    R = random_projection(rng, x.shape)

    def loss() -> float:
        return float(
            (lookahead.forward(params, x, lengths, backend=backend)[0] * R).sum()
        )

    _, cache = lookahead.forward(params, x, lengths, backend=backend)
    dx, grads = lookahead.backward(params, R, cache, backend=backend)
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["W"], loss, params["W"], name="dW")
    assert np.all(dx[3:, 1] == 0.0)


def test_lookahead_backends_agree(rng):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        params = lookahead.init(rng, 8, 4, dtype=dtype)
        lengths = np.array([20, 13, 1, 0])
        x = rng.standard_normal((20, 4, 8)).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        results = {}
        for name in ("numpy", "numba"):
            y, cache = lookahead.forward(params, x, lengths, backend=name)
            dx, grads = lookahead.backward(params, dy, cache, backend=name)
            assert y.dtype == dx.dtype == grads["W"].dtype == dtype
            results[name] = (y, dx, grads["W"])
        for ref, fast in zip(results["numpy"], results["numba"]):
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


def test_lookahead_bad_arguments(rng):
    params = lookahead.init(rng, 3, 2)
    with pytest.raises(ConfigError, match="features"):
        lookahead.forward(params, np.zeros((4, 1, 5), np.float32), [4])
    with pytest.raises(ConfigError, match="context"):
        lookahead.init(rng, 3, -1)
    with pytest.raises(ConfigError, match="lookahead W is float32"):
        lookahead.forward(params, np.zeros((4, 1, 3)), [4])


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lookahead_matches_torch_depthwise_conv1d(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    T, B, F, context = 9, 2, 5, 3
    params = lookahead.init(rng, F, context, dtype=dtype)
    x = rng.standard_normal((T, B, F)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = lookahead.forward(params, x, np.full(B, T), backend=backend)
    dx, grads = lookahead.backward(params, dy, cache, backend=backend)
    # depthwise conv over (B, F, T) padded with `context` zeros at the end
    tx = torch.from_numpy(x.transpose(1, 2, 0).copy()).requires_grad_(True)
    tW = torch.from_numpy(params["W"].T[:, None, :].copy()).requires_grad_(
        True
    )  # (F, 1, k)
    ty = torch.nn.functional.conv1d(
        torch.nn.functional.pad(tx, (0, context)), tW, groups=F
    )
    ty.backward(torch.from_numpy(dy.transpose(1, 2, 0).copy()))
    tol = _parity_tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(2, 0, 1), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(2, 0, 1), **tol)
    np.testing.assert_allclose(grads["W"], tW.grad.numpy()[:, 0, :].T, **tol)
