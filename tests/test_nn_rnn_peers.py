"""Recurrent layers against PyTorch on identical weights: outputs, final states, dx and
every parameter gradient, for packed batches of mixed lengths."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import (
    PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)

from npspeech.nn import rnn

pytestmark = pytest.mark.peers

T, B, F, H = 6, 4, 5, 3
# unsorted, as enforce_sorted=False allows
LENGTHS = np.array([4, 6, 1, 5], dtype=np.int32)
# torch's names for our parameter names; our W is the transpose of torch's weight
TORCH_NAMES = {
    "W_ih": "weight_ih_l0",
    "W_hh": "weight_hh_l0",
    "b_ih": "bias_ih_l0",
    "b_hh": "bias_hh_l0",
}


def _torch_name(name: str) -> str:
    base = name.removesuffix(rnn.REVERSE_SUFFIX)
    return TORCH_NAMES[base] + name[len(base) :]


def _tolerance(dtype):
    if dtype == np.float64:
        return {"rtol": 0.0, "atol": PARITY_ATOL_FLOAT64}
    return {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}


def _torch_module(torch, kind, bidirectional, params, dtype):
    make = {
        "lstm": torch.nn.LSTM,
        "gru": torch.nn.GRU,
        "rnn": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="relu", **k),
    }[kind]
    module = make(F, H, bidirectional=bidirectional)
    module = module.double() if dtype == np.float64 else module.float()
    with torch.no_grad():
        for name, value in params.items():
            weight = getattr(module, _torch_name(name))
            weight.copy_(torch.from_numpy(value.T.copy() if value.ndim == 2 else value))
    return module


def _flat_states(kind, state, bidirectional):
    """Our state format -> (D, B, H) arrays in torch's order (h then c)."""
    directions = state if bidirectional else (state,)
    if kind == "lstm":
        return [
            np.stack([d[0] for d in directions]),
            np.stack([d[1] for d in directions]),
        ]
    return [np.stack(directions)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_torch(rng, backend, kind, bidirectional, dtype):
    torch = pytest.importorskip("torch")
    params = rnn.init(rng, kind, F, H, bidirectional=bidirectional, dtype=dtype)
    x = rng.standard_normal((T, B, F)).astype(dtype)
    x[np.arange(T)[:, None] >= LENGTHS] = 0.0
    D = 2 if bidirectional else 1
    initial_arrays = [
        rng.standard_normal((D, B, H)).astype(dtype)
        for _ in range(2 if kind == "lstm" else 1)
    ]
    if kind == "lstm":
        per_direction = [(initial_arrays[0][d], initial_arrays[1][d]) for d in range(D)]
    else:
        per_direction = [initial_arrays[0][d] for d in range(D)]
    initial = tuple(per_direction) if bidirectional else per_direction[0]

    y, cache = rnn.forward(
        params, x, LENGTHS, kind, bidirectional, "concat", initial, backend=backend
    )
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[np.arange(T)[:, None] >= LENGTHS] = 0.0  # torch's padded outputs are constants
    d_final_arrays = [
        rng.standard_normal((D, B, H)).astype(dtype) for _ in initial_arrays
    ]
    d_final = _from_flat(kind, d_final_arrays, bidirectional)
    dx, grads, d_initial = rnn.backward_with_state(params, dy, cache, d_final)

    module = _torch_module(torch, kind, bidirectional, params, dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    initial_t = [torch.from_numpy(a.copy()).requires_grad_() for a in initial_arrays]
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.from_numpy(LENGTHS.astype(np.int64)), enforce_sorted=False
    )
    out, final_t = module(packed, tuple(initial_t) if kind == "lstm" else initial_t[0])
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    finals_t = list(final_t) if kind == "lstm" else [final_t]
    loss = (yt * torch.from_numpy(dy)).sum() + sum(
        (f * torch.from_numpy(d)).sum() for f, d in zip(finals_t, d_final_arrays)
    )
    loss.backward()

    tol = _tolerance(dtype)
    if kind == "rnn":
        # nn.RNN has no clip: compare only where the clip at 20 was not reached
        assert yt.detach().numpy().max() < rnn.RELU_CEILING
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol, err_msg="y")
    for ours, theirs in zip(
        _flat_states(kind, cache.final_state, bidirectional), finals_t
    ):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **tol, err_msg="h_n")
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol, err_msg="dx")
    for name in params:
        theirs = getattr(module, _torch_name(name)).grad.numpy()
        theirs = theirs.T if theirs.ndim == 2 else theirs
        np.testing.assert_allclose(grads[name], theirs, **tol, err_msg=name)
    ours_initial = _flat_states(kind, d_initial, bidirectional)
    for ours, theirs in zip(ours_initial, initial_t):
        np.testing.assert_allclose(
            ours, theirs.grad.numpy(), **tol, err_msg="d initial"
        )


