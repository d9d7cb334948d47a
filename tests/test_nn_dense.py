"""Dense layer: gradients, PyTorch parity, padding, backends and argument errors."""

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
from npspeech.nn import dense


def test_gradients_time_major_with_padding(rng, backend):
    T, B, F_in, F_out = 4, 3, 5, 3
    params = dense.init(rng, F_in, F_out, dtype=np.float64, scheme="pytorch")
    lengths = np.array([4, 1, 3], dtype=np.int32)
    x = rng.standard_normal((T, B, F_in))
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0.0
    R = random_projection(rng, (T, B, F_out))

    def loss() -> float:
        y, _ = dense.forward(params, x, lengths, backend=backend)
        return float((y * R).sum())

    y, cache = dense.forward(params, x, lengths, backend=backend)
    dx, grads = dense.backward(params, R, cache, backend=backend)
    assert set(grads) == {"W", "b"}
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["W"], loss, params["W"], name="dW")
    assert_gradient_close(grads["b"], loss, params["b"], name="db")
    # padded output frames are zero (they would hold b otherwise)
    assert np.all(y[1:, 1] == 0.0) and np.all(y[3:, 2] == 0.0)
    assert np.any(y[0, 1] != 0.0)


def test_gradients_rows(rng, backend):
    params = dense.init(rng, 4, 2, dtype=np.float64)
    x = rng.standard_normal((6, 4))
    R = random_projection(rng, (6, 2))

    def loss() -> float:
        return float((dense.forward(params, x, backend=backend)[0] * R).sum())

    _, cache = dense.forward(params, x, backend=backend)
    dx, grads = dense.backward(params, R, cache, backend=backend)
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["W"], loss, params["W"], name="dW")
    assert_gradient_close(grads["b"], loss, params["b"], name="db")


def test_input_grad_false_skips_dx_only(rng, backend):
    params = dense.init(rng, 4, 3, dtype=np.float64)
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 3))
    _, cache = dense.forward(params, x, np.array([5, 3]), backend=backend)
    _, grads = dense.backward(params, dy, cache, backend=backend)
    dx, skipped = dense.backward(params, dy, cache, input_grad=False, backend=backend)
    assert dx is None
    for name in grads:
        np.testing.assert_array_equal(skipped[name], grads[name], err_msg=name)


def test_backends_agree_and_keep_dtype(rng):
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        _assert_backends_agree(rng, dtype, rtol, atol, 7, 5)
        # wide enough for the numba backend's tiled weight gradient (with a row
        # remainder and a column tail)
        _assert_backends_agree(rng, dtype, rtol, atol, 13, 40)
        # the layer with its clip
        _assert_backends_agree(rng, dtype, rtol, atol, 13, 40, clip=(0.0, 1.0))


def _assert_backends_agree(rng, dtype, rtol, atol, n_in, n_out, clip=None):
    """Both backends, forward and backward, on a padded (6, 2, n_in) batch."""
    params = dense.init(rng, n_in, n_out, dtype=dtype, scheme="pytorch")
    x = (rng.standard_normal((6, 2, n_in)) * 2.0).astype(dtype)
    dy = rng.standard_normal((6, 2, n_out)).astype(dtype)
    lengths = np.array([6, 3])
    results = []
    for name in ("numpy", "numba"):
        y, cache = dense.forward(params, x, lengths, clip=clip, backend=name)
        dx, grads = dense.backward(params, dy, cache, backend=name)
        assert y.dtype == dx.dtype == grads["W"].dtype == grads["b"].dtype == dtype
        results.append((y, dx, grads["W"], grads["b"]))
    for ref, fast in zip(*results):
        np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)


def test_input_is_not_mutated(rng):
    params = dense.init(rng, 3, 2, dtype=np.float64)
    x = rng.standard_normal((2, 2, 3))
    before = x.copy(), params["W"].copy()
    y, cache = dense.forward(params, x, np.array([2, 1]))
    dy = np.ones_like(y)
    dense.backward(params, dy, cache)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(params["W"], before[1])
    np.testing.assert_array_equal(dy, np.ones_like(y))


def test_init_schemes(rng):
    glorot = dense.init(rng, 300, 200)
    limit = np.sqrt(6.0 / 500)
    assert glorot["W"].dtype == np.float32 and glorot["W"].shape == (300, 200)
    assert np.abs(glorot["W"]).max() <= limit
    assert np.abs(glorot["W"]).max() > 0.95 * limit  # spans the range
    np.testing.assert_array_equal(glorot["b"], 0.0)  # DeepSpeech's zero bias
    torch_like = dense.init(rng, 300, 200, dtype=np.float64, scheme="pytorch")
    bound = 1 / np.sqrt(300)
    assert (
        np.abs(torch_like["W"]).max() <= bound
        and np.abs(torch_like["b"]).max() <= bound
    )
    assert np.abs(torch_like["b"]).max() > 0.5 * bound
    with pytest.raises(ConfigError, match="scheme"):
        dense.init(rng, 3, 2, scheme="he")


