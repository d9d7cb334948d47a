"""CTC loss and gradient: brute-force oracle, gradcheck, backends, properties."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from helpers.gradcheck import assert_gradient_close
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_ATOL_FLOAT64,
    BACKEND_RTOL_FLOAT32,
    BACKEND_RTOL_FLOAT64,
    CTC_FLOAT32_ATOL,
    CTC_FLOAT32_RTOL,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from npspeech.backends import get_backend
from npspeech.ctc import ctc_loss, flatten_targets
from npspeech.errors import ConfigError
from npspeech.nn.activations import log_softmax


def random_batch(rng, T, B, V, max_label=None, dtype=np.float64, repeats=True):
    """Logits (T, B, V), flat targets, input and target lengths, all feasible.

    Lengths are mixed (the first sequence is full length); with ``repeats`` some
    targets repeat labels back to back.
    """
    logits = (2.0 * rng.standard_normal((T, B, V))).astype(dtype)
    input_lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
    input_lengths[0] = T
    targets, target_lengths = [], []
    for frames in input_lengths:
        longest = min(frames // 2, max_label if max_label is not None else frames)
        labels = rng.integers(0, V - 1, size=int(rng.integers(0, longest + 1)))
        if repeats and len(labels) >= 2 and rng.random() < 0.5:
            labels[1] = labels[0]
        targets.extend(labels.tolist())
        target_lengths.append(len(labels))
    return (
        logits,
        np.asarray(targets, dtype=np.int32),
        input_lengths,
        np.asarray(target_lengths, dtype=np.int32),
    )


def collapse(path, blank):
    """CTC's many-to-one map: merge repeated classes, then drop blanks."""
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return [k for k in merged if k != blank]


def brute_force_loss(logits, labels, blank):
    """-log of the summed probability of every path (V^T of them) giving ``labels``."""
    probs = np.exp(log_softmax(logits.astype(np.float64)))  # (T, V)
    T, V = probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        if collapse(path, blank) == list(labels):
            total += np.prod(probs[np.arange(T), path])
    return -np.log(total)


# --- oracle ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [[], [0], [1, 0], [0, 0], [1, 1, 1], [0, 1, 0], [2, 1, 2, 0], [0, 0, 1]],
    ids=str,
)
def test_loss_equals_sum_over_all_alignments(backend, rng, labels):
    T, V = 5, 4
    blank = V - 1
    logits = rng.standard_normal((T, 1, V))
    losses, _ = ctc_loss(
        logits, np.asarray(labels, np.int32), np.array([T]), np.array([len(labels)]),
        reduction="none", backend=backend,
    )  # fmt: skip
    expected = brute_force_loss(logits[:, 0], labels, blank)
    np.testing.assert_allclose(losses[0], expected, rtol=1e-12)


def test_blank_in_the_middle_of_the_classes(backend, rng):
    T, V, blank = 4, 4, 1
    labels = [0, 2, 2]
    logits = rng.standard_normal((T, 1, V))
    losses, grad = ctc_loss(
        logits, np.asarray(labels, np.int32), np.array([T]), np.array([3]),
        blank=blank, reduction="none", backend=backend,
    )  # fmt: skip
    np.testing.assert_allclose(losses[0], brute_force_loss(logits[:, 0], labels, blank))
    np.testing.assert_allclose(grad.sum(axis=2), 0.0, atol=1e-12)


# --- gradient -------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "mean_per_target"])
def test_gradient_matches_finite_differences(backend, rng, reduction):
    T, B, V = 7, 3, 4
    logits = rng.standard_normal((T, B, V))
    # a repeated label, an empty target, a short padded input
    targets = np.array([0, 0, 1, 2, 1], dtype=np.int32)
    target_lengths = np.array([3, 0, 2], dtype=np.int32)
    input_lengths = np.array([7, 5, 3], dtype=np.int32)

    def loss():
        value, _ = ctc_loss(
            logits, targets, input_lengths, target_lengths,
            reduction=reduction, backend=backend,
        )  # fmt: skip
        return float(np.sum(value))

    _, grad = ctc_loss(
        logits, targets, input_lengths, target_lengths,
        reduction=reduction, backend=backend,
    )  # fmt: skip
    assert_gradient_close(grad, loss, logits, name=f"dlogits ({reduction})")
    assert np.all(grad[3:, 2] == 0.0) and np.all(grad[5:, 1] == 0.0)  # padding


