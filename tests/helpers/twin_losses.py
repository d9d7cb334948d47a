"""The two sides of a PyTorch-twin gradient test: npspeech's training-step loss and
gradients, and the twin's CTC loss on the same batch, both averaged over the batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from npspeech import ctc, models


def npspeech_loss_and_grads(
    network: Any, features: np.ndarray, lengths: np.ndarray, targets: list
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-utterance CTC losses ``(B,)`` and the gradients of their mean, as the
    trainer's step computes them (NumPy reference backend, training mode).

    ``features`` is ``(T, B, F)``; ``targets`` a list of ``B`` int label arrays."""
    flat = np.concatenate(targets).astype(np.int32)
    target_lengths = np.array([t.size for t in targets], dtype=np.int32)
    logits, output_lengths, cache = models.forward(
        network, features, lengths, training=True, backend="numpy"
    )
    losses, dlogits = ctc.ctc_loss(
        logits,
        flat,
        output_lengths,
        target_lengths,
        reduction="none",
        backend="numpy",
    )
    grads = models.backward(network, dlogits / len(targets), cache, backend="numpy")
    return losses, grads


def torch_mean_ctc(torch: Any, logits: Any, output_lengths: Any, targets: list) -> Any:
    """The twin's loss: PyTorch's CTC (blank last) summed over the batch, divided by
    its size. ``logits`` is a ``(T, B, V)`` tensor; ``output_lengths`` ``(B,)`` ints."""
    flat = np.concatenate(targets).astype(np.int64)
    target_lengths = np.array([t.size for t in targets], dtype=np.int64)
    loss = torch.nn.functional.ctc_loss(
        logits.log_softmax(-1),
        torch.from_numpy(flat),
        torch.from_numpy(np.asarray(output_lengths, dtype=np.int64)),
        torch.from_numpy(target_lengths),
        blank=logits.shape[-1] - 1,
        reduction="sum",
    )
    return loss / len(targets)
