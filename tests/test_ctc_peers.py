"""CTC loss and gradient against torch.nn.functional.ctc_loss (CPU, test-only peer).

PyTorch takes log-probabilities; it is given ``log_softmax(logits)`` and its gradient is
taken by autograd w.r.t. the logits, which is what npspeech returns.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers.tolerances import (
    PARITY_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT64,
    PARITY_RTOL_FLOAT32,
)

from npspeech.ctc import ctc_loss

pytestmark = pytest.mark.peers

# npspeech's reduction name -> PyTorch's ("mean_per_target" is PyTorch's "mean")
REDUCTIONS = {"none": "none", "sum": "sum", "mean_per_target": "mean"}


def torch_ctc(logits, targets, input_lengths, target_lengths, reduction, zero_infinity):
    torch = pytest.importorskip("torch")
    x = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.ctc_loss(
        x.log_softmax(-1),
        torch.tensor(np.asarray(targets, dtype=np.int64)),
        torch.tensor(input_lengths.astype(np.int64)),
        torch.tensor(target_lengths.astype(np.int64)),
        blank=logits.shape[2] - 1,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def mixed_batch(rng, dtype, T=30, B=6, V=8, impossible=False):
    """Mixed input and target lengths, repeated labels; optionally one target that
    cannot fit its input (sequence 1)."""
    logits = (2.0 * rng.standard_normal((T, B, V))).astype(dtype)
    input_lengths = rng.integers(T // 3, T + 1, size=B).astype(np.int32)
    input_lengths[0] = T
    target_lengths = np.array(
        [rng.integers(0, frames // 2 + 1) for frames in input_lengths], dtype=np.int32
    )
    targets = rng.integers(0, V - 1, size=int(target_lengths.sum())).astype(np.int32)
    if target_lengths[0] >= 3:
        targets[1] = targets[2] = targets[0]
    if impossible:
        start = int(target_lengths[0])
        input_lengths[1] = 3
        targets = np.concatenate(
            [targets[:start], [2, 2, 2], targets[start + target_lengths[1] :]]
        ).astype(np.int32)  # [2, 2, 2] needs 5 frames
        target_lengths[1] = 3
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", list(REDUCTIONS))
def test_matches_pytorch(rng, reduction, dtype, zero_infinity):
    pytest.importorskip("torch")
    batch = mixed_batch(rng, dtype, impossible=zero_infinity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the impossible sequence
        loss, grad = ctc_loss(
            *batch, reduction=reduction, zero_infinity=zero_infinity, backend="numba"
        )
    expected_loss, expected_grad = torch_ctc(
        *batch, REDUCTIONS[reduction], zero_infinity
    )
    if dtype == np.float64:
        tolerances = {"rtol": 0.0, "atol": PARITY_ATOL_FLOAT64}
    else:
        tolerances = {"rtol": PARITY_RTOL_FLOAT32, "atol": PARITY_ATOL_FLOAT32}
    np.testing.assert_allclose(loss, expected_loss, **tolerances)
    np.testing.assert_allclose(grad, expected_grad, **tolerances)
    assert np.isfinite(grad).all()


def test_mean_is_pytorch_sum_over_batch_size(rng):
    """DeepSpeech's mean (per-sequence losses averaged over the batch)."""
    batch = mixed_batch(rng, np.float64)
    loss, grad = ctc_loss(*batch, reduction="mean", backend="numba")
    total, total_grad = torch_ctc(*batch, "sum", False)
    B = batch[0].shape[1]
    np.testing.assert_allclose(loss, total / B, atol=PARITY_ATOL_FLOAT64)
    np.testing.assert_allclose(grad, total_grad / B, atol=PARITY_ATOL_FLOAT64)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_padded_targets_match_pytorch(rng, backend):
    logits, targets, input_lengths, target_lengths = mixed_batch(rng, np.float64)
    padded = np.zeros((len(target_lengths), int(target_lengths.max())), dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(target_lengths)))
    for b in range(len(target_lengths)):
        padded[b, : target_lengths[b]] = targets[offsets[b] : offsets[b + 1]]
    loss, grad = ctc_loss(logits, padded, input_lengths, target_lengths,
                          reduction="none", backend=backend)  # fmt: skip
    expected_loss, expected_grad = torch_ctc(
        logits, targets, input_lengths, target_lengths, "none", False
    )
    np.testing.assert_allclose(loss, expected_loss, atol=PARITY_ATOL_FLOAT64)
    np.testing.assert_allclose(grad, expected_grad, atol=PARITY_ATOL_FLOAT64)


def test_extreme_logits_match_pytorch(rng):
    """The Numba kernel's log-space path (taken on ~1000-nat gaps) against PyTorch."""
    logits = rng.standard_normal((8, 2, 5))
    logits[:, :, 3] += 1000.0
    targets = np.array([0, 1, 1, 2], dtype=np.int32)
    args = (targets, np.array([8, 6], np.int32), np.array([2, 2], np.int32))
    loss, grad = ctc_loss(logits, *args, reduction="none", backend="numba")
    expected_loss, expected_grad = torch_ctc(logits, *args, "none", False)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, atol=PARITY_ATOL_FLOAT64)


def test_long_float32_input_is_closer_to_float64_than_pytorch_float32(rng):
    """T = 1000, L = 200: npspeech accumulates float32 inputs in float64."""
    T, V, L = 1000, 29, 200
    logits = rng.standard_normal((T, 2, V)).astype(np.float32)
    targets = rng.integers(0, V - 1, size=2 * L).astype(np.int32)
    args = (targets, np.array([T, T - 100], np.int32), np.array([L, L], np.int32))
    loss, grad = ctc_loss(logits, *args, reduction="none", backend="numba")
    exact_loss, exact_grad = torch_ctc(logits.astype(np.float64), *args, "none", False)
    np.testing.assert_allclose(loss, exact_loss, rtol=PARITY_RTOL_FLOAT32)
    np.testing.assert_allclose(grad, exact_grad, atol=PARITY_ATOL_FLOAT32)