def test_gradient_with_tight_alignment(backend, rng):
    """Input exactly as long as the target needs: a single alignment survives."""
    logits = rng.standard_normal((5, 1, 3))
    targets = np.array([0, 0, 1, 1], dtype=np.int32)  # needs 4 + 2 blanks = 6 > 5
    args = (targets[:3], np.array([5]), np.array([3]))  # [0, 0, 1]: 3 + 1 = 4 frames

    def loss():
        return float(ctc_loss(logits, *args, reduction="sum", backend=backend)[0])

    _, grad = ctc_loss(logits, *args, reduction="sum", backend=backend)
    assert_gradient_close(grad, loss, logits, name="dlogits")


def test_reductions_are_consistent(backend, rng):
    logits, targets, input_lengths, target_lengths = random_batch(rng, 20, 4, 6)
    args = (logits, targets, input_lengths, target_lengths)
    losses, grad = ctc_loss(*args, reduction="none", backend=backend)
    total, grad_sum = ctc_loss(*args, reduction="sum", backend=backend)
    mean, grad_mean = ctc_loss(*args, reduction="mean", backend=backend)
    per_target, grad_pt = ctc_loss(*args, reduction="mean_per_target", backend=backend)
    np.testing.assert_allclose(total, losses.sum(), rtol=1e-12)
    np.testing.assert_allclose(mean, losses.mean(), rtol=1e-12)
    weights = 1.0 / (np.maximum(target_lengths, 1) * len(losses))
    np.testing.assert_allclose(per_target, (losses * weights).sum(), rtol=1e-12)
    np.testing.assert_allclose(grad_sum, grad, rtol=1e-12)
    np.testing.assert_allclose(grad_mean, grad / len(losses), rtol=1e-12)
    np.testing.assert_allclose(grad_pt, grad * weights[None, :, None], rtol=1e-12)


# --- impossible alignments ------------------------------------------------------------


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_impossible_targets_warn_and_have_zero_gradient(backend, rng, zero_infinity):
    T, V = 4, 5
    logits = rng.standard_normal((T, 3, V))
    # [1, 1, 1] needs 5 frames (two blanks between the repeats); [0, 1, 2] fits in 3
    targets = np.array([1, 1, 1, 0, 1, 2, 2], dtype=np.int32)
    target_lengths = np.array([3, 3, 1], dtype=np.int32)
    input_lengths = np.array([4, 3, 4], dtype=np.int32)
    with pytest.warns(RuntimeWarning, match=r"sequence\(s\) \[0\]"):
        losses, grad = ctc_loss(
            logits, targets, input_lengths, target_lengths,
            reduction="none", zero_infinity=zero_infinity, backend=backend,
        )  # fmt: skip
    assert losses[0] == (0.0 if zero_infinity else np.inf)
    assert np.all(grad[:, 0] == 0.0)
    assert np.isfinite(grad).all()
    assert np.all(np.isfinite(losses[1:])) and np.all(losses[1:] > 0)
    alone, alone_grad = ctc_loss(
        logits[:, 1:], targets[3:], input_lengths[1:], target_lengths[1:],
        reduction="none", backend=backend,
    )  # fmt: skip
    np.testing.assert_allclose(losses[1:], alone, rtol=1e-12)
    np.testing.assert_allclose(grad[:, 1:], alone_grad, rtol=1e-12, atol=1e-15)


def test_mean_with_zero_infinity_stays_finite(backend, rng):
    logits = rng.standard_normal((2, 2, 3))
    targets = np.array([0, 1, 0, 0], dtype=np.int32)
    with pytest.warns(RuntimeWarning):
        loss, grad = ctc_loss(
            logits, targets, np.array([2, 2]), np.array([1, 3]),
            zero_infinity=True, backend=backend,
        )  # fmt: skip
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert np.all(grad[:, 1] == 0.0) and np.any(grad[:, 0] != 0.0)


def test_zero_frames(backend):
    logits = np.zeros((3, 2, 4))
    with pytest.warns(RuntimeWarning, match=r"\[1\]"):
        losses, grad = ctc_loss(
            logits, np.array([2], np.int32), np.array([0, 0]), np.array([0, 1]),
            reduction="none", backend=backend,
        )  # fmt: skip
    assert losses.tolist() == [0.0, np.inf]  # the empty target is certain
    assert np.all(grad == 0.0)


# --- inputs ---------------------------------------------------------------------------


