"""Recurrent layers: BPTT against finite differences, backends against the NumPy
reference, padding and batch invariance, streaming in chunks, validation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import assert_gradient_close, random_projection
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    RNN_INVARIANCE_ATOL,
)

from npspeech.errors import ConfigError
from npspeech.nn import rnn

KINDS = ("rnn", "lstm", "gru")
# (bidirectional, merge) layouts every kind is checked in
LAYOUTS = [(False, "concat"), (True, "concat"), (True, "sum")]
LAYOUT_IDS = ["uni", "bi-concat", "bi-sum"]

T, B, F, H = 5, 3, 3, 2
LENGTHS = np.array([5, 2, 4], dtype=np.int32)  # mixed, unsorted, one full
# streaming runs in float32, where chunk GEMMs of other shapes round differently
STREAM_TOL = {"rtol": BACKEND_RTOL_FLOAT32, "atol": BACKEND_ATOL_FLOAT32}


def _batch(rng, dtype=np.float64, t=T, lengths=LENGTHS, f=F):
    """x (t, B, f) random with zero padding past each length."""
    x = rng.standard_normal((t, len(lengths), f)).astype(dtype)
    x[np.arange(t)[:, None] >= lengths] = 0.0
    return x


def _random_state(rng, kind, bidirectional, batch, dtype=np.float64):
    def one():
        if kind == "lstm":
            return (
                rng.standard_normal((batch, H)).astype(dtype),
                rng.standard_normal((batch, H)).astype(dtype),
            )
        return rng.standard_normal((batch, H)).astype(dtype)

    return (one(), one()) if bidirectional else one()


def _state_arrays(state):
    """The arrays of a (possibly nested) state, in a fixed order."""
    if isinstance(state, np.ndarray):
        return [state]
    return [array for part in state for array in _state_arrays(part)]


def _params(rng, kind, bidirectional, dtype=np.float64, n_in=F):
    params = rnn.init(rng, kind, n_in, H, bidirectional=bidirectional, dtype=dtype)
    if kind == "rnn":
        # large enough that some units clip at 20 and some sit at 0 when x is scaled up
        params = {k: v * 3.0 for k, v in params.items()}
    return params


# --- gradients against finite differences ---------------------------------------------


@pytest.mark.parametrize("bidirectional, merge", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_finite_differences(rng, backend, kind, bidirectional, merge):
    params = _params(rng, kind, bidirectional)
    x = _batch(rng)
    if kind == "rnn":
        x *= 8.0  # drive some units into the clip at 20 and some below 0
    initial = _random_state(rng, kind, bidirectional, B)
    y, cache = rnn.forward(
        params, x, LENGTHS, kind, bidirectional, merge, initial, backend=backend
    )
    R = random_projection(rng, y.shape)
    final_arrays = _state_arrays(cache.final_state)
    S = [random_projection(rng, a.shape) for a in final_arrays]

    def loss():
        y, cache = rnn.forward(
            params, x, LENGTHS, kind, bidirectional, merge, initial, backend=backend
        )
        finals = _state_arrays(cache.final_state)
        return float(np.sum(y * R) + sum(np.sum(f * s) for f, s in zip(finals, S)))

    # the final-state cotangent in the state format, built by the same flattening order
    d_final = _restate(cache.final_state, iter(S))
    dx, grads, d_initial = rnn.backward_with_state(params, R, cache, d_final)

    assert set(grads) == set(params)
    for name in params:
        assert_gradient_close(grads[name], loss, params[name], name=name)
    assert_gradient_close(dx, loss, x, name="x")
    for i, (analytic, array) in enumerate(
        zip(_state_arrays(d_initial), _state_arrays(initial))
    ):
        assert_gradient_close(analytic, loss, array, name=f"initial state {i}")
    if kind == "rnn":
        # the check above is only meaningful if both ends of the clip were reached
        y_uni = cache.directions[0].y
        assert (y_uni == rnn.RELU_CEILING).any() and (y_uni[:2] == 0.0).any()


def _restate(template, values):
    """``template``'s nesting filled from the iterator ``values``."""
    if isinstance(template, np.ndarray):
        return next(values)
    return tuple(_restate(part, values) for part in template)


