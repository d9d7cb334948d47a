"""Device-resident pieces of a training step: parameters, gradients and the Adam state
stay on the GPU, and only scalars (the loss, the gradient norm) come back.

These mirror :mod:`npspeech.optim` (``global_norm``, ``clip_grad_norm``,
``adam_step``) and the loss reduction of :meth:`npspeech.train.Trainer`, on dicts of
CuPy arrays and in place, which is what a device-resident step needs: the functional
NumPy versions allocate new arrays each step and read every gradient back to the host
for the norm. The state layout is the one of :mod:`npspeech.optim` (``"step"`` plus
``"exp_avg.<name>"`` and ``"exp_avg_sq.<name>"`` arrays), so :func:`to_host` of a device
state is a checkpointable NumPy state and :func:`to_device` of a loaded one resumes it:
checkpoints are the same files as on the CPU.
"""

from __future__ import annotations

import math

import numpy as np

from ._runtime import cupy, to_device, to_host
from .ctc import ctc_loss_and_grad
from .layers import adam_inplace

__all__ = [
    "adam_step_",
    "clip_grad_norm_",
    "ctc_batch_loss",
    "global_norm",
    "to_device",
    "to_host",
]

#: torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing (as
#: npspeech.optim.CLIP_NORM_EPS; not imported, since backends import nothing above them)
CLIP_NORM_EPS = 1e-6


def global_norm(grads) -> float:
    """The 2-norm of every gradient together (float64 sums on the device); one
    scalar comes back."""
    xp = cupy()
    squares = xp.zeros((), dtype=np.float64)
    for grad in grads.values():
        flat = grad.reshape(-1).astype(np.float64)
        squares += flat @ flat
    return math.sqrt(float(squares))


def clip_grad_norm_(grads, max_norm: float) -> float:
    """Scale device gradients in place as ``torch.nn.utils.clip_grad_norm_`` (factor
    ``min(1, max_norm / (norm + 1e-6))``); the norm before clipping."""
    total = global_norm(grads)
    factor = min(1.0, max_norm / (total + CLIP_NORM_EPS))
    if factor < 1.0:
        for grad in grads.values():
            grad *= grad.dtype.type(factor)
    return total


def adam_step_(
    params,
    grads,
    state,
    lr: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> None:
    """One Adam/AdamW update of device parameters and state, in place (one fused
    kernel per parameter array); ``state["step"]`` counts on the host."""
    step = int(state["step"]) + 1
    beta1, beta2 = (float(beta) for beta in betas)
    for name, param in params.items():
        adam_inplace(
            param,
            grads[name],
            state[f"exp_avg.{name}"],
            state[f"exp_avg_sq.{name}"],
            float(lr),
            beta1,
            beta2,
            float(eps),
            float(weight_decay),
            bool(decoupled),
            step,
        )
    state["step"] = step


def ctc_batch_loss(logits, targets, offsets, output_lengths, target_lengths, blank):
    """CTC over a device batch, as the trainer reduces it: the mean loss over the
    batch (one scalar back, ``inf`` when a sequence has no alignment) and
    ``dlogits`` already divided by the batch size, on the device.

    logits (T, B, V) device float; targets int32 (sum L,), offsets int64 (B,),
    output_lengths and target_lengths int32 (B,) -> (float, (T, B, V) device array).
    """
    losses, grad = ctc_loss_and_grad.device_kernel(
        logits, targets, offsets, output_lengths, target_lengths, blank
    )
    B = logits.shape[1]
    grad /= grad.dtype.type(B)
    return float(losses.astype(np.float64).mean()), grad