def test_log_probabilities_give_the_same_result(backend, rng):
    logits, targets, input_lengths, target_lengths = random_batch(rng, 12, 3, 5)
    log_probs = log_softmax(logits)
    from_logits = ctc_loss(logits, targets, input_lengths, target_lengths,
                           reduction="none", backend=backend)  # fmt: skip
    from_log_probs = ctc_loss(log_probs, targets, input_lengths, target_lengths,
                              reduction="none", backend=backend)  # fmt: skip
    for a, b in zip(from_logits, from_log_probs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_padded_targets_equal_flat_targets(backend, rng):
    logits, targets, input_lengths, target_lengths = random_batch(rng, 10, 4, 5)
    padded = np.full((4, int(target_lengths.max()) + 2), -7, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(target_lengths)))
    for b in range(4):
        padded[b, : target_lengths[b]] = targets[offsets[b] : offsets[b + 1]]
    np.testing.assert_array_equal(flatten_targets(padded, target_lengths), targets)
    flat = ctc_loss(logits, targets, input_lengths, target_lengths,
                    reduction="none", backend=backend)  # fmt: skip
    rows = ctc_loss(logits, padded, input_lengths, target_lengths,
                    reduction="none", backend=backend)  # fmt: skip
    for a, b in zip(flat, rows):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_buffer_receives_the_gradient(backend, rng, dtype):
    batch = random_batch(rng, 9, 3, 5, dtype=dtype)
    logits, targets, input_lengths, target_lengths = batch
    out = np.full(logits.shape, np.nan, dtype=dtype)  # every element must be written
    loss, grad = ctc_loss(logits, targets, input_lengths, target_lengths,
                          backend=backend, out=out)  # fmt: skip
    assert grad is out and grad.dtype == dtype and loss.dtype == dtype
    expected = ctc_loss(logits, targets, input_lengths, target_lengths, backend=backend)
    np.testing.assert_array_equal(grad, expected[1])


def _valid_args(rng):
    logits = rng.standard_normal((6, 2, 4)).astype(np.float32)
    return {
        "logits": logits,
        "targets": np.array([0, 1, 2], dtype=np.int32),
        "input_lengths": np.array([6, 4], dtype=np.int32),
        "target_lengths": np.array([2, 1], dtype=np.int32),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"logits": np.zeros((6, 4))}, "logits must have shape"),
        ({"logits": np.zeros((6, 2, 4), dtype=np.int32)}, "float32 or float64"),
        ({"input_lengths": np.array([6])}, r"input_lengths must have shape \(2,\)"),
        ({"input_lengths": np.array([7, 4])}, r"input_lengths\[0\] = 7"),
        ({"input_lengths": np.array([6, -1])}, r"input_lengths\[1\] = -1"),
        ({"input_lengths": np.array([6.0, 4.0])}, "input_lengths must be integers"),
        ({"target_lengths": np.array([2, -1])}, r"target_lengths\[1\] = -1"),
        ({"target_lengths": np.array([2, 2])}, "flat targets hold 3 labels"),
        ({"targets": np.array([0, 3, 2], np.int32)}, "label 3 of sequence 0"),
        ({"targets": np.array([0, 1, 4], np.int32)}, "label 4 of sequence 1"),
        ({"targets": np.array([0, 1, -1], np.int32)}, "label -1 of sequence 1"),
        ({"targets": np.array([0.0, 1.0, 2.0])}, "integer labels"),
        ({"targets": np.zeros((2, 1), np.int32)}, r"target_lengths\[0\] = 2 exceeds"),
        ({"targets": np.zeros((3, 2), np.int32)}, "3 rows for a batch of 2"),
        ({"targets": np.zeros((1, 1, 3), np.int32)}, "flat .* or padded"),
        ({"reduction": "average"}, "reduction must be one of"),
        ({"blank": 4}, "blank 4 is outside"),
        ({"backend": "fortran"}, "unknown backend"),
        ({"out": np.zeros((6, 2, 4))}, "out must be a C-contiguous float32"),
    ],
)
def test_bad_input_raises_config_error(rng, change, message):
    args = _valid_args(rng) | change
    with pytest.raises(ConfigError, match=message):
        ctc_loss(**args)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_in_valid_frames_raise(rng, bad):
    args = _valid_args(rng)
    args["logits"][3, 1, 2] = bad
    with pytest.raises(ConfigError, match=r"logits\[3, 1\]"):
        ctc_loss(**args)
    args["logits"][3, 1, 2] = 0.0
    args["logits"][5, 1, :] = bad  # frame 5 is padding for sequence 1 (length 4)
    ctc_loss(**args)


