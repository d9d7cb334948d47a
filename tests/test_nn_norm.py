"""Batch norm over valid frames and layer norm: gradients, running stats, PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import assert_gradient_close, random_projection
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)

from npspeech.errors import ConfigError
from npspeech.nn import norm

LENGTHS = np.array([5, 2, 4], dtype=np.int32)


def _padded(rng, shape, lengths, dtype=np.float64, offset=0.0):
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    x[np.arange(shape[0])[:, None] >= lengths[None, :]] = 0.0
    return x


def _random_params(rng, n, dtype=np.float64):
    """Batch-norm parameters and running statistics away from their initial values."""
    params = {
        "gamma": rng.uniform(0.5, 1.5, n).astype(dtype),
        "beta": rng.standard_normal(n).astype(dtype),
    }
    state = {
        "running_mean": rng.standard_normal(n).astype(dtype),
        "running_var": rng.uniform(0.5, 2, n).astype(dtype),
    }
    return params, state


def test_batch_norm_init():
    params, state = norm.batch_norm_init(3, np.float64)
    np.testing.assert_array_equal(params["gamma"], 1.0)
    np.testing.assert_array_equal(params["beta"], 0.0)
    np.testing.assert_array_equal(state["running_mean"], 0.0)
    np.testing.assert_array_equal(state["running_var"], 1.0)
    assert all(a.dtype == np.float64 for a in (*params.values(), *state.values()))
    assert norm.layer_norm_init(5)["gamma"].dtype == np.float32


def _parity_tol(dtype) -> dict:
    if dtype == np.float64:
        return {"rtol": 0, "atol": PARITY_ATOL_FLOAT64}
    return {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}


@pytest.mark.parametrize("conv", [False, True], ids=["sequence", "conv"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradients_padded(rng, backend, conv, training):
    shape = (5, 3, 2, 3) if conv else (5, 3, 4)
    forward = norm.batch_norm_conv_forward if conv else norm.batch_norm_forward
    backward = norm.batch_norm_conv_backward if conv else norm.batch_norm_backward
    params, state = _random_params(rng, shape[2])
    x = _padded(rng, shape, LENGTHS, offset=1.0)
    R = random_projection(rng, shape)

    def loss() -> float:
        y, _, _ = forward(params, state, x, LENGTHS, training=training, backend=backend)
        return float((y * R).sum())

    y, cache, _ = forward(params, state, x, LENGTHS, training=training, backend=backend)
    dx, grads = backward(params, R, cache, backend=backend)
    assert set(grads) == {"gamma", "beta"}
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["gamma"], loss, params["gamma"], name="dgamma")
    assert_gradient_close(grads["beta"], loss, params["beta"], name="dbeta")
    for b, n in enumerate(LENGTHS):
        assert np.all(y[n:, b] == 0.0) and np.all(dx[n:, b] == 0.0)


def test_batch_norm_statistics_and_state(rng, backend):
    x = _padded(rng, (6, 3, 4), LENGTHS, offset=3.0)
    params, state = norm.batch_norm_init(4, np.float64)
    before = {k: v.copy() for k, v in state.items()}
    y, _, new_state = norm.batch_norm_forward(
        params, state, x, LENGTHS, momentum=0.2, backend=backend
    )
    valid = x[np.arange(6)[:, None] < LENGTHS[None, :]]  # (sum L, F)
    # normalised over the valid frames only: zero mean, unit (biased) variance
    out = y[np.arange(6)[:, None] < LENGTHS[None, :]]
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1.0, rtol=1e-4)  # eps = 1e-5
    np.testing.assert_allclose(
        new_state["running_mean"], 0.2 * valid.mean(axis=0), rtol=1e-12
    )
    np.testing.assert_allclose(
        new_state["running_var"], 0.8 + 0.2 * valid.var(axis=0, ddof=1), rtol=1e-12
    )
    for key in state:  # the old state is untouched
        np.testing.assert_array_equal(state[key], before[key])


def test_batch_norm_ignores_padding_contents(rng, backend):
    x = _padded(rng, (5, 3, 4), LENGTHS)
    params, state = _random_params(rng, 4)
    garbage = x.copy()
    garbage[3:, 1] = 7.0
    for training in (True, False):
        clean = norm.batch_norm_forward(
            params, state, x, LENGTHS, training, backend=backend
        )
        dirty = norm.batch_norm_forward(
            params, state, garbage, LENGTHS, training, backend=backend
        )
        np.testing.assert_array_equal(dirty[0], clean[0])
        for key in clean[2]:
            np.testing.assert_array_equal(dirty[2][key], clean[2][key])


def test_eval_mode_is_batch_invariant(rng, backend):
    params, state = _random_params(rng, 3)
    x = _padded(rng, (6, 3, 3), np.array([6, 3, 5]))
    y, _, new_state = norm.batch_norm_forward(
        params, state, x, [6, 3, 5], training=False, backend=backend
    )
    for b, L in enumerate((6, 3, 5)):
        alone, _, _ = norm.batch_norm_forward(
            params, state, x[:L, b : b + 1].copy(), [L], training=False, backend=backend
        )
        np.testing.assert_allclose(y[:L, b], alone[:, 0], rtol=1e-13, atol=1e-13)
    for key in state:
        np.testing.assert_array_equal(new_state[key], state[key])


def test_batch_norm_backends_agree(rng):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        x = _padded(rng, (7, 3, 4, 5), LENGTHS, dtype, offset=2.0)
        dy = rng.standard_normal(x.shape).astype(dtype)
        params, state = _random_params(rng, 4, dtype)
        results = {}
        for name in ("numpy", "numba"):
            y, cache, new_state = norm.batch_norm_conv_forward(
                params, state, x, LENGTHS, backend=name
            )
            dx, grads = norm.batch_norm_conv_backward(params, dy, cache, backend=name)
            assert (
                y.dtype
                == dx.dtype
                == grads["gamma"].dtype
                == new_state["running_var"].dtype
                == dtype
            )
            results[name] = (y, dx, grads["gamma"], grads["beta"], *new_state.values())
        for ref, fast in zip(results["numpy"], results["numba"]):
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


def test_batch_norm_bad_arguments(rng):
    params, state = norm.batch_norm_init(4)
    x = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(ConfigError, match="more than one valid value"):
        norm.batch_norm_forward(params, state, x, [1, 0])
    with pytest.raises(ConfigError, match="gamma"):
        norm.batch_norm_forward(params, state, np.zeros((3, 2, 5), np.float32), [3, 3])
    with pytest.raises(ConfigError, match="running_var"):
        norm.batch_norm_forward(
            params, {"running_mean": state["running_mean"]}, x, [3, 3]
        )
    with pytest.raises(ConfigError, match="float64"):
        norm.batch_norm_forward(params, state, x.astype(np.float64), [3, 3])
    with pytest.raises(ConfigError, match="momentum"):
        norm.batch_norm_forward(params, state, x, [3, 3], momentum=1.5)
    with pytest.raises(ConfigError, match="batch_norm_conv x"):
        norm.batch_norm_conv_forward(params, state, x, [3, 3])


# --- layer norm ----------------------------------------------------------------------


def test_layer_norm_gradients(rng, backend):
    params = {"gamma": rng.uniform(0.5, 1.5, 6), "beta": rng.standard_normal(6)}
    x = rng.standard_normal((4, 3, 6)) * 3 + 1
    R = random_projection(rng, x.shape)
    lengths = np.array([4, 2, 3])

    def loss() -> float:
        return float(
            (norm.layer_norm_forward(params, x, lengths, backend=backend)[0] * R).sum()
        )

    y, cache = norm.layer_norm_forward(params, x, lengths, backend=backend)
    assert np.all(y[2:, 1] == 0.0)
    dx, grads = norm.layer_norm_backward(params, R, cache, backend=backend)
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["gamma"], loss, params["gamma"], name="dgamma")
    assert_gradient_close(grads["beta"], loss, params["beta"], name="dbeta")


def test_layer_norm_backends_agree(rng):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        params = {k: v.astype(dtype) for k, v in norm.layer_norm_init(9).items()}
        params["beta"] += dtype(0.5)
        x = (rng.standard_normal((5, 2, 9)) * 4).astype(dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        results = {}
        for name in ("numpy", "numba"):
            y, cache = norm.layer_norm_forward(params, x, backend=name)
            dx, grads = norm.layer_norm_backward(params, dy, cache, backend=name)
            assert y.dtype == dx.dtype == grads["gamma"].dtype == dtype
            results[name] = (y, dx, grads["gamma"], grads["beta"])
        for ref, fast in zip(results["numpy"], results["numba"]):
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


# --- PyTorch parity ------------------------------------------------------------------


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_sequence_batch_norm_matches_torch_on_valid_frames(
    rng, backend, dtype, training
):
    torch = pytest.importorskip("torch")
    F = 5
    x = _padded(rng, (6, 3, F), LENGTHS, dtype, offset=1.5)
    dy = rng.standard_normal(x.shape).astype(dtype)
    params, state = _random_params(rng, F, dtype)
    y, cache, new_state = norm.batch_norm_forward(
        params, state, x, LENGTHS, training=training, momentum=0.3, backend=backend
    )
    dx, grads = norm.batch_norm_backward(params, dy, cache, backend=backend)

    valid = np.arange(6)[:, None] < LENGTHS[None, :]  # (T, B)
    layer = torch.nn.BatchNorm1d(F, momentum=0.3).to(torch.from_numpy(x).dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(params["gamma"]))
        layer.bias.copy_(torch.from_numpy(params["beta"]))
        layer.running_mean.copy_(torch.from_numpy(state["running_mean"]))
        layer.running_var.copy_(torch.from_numpy(state["running_var"]))
    layer.train(training)
    tx = torch.from_numpy(x[valid]).requires_grad_(True)  # (N valid frames, F)
    ty = layer(tx)
    ty.backward(torch.from_numpy(dy[valid]))
    tol = _parity_tol(dtype)
    np.testing.assert_allclose(y[valid], ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx[valid], tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["gamma"], layer.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["beta"], layer.bias.grad.numpy(), **tol)
    np.testing.assert_allclose(
        new_state["running_mean"], layer.running_mean.numpy(), **tol
    )
    np.testing.assert_allclose(
        new_state["running_var"], layer.running_var.numpy(), **tol
    )


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_conv_batch_norm_matches_torch_batchnorm2d(rng, backend, dtype, training):
    torch = pytest.importorskip("torch")
    T, B, C, F = 6, 2, 3, 4
    lengths = np.full(B, T)
    x = _padded(rng, (T, B, C, F), lengths, dtype, offset=-1.0)
    dy = rng.standard_normal(x.shape).astype(dtype)
    params, state = _random_params(rng, C, dtype)
    y, cache, new_state = norm.batch_norm_conv_forward(
        params, state, x, lengths, training=training, backend=backend
    )
    dx, grads = norm.batch_norm_conv_backward(params, dy, cache, backend=backend)

    layer = torch.nn.BatchNorm2d(C).to(torch.from_numpy(x).dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(params["gamma"]))
        layer.bias.copy_(torch.from_numpy(params["beta"]))
        layer.running_mean.copy_(torch.from_numpy(state["running_mean"]))
        layer.running_var.copy_(torch.from_numpy(state["running_var"]))
    layer.train(training)
    tx = torch.from_numpy(x.transpose(1, 2, 0, 3).copy()).requires_grad_(
        True
    )  # (B, C, T, F)
    ty = layer(tx)
    ty.backward(torch.from_numpy(dy.transpose(1, 2, 0, 3).copy()))
    tol = _parity_tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(2, 0, 1, 3), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(2, 0, 1, 3), **tol)
    np.testing.assert_allclose(grads["gamma"], layer.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["beta"], layer.bias.grad.numpy(), **tol)
    np.testing.assert_allclose(
        new_state["running_mean"], layer.running_mean.numpy(), **tol
    )
    np.testing.assert_allclose(
        new_state["running_var"], layer.running_var.numpy(), **tol
    )


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_batch_norm_padded_matches_torch_on_valid_frames(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    C, F = 2, 3
    x = _padded(rng, (5, 3, C, F), LENGTHS, dtype)
    params, state = _random_params(rng, C, dtype)
    y, _, new_state = norm.batch_norm_conv_forward(
        params, state, x, LENGTHS, backend=backend
    )
    valid = np.arange(5)[:, None] < LENGTHS[None, :]
    # channel statistics over valid frames and frequencies = BatchNorm1d on (N*F, C)
    rows = x[valid].transpose(0, 2, 1).reshape(-1, C)
    layer = torch.nn.BatchNorm1d(C).to(torch.from_numpy(x).dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(params["gamma"]))
        layer.bias.copy_(torch.from_numpy(params["beta"]))
        layer.running_mean.copy_(torch.from_numpy(state["running_mean"]))
        layer.running_var.copy_(torch.from_numpy(state["running_var"]))
    expected = layer(torch.from_numpy(rows)).detach().numpy()
    got = y[valid].transpose(0, 2, 1).reshape(-1, C)
    np.testing.assert_allclose(got, expected, **_parity_tol(dtype))
    np.testing.assert_allclose(
        new_state["running_var"], layer.running_var.numpy(), **_parity_tol(dtype)
    )


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm_matches_torch(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    F = 7
    params = {
        "gamma": rng.uniform(0.5, 1.5, F).astype(dtype),
        "beta": rng.standard_normal(F).astype(dtype),
    }
    x = (rng.standard_normal((4, 3, F)) * 3 + 2).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = norm.layer_norm_forward(params, x, backend=backend)
    dx, grads = norm.layer_norm_backward(params, dy, cache, backend=backend)
    layer = torch.nn.LayerNorm(F).to(torch.from_numpy(x).dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(params["gamma"]))
        layer.bias.copy_(torch.from_numpy(params["beta"]))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = layer(tx)
    ty.backward(torch.from_numpy(dy))
    tol = _parity_tol(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["gamma"], layer.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["beta"], layer.bias.grad.numpy(), **tol)