def _from_flat(kind, arrays, bidirectional):
    """torch's (D, B, H) arrays -> our state format."""
    D = arrays[0].shape[0]
    if kind == "lstm":
        directions = [(arrays[0][d], arrays[1][d]) for d in range(D)]
    else:
        directions = [arrays[0][d] for d in range(D)]
    return tuple(directions) if bidirectional else directions[0]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_summed_directions_match_torch_halves(rng, kind):
    """merge="sum" (DeepSpeech 2) equals the sum of torch's two concatenated halves."""
    torch = pytest.importorskip("torch")
    params = rnn.init(rng, kind, F, H, bidirectional=True, dtype=np.float64)
    x = rng.standard_normal((T, B, F))
    x[np.arange(T)[:, None] >= LENGTHS] = 0.0
    y, cache = rnn.forward(params, x, LENGTHS, kind, True, "sum", backend="numpy")
    dy = rng.standard_normal(y.shape)
    dy[np.arange(T)[:, None] >= LENGTHS] = 0.0
    dx, grads = rnn.backward(params, dy, cache)

    module = _torch_module(torch, kind, True, params, np.float64)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.from_numpy(LENGTHS.astype(np.int64)), enforce_sorted=False
    )
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(module(packed)[0], total_length=T)
    summed = yt[..., :H] + yt[..., H:]
    (summed * torch.from_numpy(dy)).sum().backward()

    tol = _tolerance(np.float64)
    np.testing.assert_allclose(y, summed.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for name in params:
        theirs = getattr(module, _torch_name(name)).grad.numpy()
        np.testing.assert_allclose(
            grads[name], theirs.T if theirs.ndim == 2 else theirs, **tol, err_msg=name
        )


def test_clipped_rnn_matches_torch_hardtanh_loop(rng):
    """The clip at 20, against the recurrence written with torch ops (nn.RNN has
    none)."""
    torch = pytest.importorskip("torch")
    params = {
        k: 3.0 * v for k, v in rnn.init(rng, "rnn", F, H, dtype=np.float64).items()
    }
    x = 10.0 * rng.standard_normal((T, B, F))
    y, cache = rnn.forward(params, x, np.full(B, T), "rnn", backend="numpy")
    assert (y == rnn.RELU_CEILING).any() and (y == 0.0).any()
    dy = rng.standard_normal(y.shape)
    dx, grads = rnn.backward(params, dy, cache)

    p = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in params.items()}
    xt = torch.from_numpy(x.copy()).requires_grad_()
    h = torch.zeros(B, H, dtype=torch.float64)
    outputs = []
    for t in range(T):
        pre = xt[t] @ p["W_ih"] + p["b_ih"] + h @ p["W_hh"] + p["b_hh"]
        h = torch.nn.functional.hardtanh(pre, 0.0, rnn.RELU_CEILING)
        outputs.append(h)
    yt = torch.stack(outputs)
    (yt * torch.from_numpy(dy)).sum().backward()

    tol = _tolerance(np.float64)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for name in params:
        np.testing.assert_allclose(
            grads[name], p[name].grad.numpy(), **tol, err_msg=name
        )