def test_minus_infinity_logits_are_allowed(backend):
    """-inf is a log-probability of zero: a class that can never be emitted."""
    logits = np.zeros((3, 1, 3))
    logits[:, 0, 0] = -np.inf
    args = (np.array([1], np.int32), np.array([3]), np.array([1]))
    losses, grad = ctc_loss(logits, *args, reduction="none", backend=backend)
    # paths: 1 1 1, b 1 1, 1 1 b, b b 1, 1 b b, b 1 b: 6 of the 2^3 equiprobable ones
    np.testing.assert_allclose(losses[0], -np.log(6 / 8))
    assert np.all(grad[:, 0, 0] == 0.0) and np.isfinite(grad).all()
    with pytest.warns(RuntimeWarning):  # label 0 can never be emitted
        losses, grad = ctc_loss(logits, np.array([0], np.int32), *args[1:],
                                reduction="none", backend=backend)  # fmt: skip
    assert losses[0] == np.inf and np.all(grad == 0.0)


# --- backends -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_kernel_equals_numpy_reference(rng, dtype):
    numpy_kernels, numba_kernels = get_backend("numpy"), get_backend("numba")
    rtol, atol = (
        (BACKEND_RTOL_FLOAT32, BACKEND_ATOL_FLOAT32)
        if dtype == np.float32
        else (BACKEND_RTOL_FLOAT64, BACKEND_ATOL_FLOAT64)
    )
    for T, B, V in [(1, 1, 2), (30, 5, 7), (60, 4, 29)]:
        batch = random_batch(rng, T, B, V, dtype=dtype)
        expected = ctc_loss(*batch, reduction="none", backend=numpy_kernels)
        actual = ctc_loss(*batch, reduction="none", backend=numba_kernels)
        for a, e in zip(actual, expected):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def test_extreme_logits_stay_exact(rng):
    """Log-probability gaps of ~1000 nats underflow any linear-space recursion; the
    Numba kernel detects it and takes the log-space path, matching the reference."""
    T, V = 6, 5
    logits = rng.standard_normal((T, 2, V))
    logits[:, :, 3] += 1000.0  # a class outside both targets dominates every frame
    logits[2, 1, :] = [-900.0, 0.0, 0.0, 0.0, 0.0]  # and one gap inside a frame
    targets = np.array([0, 1, 0, 2], dtype=np.int32)
    args = (targets, np.array([6, 5]), np.array([2, 2]))
    expected = ctc_loss(logits, *args, reduction="none", backend="numpy")
    actual = ctc_loss(logits, *args, reduction="none", backend="numba")
    assert np.all(np.isfinite(actual[0])) and np.all(actual[0] > 1000.0)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_long_input_stays_finite_and_accurate(rng):
    """T = 3000, L = 600 in float32: accumulation in float64 keeps every digit."""
    T, V, L = 3000, 29, 600
    logits = rng.standard_normal((T, 1, V)).astype(np.float32)
    targets = rng.integers(0, V - 1, size=L).astype(np.int32)
    targets[1] = targets[0]
    args = (targets, np.array([T]), np.array([L]))
    loss32, grad32 = ctc_loss(logits, *args, reduction="none", backend="numba")
    loss64, grad64 = ctc_loss(logits.astype(np.float64), *args, reduction="none",
                              backend="numba")  # fmt: skip
    assert np.isfinite(loss32).all() and np.isfinite(grad32).all()
    assert loss32[0] > 0
    np.testing.assert_allclose(loss32, loss64, rtol=CTC_FLOAT32_RTOL)
    np.testing.assert_allclose(grad32, grad64, atol=CTC_FLOAT32_ATOL)
    np.testing.assert_allclose(grad64.sum(axis=2), 0.0, atol=1e-12)


@pytest.mark.slow
def test_long_input_matches_reference(rng):
    T, V, L = 3000, 29, 600
    logits = rng.standard_normal((T, 2, V))
    targets = rng.integers(0, V - 1, size=2 * L).astype(np.int32)
    args = (targets, np.array([T, T - 500]), np.array([L, L]))
    expected = ctc_loss(logits, *args, reduction="none", backend="numpy")
    actual = ctc_loss(logits, *args, reduction="none", backend="numba")
    # log space computes each posterior as exp(log_alpha + log_beta - log P) with
    # log P ~ 1e4 here, so the reference itself carries ~1e4 * eps ~ 1e-11 absolute
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-10)