# --- backends against the reference ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("bidirectional, merge", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_backend_matches_reference(rng, backend, kind, bidirectional, merge, dtype):
    lengths = np.array([7, 3, 0, 6], dtype=np.int32)  # a zero length included
    params = rnn.init(rng, kind, 6, 5, bidirectional=bidirectional, dtype=dtype)
    x = _batch(rng, dtype, t=7, lengths=lengths, f=6)
    dy = rng.standard_normal((7, 4, 5 if merge == "sum" or not bidirectional else 10))
    results = []
    for be in ("numpy", backend):
        y, cache = rnn.forward(
            params, x, lengths, kind, bidirectional, merge, backend=be
        )
        dx, grads = rnn.backward(params, dy.astype(dtype), cache)
        results.append((y, dx, grads, _state_arrays(cache.final_state)))
    (y0, dx0, g0, s0), (y1, dx1, g1, s1) = results
    if dtype == np.float64:
        tol = {"rtol": BACKEND_RTOL_FLOAT64, "atol": BACKEND_ATOL_FLOAT64}
    else:
        tol = {"rtol": BACKEND_RTOL_FLOAT32, "atol": BACKEND_ATOL_FLOAT32}
    for got in (y1, dx1, *g1.values(), *s1):
        assert got.dtype == dtype
    np.testing.assert_allclose(y1, y0, **tol, err_msg="y")
    np.testing.assert_allclose(dx1, dx0, **tol, err_msg="dx")
    for name in params:
        np.testing.assert_allclose(g1[name], g0[name], **tol, err_msg=name)
    for a, b in zip(s1, s0):
        np.testing.assert_allclose(a, b, **tol, err_msg="final state")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "B_, K, N",
    [
        (16, 8, 12),
        (5, 7, 6),
        (3, 4, 9),
        (1, 1, 1),
        (8, 3, 3),
        (15, 37, 70),
        (17, 64, 33),
        (4, 8, 64),  # no padding in either dimension
        (11, 2101, 40),  # three blocks of k (DEPTH_BLOCK 1024)
        (9, 1100, 4000),  # 17.6 MB float32: the prefetching loop
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_matmul_matches_numpy(rng, dtype, B_, K, N, threads):
    """The Numba loops' recurrent product (packed panels, register tiles of 8, 4, 2 and
    1 rows, K and N not multiples of the tile) against ``@``; the padding columns of
    the output are zero and the output is written whole (it starts as NaN)."""
    from npspeech.backends.numba_cpu import packed_matmul

    a = rng.standard_normal((B_, K)).astype(dtype)
    w = rng.standard_normal((K, N)).astype(dtype)
    w_packed = packed_matmul.pack_panels(w)
    a_t, out = packed_matmul.buffers(w_packed, B_)
    out[:] = np.nan
    packed_matmul.rows_times(a, a_t, w_packed, out, threads)
    # any order of summation is within K eps (|a| @ |w|) of the exact product
    exact = a.astype(np.float64) @ w.astype(np.float64)
    bound = K * np.finfo(dtype).eps * (np.abs(a).astype(np.float64) @ np.abs(w))
    error = np.abs(out[:, :N] - exact)
    assert np.all(error <= bound), f"error {error.max():.3g} > bound {bound.max():.3g}"
    np.testing.assert_array_equal(out[:, N:], 0)


def test_packed_matmul_rejects_mismatched_operands(rng):
    from npspeech.backends.numba_cpu import packed_matmul

    w_packed = packed_matmul.pack_panels(rng.standard_normal((8, 12)))
    a_t, out = packed_matmul.buffers(w_packed, 3)
    with pytest.raises(ValueError, match="shapes do not match"):
        packed_matmul.matmul(a_t, w_packed, out[:2], 1)


# --- padding, batching, streaming -----------------------------------------------------


@pytest.mark.parametrize("bidirectional, merge", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_each_sequence_alone(rng, backend, kind, bidirectional, merge):
    params = _params(rng, kind, bidirectional)
    x = _batch(rng)
    y, cache = rnn.forward(
        params, x, LENGTHS, kind, bidirectional, merge, backend=backend
    )
    dy = rng.standard_normal(y.shape)
    dy_masked = np.where((np.arange(T)[:, None] < LENGTHS)[..., None], dy, 0.0)
    dx, grads = rnn.backward(params, dy, cache)
    summed = {name: np.zeros_like(p) for name, p in params.items()}
    for b, length in enumerate(LENGTHS):
        xb = x[:length, b : b + 1]
        yb, cache_b = rnn.forward(
            params, xb, np.array([length]), kind, bidirectional, merge, backend=backend
        )
        dxb, grads_b = rnn.backward(params, dy_masked[:length, b : b + 1], cache_b)
        np.testing.assert_allclose(y[:length, b], yb[:, 0], atol=RNN_INVARIANCE_ATOL)
        np.testing.assert_allclose(dx[:length, b], dxb[:, 0], atol=RNN_INVARIANCE_ATOL)
        for name in params:
            summed[name] += grads_b[name]
        for whole, alone in zip(
            _state_arrays(cache.final_state), _state_arrays(cache_b.final_state)
        ):
            np.testing.assert_allclose(whole[b], alone[0], atol=RNN_INVARIANCE_ATOL)
    # padded frames: zero output and zero input gradient, whatever dy holds there
    padded = np.arange(T)[:, None] >= LENGTHS
    assert not y[padded].any() and not dx[padded].any()
    for name in params:
        np.testing.assert_allclose(grads[name], summed[name], atol=RNN_INVARIANCE_ATOL)


@pytest.mark.parametrize("bidirectional, merge", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_padding_contents_change_nothing(rng, backend, kind, bidirectional, merge):
    params = _params(rng, kind, bidirectional)
    x = _batch(rng)
    noisy = x.copy()
    padded = np.arange(T)[:, None] >= LENGTHS
    noisy[padded] = 100.0 * rng.standard_normal((padded.sum(), F))
    outputs = []
    for inputs in (x, noisy):
        y, cache = rnn.forward(
            params, inputs, LENGTHS, kind, bidirectional, merge, backend=backend
        )
        dx, grads = rnn.backward(params, np.ones_like(y), cache)
        outputs.append((y, dx, grads, _state_arrays(cache.final_state)))
    (y0, dx0, g0, s0), (y1, dx1, g1, s1) = outputs
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    for name in params:
        np.testing.assert_array_equal(g1[name], g0[name])
    for a, b in zip(s1, s0):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_in_chunks_equals_whole(rng, backend, kind):
    params = _params(rng, kind, False, dtype=np.float32)
    lengths = np.array([9, 9, 9], dtype=np.int32)
    x = _batch(rng, np.float32, t=9, lengths=lengths)
    y_whole, cache_whole = rnn.forward(params, x, lengths, kind, backend=backend)
    state = None
    pieces = []
    for start, stop in ((0, 4), (4, 5), (5, 9)):
        chunk_lengths = np.full(3, stop - start, dtype=np.int32)
        y, cache = rnn.forward(
            params,
            x[start:stop],
            chunk_lengths,
            kind,
            initial_state=state,
            backend=backend,
        )
        pieces.append(y)
        state = cache.final_state
    np.testing.assert_allclose(np.concatenate(pieces), y_whole, **STREAM_TOL)
    for a, b in zip(_state_arrays(state), _state_arrays(cache_whole.final_state)):
        np.testing.assert_allclose(a, b, **STREAM_TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_length_keeps_initial_state(rng, backend, kind):
    params = _params(rng, kind, True)
    lengths = np.array([0, 3], dtype=np.int32)
    x = _batch(rng, t=3, lengths=lengths)
    initial = _random_state(rng, kind, True, 2)
    y, cache = rnn.forward(
        params, x, lengths, kind, True, "sum", initial, backend=backend
    )
    assert not y[:, 0].any()
    for final, start in zip(_state_arrays(cache.final_state), _state_arrays(initial)):
        np.testing.assert_array_equal(final[0], start[0])


def test_inputs_are_not_mutated(rng, backend):
    for kind in KINDS:
        params = _params(rng, kind, True)
        x = _batch(rng)
        initial = _random_state(rng, kind, True, B)
        copies = [a.copy() for a in (x, *params.values(), *_state_arrays(initial))]
        y, cache = rnn.forward(
            params, x, LENGTHS, kind, True, "concat", initial, backend=backend
        )
        dy = rng.standard_normal(y.shape)
        dy_copy = dy.copy()
        rnn.backward_with_state(params, dy, cache, cache.final_state)
        for before, after in zip(
            copies, (x, *params.values(), *_state_arrays(initial))
        ):
            np.testing.assert_array_equal(before, after)
        np.testing.assert_array_equal(dy, dy_copy)


def test_rnn_output_is_clipped_relu(rng, backend):
    params = _params(rng, "rnn", False)
    x = 50.0 * _batch(rng)
    y, _ = rnn.forward(params, x, LENGTHS, "rnn", backend=backend)
    assert y.min() == 0.0 and y.max() == rnn.RELU_CEILING
    # one step by hand: clip(x W_ih + b_ih + b_hh, 0, 20) from a zero state
    first = np.clip(x[0] @ params["W_ih"] + params["b_ih"] + params["b_hh"], 0.0, 20.0)
    np.testing.assert_allclose(y[0], first, rtol=1e-12)


def test_reverse_sequences_reverses_within_lengths(rng):
    x = _batch(rng)
    reversed_x = rnn.reverse_sequences(x, LENGTHS)
    for b, length in enumerate(LENGTHS):
        np.testing.assert_array_equal(reversed_x[:length, b], x[:length, b][::-1])
        np.testing.assert_array_equal(reversed_x[length:, b], x[length:, b])
    np.testing.assert_array_equal(rnn.reverse_sequences(reversed_x, LENGTHS), x)


# --- init and validation --------------------------------------------------------------


@pytest.mark.parametrize("kind, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_init_shapes_and_range(rng, kind, gates):
    params = rnn.init(rng, kind, 7, 4, bidirectional=True)
    expected = {
        "W_ih": (7, gates * 4),
        "W_hh": (4, gates * 4),
        "b_ih": (gates * 4,),
        "b_hh": (gates * 4,),
    }
    assert set(params) == set(expected) | {k + "_reverse" for k in expected}
    for name, array in params.items():
        assert array.shape == expected[name.removesuffix("_reverse")]
        assert array.dtype == np.float32
        assert np.abs(array).max() <= 1.0 / np.sqrt(4)


def test_init_forget_bias_shifts_only_the_forget_gate(rng):
    base = rnn.init(np.random.default_rng(3), "lstm", 5, 4)
    shifted = rnn.init(np.random.default_rng(3), "lstm", 5, 4, forget_bias=1.0)
    difference = shifted["b_ih"] - base["b_ih"]
    np.testing.assert_allclose(difference[4:8], 1.0, rtol=1e-6)
    assert not difference[:4].any() and not difference[8:].any()
    with pytest.raises(ConfigError, match="forget_bias"):
        rnn.init(rng, "gru", 5, 4, forget_bias=1.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "kind": "transformer"}, "kind"),
        (lambda a: {**a, "merge": "mean"}, "merge"),
        (lambda a: {**a, "x": a["x"][0]}, "x must be"),
        (lambda a: {**a, "x": a["x"].astype(np.int32)}, "float32 or float64"),
        (
            lambda a: {**a, "x": a["x"].astype(np.float32)},
            "params\\['W_ih'\\] is float64",
        ),
        (lambda a: {**a, "lengths": np.array([1, 2])}, "lengths"),
        (lambda a: {**a, "lengths": np.array([1, 2, 9])}, "lengths must lie"),
        (lambda a: {**a, "lengths": np.array([1.0, 2.0, 3.0])}, "integer"),
        (lambda a: {**a, "params": {**a["params"], "W_hh": np.zeros((2, 2))}}, "W_hh"),
        (
            lambda a: {
                **a,
                "params": {k: v for k, v in a["params"].items() if k != "b_hh"},
            },
            "b_hh",
        ),
        (lambda a: {**a, "bidirectional": True}, "W_ih_reverse"),
        (lambda a: {**a, "initial_state": np.zeros((3, 2))}, "pair \\(h, c\\)"),
        (lambda a: {**a, "initial_state": (np.zeros((3, 5)),) * 2}, "shape \\(3, 2\\)"),
    ],
)
def test_bad_arguments_raise_config_error(rng, change, message):
    arguments = {
        "params": rnn.init(rng, "lstm", F, H, dtype=np.float64),
        "x": _batch(rng),
        "lengths": LENGTHS,
        "kind": "lstm",
        "bidirectional": False,
        "merge": "concat",
        "initial_state": None,
    }
    with pytest.raises(ConfigError, match=message):
        rnn.forward(**change(arguments), backend="numpy")


@pytest.mark.parametrize("kind", KINDS)
def test_numba_thread_split_equals_one_thread(rng, kind):
    """The numba loops split the batch's sequences over threads (and, for one part,
    the product's columns); the results match a one-thread run."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    lengths = np.array([7, 3, 6, 1, 7], dtype=np.int32)
    params = _params(rng, kind, True)
    x = _batch(rng, t=7, lengths=lengths)
    dy = rng.standard_normal((7, len(lengths), 2 * H))
    results = {}
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            y, cache = rnn.forward(params, x, lengths, kind, True, backend="numba")
            dx, grads = rnn.backward(params, dy, cache)
            results[threads] = (y, dx, grads)
    finally:
        numba.set_num_threads(before)
    tol = {"rtol": BACKEND_RTOL_FLOAT64, "atol": BACKEND_ATOL_FLOAT64}
    np.testing.assert_allclose(results[2][0], results[1][0], **tol, err_msg="y")
    np.testing.assert_allclose(results[2][1], results[1][1], **tol, err_msg="dx")
    for name in params:
        np.testing.assert_allclose(
            results[2][2][name], results[1][2][name], **tol, err_msg=name
        )