def test_bad_arguments_name_the_argument(rng):
    params = dense.init(rng, 3, 2)
    with pytest.raises(ConfigError, match="input features"):
        dense.forward(params, np.zeros((4, 1, 5), np.float32))
    with pytest.raises(ConfigError, match="dense x is float64"):
        dense.forward(params, np.zeros((4, 1, 3)))
    with pytest.raises(ConfigError, match="lengths"):
        dense.forward(params, np.zeros((4, 1, 3), np.float32), np.array([5]))
    with pytest.raises(ConfigError, match="dense x"):
        dense.forward(params, np.zeros(3, np.float32))
    _, cache = dense.forward(params, np.zeros((4, 1, 3), np.float32))
    with pytest.raises(ConfigError, match="dense dy"):
        dense.backward(params, np.zeros((4, 1, 3), np.float32), cache)


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch_linear(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    T, B, F_in, F_out = 5, 3, 6, 4
    params = dense.init(rng, F_in, F_out, dtype=dtype, scheme="pytorch")
    x = rng.standard_normal((T, B, F_in)).astype(dtype)
    dy = rng.standard_normal((T, B, F_out)).astype(dtype)
    y, cache = dense.forward(params, x, backend=backend)
    dx, grads = dense.backward(params, dy, cache, backend=backend)

    linear = torch.nn.Linear(F_in, F_out).to(
        torch.float64 if dtype == np.float64 else torch.float32
    )
    with torch.no_grad():
        linear.weight.copy_(
            torch.from_numpy(params["W"].T.copy())
        )  # torch: (F_out, F_in)
        linear.bias.copy_(torch.from_numpy(params["b"]))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = linear(tx)
    ty.backward(torch.from_numpy(dy))
    if dtype == np.float64:
        tol = {"rtol": 0, "atol": PARITY_ATOL_FLOAT64}
    else:
        tol = {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grads["W"], linear.weight.grad.numpy().T, **tol)
    np.testing.assert_allclose(grads["b"], linear.bias.grad.numpy(), **tol)


# --- the layer with its clip (clipped ReLU, hard-tanh) in one operation ---------------

CLIPS = [(0.0, 1.5), (-1.0, 1.0)]


@pytest.mark.parametrize("clip", CLIPS, ids=["clipped_relu", "hardtanh"])
def test_clipped_gradients_with_padding(rng, backend, clip):
    T, B, F_in, F_out = 4, 3, 5, 6
    params = dense.init(rng, F_in, F_out, dtype=np.float64, scheme="pytorch")
    lengths = np.array([4, 1, 3], dtype=np.int32)
    x = rng.standard_normal((T, B, F_in)) * 2.0
    R = random_projection(rng, (T, B, F_out))
    y, cache = dense.forward(params, x, lengths, clip=clip, backend=backend)
    # finite differences need every pre-activation away from the kinks
    pre = x @ params["W"] + params["b"]
    assert np.min(np.abs(pre[..., None] - np.array(clip))) > 1e-4
    # some values clipped at each bound, some inside: every branch is exercised
    valid = np.arange(T)[:, None] < lengths
    assert (pre[valid] < clip[0]).any() and (pre[valid] > clip[1]).any()
    assert ((pre[valid] > clip[0]) & (pre[valid] < clip[1])).any()

    def loss() -> float:
        out, _ = dense.forward(params, x, lengths, clip=clip, backend=backend)
        return float((out * R).sum())

    dx, grads = dense.backward(params, R, cache, backend=backend)
    assert_gradient_close(dx, loss, x, name="dx")
    assert_gradient_close(grads["W"], loss, params["W"], name="dW")
    assert_gradient_close(grads["b"], loss, params["b"], name="db")
    assert not y[~valid].any() and not dx[~valid].any()
    assert y.min() >= clip[0] and y.max() <= clip[1]


@pytest.mark.parametrize("clip", CLIPS, ids=["clipped_relu", "hardtanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_equals_layer_then_activation(rng, backend, clip, dtype):
    """The same bits as the dense layer followed by the activation on its own."""
    from npspeech.nn import activations

    T, B, F_in, F_out = 9, 4, 13, 40  # wide enough for the tiled weight gradient
    params = dense.init(rng, F_in, F_out, dtype=dtype, scheme="pytorch")
    lengths = np.array([9, 2, 7, 9], dtype=np.int32)
    x = (rng.standard_normal((T, B, F_in)) * 2.0).astype(dtype)
    dy = rng.standard_normal((T, B, F_out)).astype(dtype)
    y, cache = dense.forward(params, x, lengths, clip=clip, backend=backend)
    dx, grads = dense.backward(params, dy, cache, backend=backend)

    h, dense_cache = dense.forward(params, x, lengths, backend=backend)
    y_apart, clip_cache = activations.hardtanh_forward(h, *clip, backend=backend)
    dh = activations.hardtanh_backward(dy, clip_cache, backend=backend)
    dx_apart, grads_apart = dense.backward(params, dh, dense_cache, backend=backend)
    np.testing.assert_array_equal(y, y_apart)
    np.testing.assert_array_equal(dx, dx_apart)
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads_apart[name], err_msg=name)


def test_clipped_numba_threads_split_the_rows(rng):
    """Above the kernels' parallel threshold (2**20 values) the bias-and-clip pass and
    the gradient pass split the rows over the threads: the same results as NumPy."""
    params = dense.init(rng, 8, 512, scheme="pytorch")
    x = (rng.standard_normal((2100, 1, 8)) * 2.0).astype(np.float32)
    dy = rng.standard_normal((2100, 1, 512)).astype(np.float32)
    results = []
    for name in ("numpy", "numba"):
        y, cache = dense.forward(params, x, clip=(0.0, 1.0), backend=name)
        dx, grads = dense.backward(params, dy, cache, backend=name)
        results.append((y, dx, grads["W"], grads["b"]))
    for ref, fast in zip(*results):
        np.testing.assert_allclose(
            fast, ref, rtol=BACKEND_RTOL_FLOAT32, atol=10 * BACKEND_ATOL_FLOAT32
        )


def test_clip_bounds_must_be_ordered(rng):
    params = dense.init(rng, 3, 2)
    with pytest.raises(ConfigError, match="dense clip"):
        dense.forward(params, np.zeros((4, 1, 3), np.float32), clip=(1.0, 1.0))