# --- properties -----------------------------------------------------------------------

BACKEND_NAMES = ["numpy", "numba"]
sizes = st.tuples(
    st.integers(1, 12),  # T
    st.integers(1, 4),  # B
    st.integers(2, 7),  # V
    st.integers(0, 2**32 - 1),  # seed
)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=25, deadline=None)
@given(sizes=sizes)
def test_feasible_loss_is_finite_and_non_negative(name, sizes):
    T, B, V, seed = sizes
    batch = random_batch(np.random.default_rng(seed), T, B, V)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # feasible targets never warn
        losses, grad = ctc_loss(*batch, reduction="none", backend=name)
    assert np.all(np.isfinite(losses)) and np.all(losses >= 0.0)
    assert np.isfinite(grad).all()
    # softmax and the occupancy both sum to one per frame: rows of the gradient to 0
    np.testing.assert_allclose(grad.sum(axis=2), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=25, deadline=None)
@given(sizes=sizes, garbage=st.sampled_from([0.0, 1e30, -1e30, np.nan, np.inf]))
def test_padded_frames_change_nothing(name, sizes, garbage):
    T, B, V, seed = sizes
    rng = np.random.default_rng(seed)
    logits, targets, input_lengths, target_lengths = random_batch(rng, T, B, V)
    reference = ctc_loss(logits, targets, input_lengths, target_lengths,
                         reduction="none", backend=name)  # fmt: skip
    extra = int(rng.integers(1, 4))
    padded = np.concatenate([logits, np.zeros((extra, B, V))])  # (T + extra, B, V)
    for b, frames in enumerate(input_lengths):
        padded[frames:, b] = garbage
    losses, grad = ctc_loss(padded, targets, input_lengths, target_lengths,
                            reduction="none", backend=name)  # fmt: skip
    np.testing.assert_array_equal(losses, reference[0])
    for b, frames in enumerate(input_lengths):
        np.testing.assert_array_equal(grad[:frames, b], reference[1][:frames, b])
        assert np.all(grad[frames:, b] == 0.0)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=25, deadline=None)
@given(sizes=sizes)
def test_each_sequence_is_independent_of_its_batch(name, sizes):
    T, B, V, seed = sizes
    logits, targets, input_lengths, target_lengths = random_batch(
        np.random.default_rng(seed), T, B, V
    )
    losses, grad = ctc_loss(logits, targets, input_lengths, target_lengths,
                            reduction="none", backend=name)  # fmt: skip
    offsets = np.concatenate(([0], np.cumsum(target_lengths)))
    for b in range(B):
        frames = int(input_lengths[b])
        alone, alone_grad = ctc_loss(
            logits[:frames, b : b + 1], targets[offsets[b] : offsets[b + 1]],
            input_lengths[b : b + 1], target_lengths[b : b + 1],
            reduction="none", backend=name,
        )  # fmt: skip
        np.testing.assert_allclose(alone[0], losses[b], rtol=1e-12)
        np.testing.assert_allclose(alone_grad[:, 0], grad[:frames, b], atol=1e-14)


# --- which path the Numba kernel takes ------------------------------------------------


def _kernel_inputs(labels, blank):
    from npspeech.backends.numpy_ref.ctc import extended_labels, skip_allowed

    states = extended_labels(np.asarray(labels), blank)
    return states, skip_allowed(states, blank)


def test_ordinary_long_input_takes_the_linear_space_path(rng):
    """The fast path must not silently fall back on long, ordinary inputs, where
    forward and backward mass lie hundreds of decades apart."""
    from npspeech.backends.numba_cpu.ctc import _RETRY, _scaled_sequence

    T, V, L = 3000, 29, 600
    logits = rng.standard_normal((T, 1, V))
    states, skip = _kernel_inputs(rng.integers(0, V - 1, size=L), V - 1)
    grad = np.zeros_like(logits)
    loss = _scaled_sequence(logits, 0, T, states, skip, grad)
    assert loss != _RETRY and np.isfinite(loss)


def test_extreme_logits_take_the_log_space_path(rng):
    from npspeech.backends.numba_cpu.ctc import _RETRY, _scaled_sequence

    logits = rng.standard_normal((6, 1, 5))
    logits[:, :, 3] += 1000.0
    states, skip = _kernel_inputs([0, 1], 4)
    grad = np.zeros_like(logits)
    assert _scaled_sequence(logits, 0, 6, states, skip, grad) == _RETRY
