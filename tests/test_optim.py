"""Optimizers, gradient clipping and schedules: their equations and torch.optim."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)

from npspeech import optim
from npspeech.errors import ConfigError


def _params(rng, dtype=np.float64) -> dict[str, np.ndarray]:
    return {
        "W": rng.standard_normal((4, 3)).astype(dtype),
        "b": rng.standard_normal(3).astype(dtype),
        "layer.gamma": rng.standard_normal((2, 2, 2)).astype(dtype),
    }


def _grad_sequence(rng, params, steps: int) -> list[dict[str, np.ndarray]]:
    return [
        {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
        for _ in range(steps)
    ]


def _parity_tol(dtype) -> dict:
    if dtype == np.float64:
        return {"rtol": 0, "atol": PARITY_ATOL_FLOAT64}
    return {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}


def test_adam_first_step_by_hand(backend):
    # After one step the bias-corrected moments are g and g^2, so the step is
    # lr * g / (|g| + eps): -lr * sign(g) for |g| >> eps.
    params = {"w": np.array([1.0, -2.0, 0.5])}
    grads = {"w": np.array([0.3, -4.0, 1e-3])}
    new, state = optim.adam_step(
        params, grads, optim.adam_init(params), 0.1, backend=backend
    )
    expected = params["w"] - 0.1 * grads["w"] / (np.abs(grads["w"]) + 1e-8)
    np.testing.assert_allclose(new["w"], expected, rtol=1e-12)
    assert state["step"] == 1
    np.testing.assert_allclose(state["exp_avg.w"], 0.1 * grads["w"], rtol=1e-12)
    np.testing.assert_allclose(
        state["exp_avg_sq.w"], 0.001 * grads["w"] ** 2, rtol=1e-12
    )


def test_adamw_decays_weights_without_gradient(backend):
    params = {"w": np.array([2.0, -1.0])}
    zero = {"w": np.zeros(2)}
    state = optim.adam_init(params)
    new, _ = optim.adam_step(
        params, zero, state, 0.1, weight_decay=0.5, decoupled=True, backend=backend
    )
    np.testing.assert_allclose(new["w"], params["w"] * (1 - 0.1 * 0.5), rtol=1e-12)
    # classic Adam folds the decay into the gradient, whose normalised step is ~lr
    coupled, _ = optim.adam_step(
        params, zero, state, 0.1, weight_decay=0.5, backend=backend
    )
    np.testing.assert_allclose(
        coupled["w"], params["w"] - 0.1 * np.sign(params["w"]), rtol=1e-6
    )


def test_sgd_momentum_by_hand(backend):
    params = {"w": np.array([1.0])}
    state = optim.sgd_init(params)
    g1, g2 = {"w": np.array([1.0])}, {"w": np.array([2.0])}
    p1, state = optim.sgd_step(params, g1, state, 0.1, momentum=0.9, backend=backend)
    np.testing.assert_allclose(p1["w"], [0.9])  # buf = g1 = 1
    p2, state = optim.sgd_step(p1, g2, state, 0.1, momentum=0.9, backend=backend)
    np.testing.assert_allclose(p2["w"], [0.9 - 0.1 * (0.9 * 1 + 2)])  # buf = 2.9
    np.testing.assert_allclose(state["momentum_buffer.w"], [2.9])
    n1, _ = optim.sgd_step(
        params,
        g1,
        optim.sgd_init(params),
        0.1,
        momentum=0.9,
        nesterov=True,
        backend=backend,
    )
    np.testing.assert_allclose(n1["w"], [1.0 - 0.1 * (1 + 0.9 * 1)])


def test_steps_are_pure(rng, backend):
    params = _params(rng)
    grads = _grad_sequence(rng, params, 1)[0]
    for init, step, kwargs in (
        (optim.adam_init, optim.adam_step, {"weight_decay": 0.1}),
        (optim.sgd_init, optim.sgd_step, {"momentum": 0.9, "weight_decay": 0.1}),
    ):
        state = step(params, grads, init(params), 0.01, backend=backend, **kwargs)[1]
        copies = [{k: np.copy(v) for k, v in d.items()} for d in (params, grads, state)]
        step(params, grads, state, 0.01, backend=backend, **kwargs)
        for original, copy in zip((params, grads, state), copies):
            for key in copy:
                np.testing.assert_array_equal(original[key], copy[key])


def test_backends_agree_on_adam():
    for dtype, rtol, atol in (
        (np.float32, BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32),
        (np.float64, BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64),
    ):
        rng = np.random.default_rng(5)
        params = _params(rng, dtype)
        grads = _grad_sequence(rng, params, 4)
        results = {}
        for name in ("numpy", "numba"):
            p, state = params, optim.adam_init(params)
            for i, g in enumerate(grads):
                p, state = optim.adam_step(
                    p,
                    g,
                    state,
                    0.01,
                    weight_decay=0.01,
                    decoupled=i % 2 == 0,
                    backend=name,
                )
            results[name] = (p, state)
        for key in params:
            ref, fast = results["numpy"][0][key], results["numba"][0][key]
            assert fast.dtype == dtype
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol)
            np.testing.assert_allclose(
                results["numba"][1][f"exp_avg_sq.{key}"],
                results["numpy"][1][f"exp_avg_sq.{key}"],
                rtol=rtol,
                atol=atol,
            )


def test_state_round_trips_through_npz(rng, tmp_path, backend):
    params = _params(rng)
    grads = _grad_sequence(rng, params, 3)
    p, state = params, optim.adam_init(params)
    for g in grads[:2]:
        p, state = optim.adam_step(p, g, state, 0.01, backend=backend)
    np.savez(tmp_path / "state.npz", **state)
    with np.load(tmp_path / "state.npz") as saved:
        restored = dict(saved)
    assert int(restored["step"]) == 2
    direct, _ = optim.adam_step(p, grads[2], state, 0.01, backend=backend)
    resumed, _ = optim.adam_step(p, grads[2], restored, 0.01, backend=backend)
    for key in params:
        np.testing.assert_array_equal(resumed[key], direct[key])


def test_bad_arguments():
    params = {"w": np.zeros(3)}
    with pytest.raises(ConfigError, match="missing"):
        optim.adam_step(params, {}, optim.adam_init(params), 0.1)
    with pytest.raises(ConfigError, match="shape"):
        optim.sgd_step(params, {"w": np.zeros(4)}, optim.sgd_init(params), 0.1)
    with pytest.raises(ConfigError, match="lr"):
        optim.sgd_step(params, params, optim.sgd_init(params), -1.0)
    with pytest.raises(ConfigError, match="nesterov"):
        optim.sgd_step(params, params, optim.sgd_init(params), 0.1, nesterov=True)
    with pytest.raises(ConfigError, match="betas"):
        optim.adam_step(params, params, optim.adam_init(params), 0.1, betas=(1.0, 0.9))
    with pytest.raises(ConfigError, match="exp_avg.w"):
        optim.adam_step(params, params, optim.sgd_init(params), 0.1)
    with pytest.raises(ConfigError, match="max_norm"):
        optim.clip_grad_norm(params, 0.0)


def test_clip_grad_norm_by_hand():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]], dtype=np.float32)}
    clipped, total = optim.clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(5.0)
    assert clipped["b"].dtype == np.float32
    np.testing.assert_allclose(clipped["a"], [3.0 / (5 + 1e-6), 0.0])
    np.testing.assert_allclose(clipped["b"], [[4.0 / (5 + 1e-6)]], rtol=1e-6)
    same, _ = optim.clip_grad_norm(grads, 10.0)
    np.testing.assert_array_equal(same["a"], grads["a"])
    assert same["a"] is not grads["a"]


def test_schedules():
    assert optim.step_lr(0.1, 0, 3) == 0.1
    assert optim.step_lr(0.1, 7, 3, gamma=0.5) == pytest.approx(0.025)
    assert optim.exponential_lr(1.0, 3, 0.5) == pytest.approx(0.125)
    assert optim.warmup_lr(1.0, 0, 4, start_factor=0.2) == pytest.approx(0.2)
    assert optim.warmup_lr(1.0, 2, 4, start_factor=0.2) == pytest.approx(0.6)
    assert optim.warmup_lr(1.0, 9, 4) == 1.0
    assert optim.warmup_lr(1.0, 0, 0) == 1.0


def test_reduce_on_plateau_by_hand_and_resume():
    scheduler = optim.ReduceOnPlateau(1.0, factor=0.5, patience=1, cooldown=1)
    lrs = [scheduler.step(m) for m in (3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)]
    # two bad epochs (> patience 1) halve the rate; the cooldown epoch does not count
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    saved = json.loads(json.dumps(scheduler.state))
    resumed = optim.ReduceOnPlateau.from_state(saved)
    assert resumed.state == scheduler.state and resumed.state is not saved
    for metric in (1.0, 1.5, 1.5, 1.5):
        assert resumed.step(metric) == scheduler.step(metric)
    with pytest.raises(ConfigError, match="mode"):
        optim.ReduceOnPlateau(1.0, mode="up")


# --- PyTorch parity -----------------------------------------------------------------


def _run_torch(torch, params, grads, make_optimizer):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    optimizer = make_optimizer(list(tensors.values()))
    for g in grads:
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(g[key])
        optimizer.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "kind",
    ["adam", "adam_l2", "adamw", "sgd", "sgd_momentum", "sgd_nesterov", "sgd_damp"],
)
def test_optimizers_match_torch(rng, backend, dtype, kind):
    torch = pytest.importorskip("torch")
    params = _params(rng, dtype)
    grads = _grad_sequence(rng, params, 5)
    lr = 0.01
    settings = {
        "adam": (torch.optim.Adam, {}, {}),
        "adam_l2": (torch.optim.Adam, {"weight_decay": 0.1}, {"weight_decay": 0.1}),
        "adamw": (
            torch.optim.AdamW,
            {"weight_decay": 0.05, "betas": (0.8, 0.99)},
            {"weight_decay": 0.05, "betas": (0.8, 0.99), "decoupled": True},
        ),
        "sgd": (torch.optim.SGD, {}, {}),
        "sgd_momentum": (
            torch.optim.SGD,
            {"momentum": 0.9, "weight_decay": 0.01},
            {"momentum": 0.9, "weight_decay": 0.01},
        ),
        "sgd_nesterov": (
            torch.optim.SGD,
            {"momentum": 0.9, "nesterov": True},
            {"momentum": 0.9, "nesterov": True},
        ),
        "sgd_damp": (
            torch.optim.SGD,
            {"momentum": 0.5, "dampening": 0.3},
            {"momentum": 0.5, "dampening": 0.3},
        ),
    }
    torch_class, torch_kwargs, our_kwargs = settings[kind]
    expected = _run_torch(
        torch, params, grads, lambda ts: torch_class(ts, lr=lr, **torch_kwargs)
    )
    if kind.startswith("adam"):
        init, step = optim.adam_init, optim.adam_step
    else:
        init, step = optim.sgd_init, optim.sgd_step
    p, state = params, init(params)
    for g in grads:
        p, state = step(p, g, state, lr, backend=backend, **our_kwargs)
    assert state["step"] == len(grads)
    for key in params:
        assert p[key].dtype == dtype
        np.testing.assert_allclose(
            p[key], expected[key], **_parity_tol(dtype), err_msg=key
        )


@pytest.mark.peers
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(rng, max_norm):
    torch = pytest.importorskip("torch")
    grads = _grad_sequence(rng, _params(rng), 1)[0]
    tensors = [
        torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        for g in grads.values()
    ]
    for tensor, g in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(g)
    total_torch = torch.nn.utils.clip_grad_norm_(tensors, max_norm).item()
    clipped, total = optim.clip_grad_norm(grads, max_norm)
    assert total == pytest.approx(total_torch, rel=1e-12)
    for tensor, key in zip(tensors, grads):
        np.testing.assert_allclose(clipped[key], tensor.grad.numpy(), rtol=1e-12)


@pytest.mark.peers
def test_schedules_match_torch():
    torch = pytest.importorskip("torch")

    def torch_lrs(make, epochs):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
        scheduler = make(optimizer)
        lrs = []
        for _ in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return lrs

    schedulers = torch.optim.lr_scheduler
    expected = torch_lrs(lambda o: schedulers.StepLR(o, 3, gamma=0.5), 10)
    np.testing.assert_allclose(
        [optim.step_lr(0.3, e, 3, 0.5) for e in range(10)], expected
    )
    expected = torch_lrs(lambda o: schedulers.ExponentialLR(o, 0.9), 10)
    np.testing.assert_allclose(
        [optim.exponential_lr(0.3, e, 0.9) for e in range(10)], expected
    )
    expected = torch_lrs(lambda o: schedulers.LinearLR(o, 0.25, 1.0, total_iters=4), 8)
    np.testing.assert_allclose(
        [optim.warmup_lr(0.3, e, 4, 0.25) for e in range(8)], expected
    )


@pytest.mark.peers
@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "min", "factor": 0.5, "patience": 2, "cooldown": 1},
        {
            "mode": "max",
            "factor": 0.3,
            "patience": 1,
            "threshold": 0.1,
            "threshold_mode": "abs",
            "min_lr": 0.01,
        },
    ],
)
def test_reduce_on_plateau_matches_torch(rng, settings):
    torch = pytest.importorskip("torch")
    metrics = np.round(rng.uniform(0, 1, size=40), 2)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **settings)
    ours = optim.ReduceOnPlateau(0.5, **settings)
    for metric in metrics:
        reference.step(float(metric))
        assert math.isclose(
            ours.step(metric), optimizer.param_groups[0]["lr"], rel_tol=1e-12
        )
    assert ours.lr < 0.5  # the sequence did trigger reductions
