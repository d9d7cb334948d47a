"""The device-resident training step of :class:`npspeech.train.Trainer` (cupy backend).

With ``backend = "cupy"`` the trainer keeps the weights, the batch-norm state and the
Adam moments on the GPU between steps. Each step uploads its batch once (features,
lengths, targets; the dropout masks drawn by the host RNG, so that a GPU run draws the
same masks as a CPU run from the same seed), runs forward, CTC and backward on the
device, exchanges the gradient on the device (:mod:`npspeech.distributed.nccl` when
several ranks train), clips and updates in place; only scalars come back: whether the
outputs are finite, the loss sum and the gradient norm.

Files stay the CPU's files: :meth:`DeviceSteps.host_state` copies the state to the host
for checkpoints, the model file and dev evaluation, so a model trained on a GPU decodes
on a CPU without CuPy, and a run resumes on any backend.

Every architecture runs on the device: ``deepspeech``, and ``ds2`` and ``ds2-stream``,
whose convolution, batch-norm, recurrent and lookahead layers (:mod:`npspeech.nn`)
allocate on the device of their inputs; their batch-norm running statistics are
device arrays between steps, as the weights are.
"""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType
from typing import Any

import numpy as np

from . import checkpoint, models
from .distributed import data_parallel

#: architectures whose whole step runs on the device
DEVICE_ARCHITECTURES = ("deepspeech", "ds2", "ds2-stream")


def wanted(backend: ModuleType, architecture: str) -> bool:
    """Whether a trainer on ``backend`` keeps its state on the device."""
    return getattr(backend, "NAME", "") == "cupy" and (
        architecture in DEVICE_ARCHITECTURES
    )


class DeviceSteps:
    """The device halves of a training step; the trainer calls them in place of the
    host functions of the same names.

    Parameters
    ----------
    collective : Collective
        Picks this rank's GPU (:meth:`Collective.select_device`) before anything is
        allocated.
    """

    def __init__(self, collective: Any, freeze_batch_norm: bool = False):
        from .backends.cupy_gpu import train_step

        #: ``train.freeze_batch_norm``: forward passes normalise with the stored
        #: statistics (see :func:`npspeech.models.forward`)
        self.freeze_batch_norm = freeze_batch_norm
        collective.select_device()
        self.kernels = train_step
        self.xp = train_step.cupy()

    # -- where the state lives ---------------------------------------------------------
    def upload_state(self, state: checkpoint.TrainingState) -> None:
        """Move the weights, the batch-norm state and the optimizer state to the
        device; arrays already there are left as they are (a no-op after the first
        step)."""
        network, to_device = state.network, self.kernels.to_device
        network.params = to_device(network.params)
        network.state = to_device(network.state)
        state.optimizer = to_device(state.optimizer)

    def host_state(self, state: checkpoint.TrainingState) -> checkpoint.TrainingState:
        """``state`` with host copies of its arrays (the same record and counters):
        what checkpoints, the model file and dev evaluation read."""
        to_host, network = self.kernels.to_host, state.network
        host_network = models.Network(
            network.config,
            network.n_input,
            network.n_classes,
            to_host(network.params),
            to_host(network.state),
        )
        return dataclasses.replace(
            state, network=host_network, optimizer=to_host(state.optimizer)
        )

    # -- the step ----------------------------------------------------------------------
    def local_gradients(
        self,
        network: models.Network,
        batch: Any,
        B: int,
        where: str,
        rng: np.random.Generator,
    ) -> data_parallel.LocalGradients:
        """:meth:`Trainer._local_gradients` on the device: gradients of this rank's
        rows ``batch`` (None: no rows) of a global batch of ``B`` utterances, scaled by
        ``1 / B``; ``where`` names the batch in messages ("batch 3 of epoch 0")."""
        from . import ctc

        xp = self.xp
        nothing = data_parallel.LocalGradients(
            {name: xp.zeros_like(value) for name, value in network.params.items()},
            0.0,
            "",
            network.state,
            0,
        )
        if batch is None:
            return nothing
        names = ", ".join(u.source for u in batch.utterances)
        features = xp.asarray(batch.features)  # (T, b, F): the one large upload
        with np.errstate(all="ignore"):
            logits, output_lengths, cache = models.forward(
                network,
                features,
                batch.lengths,
                training=True,
                rng=rng,
                backend="cupy",
                frozen_batch_norm=self.freeze_batch_norm,
            )
        valid = models.frame_mask(xp.asarray(output_lengths), logits.shape[0], bool)
        if not bool(xp.isfinite(xp.where(valid, logits, 0)).all()):
            return dataclasses.replace(
                nothing,
                problem=f"non-finite network output in {where} ({names}); "
                "batch skipped",
            )
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses, dlogits = ctc.ctc_loss(
                logits,
                batch.targets,
                output_lengths,
                batch.target_lengths,
                blank=network.n_classes - 1,
                reduction="none",
                backend="cupy",
            )
        loss_sum = float(losses.astype(np.float64).sum())  # one scalar back
        if not math.isfinite(loss_sum):  # CTC losses are >= 0: a NaN or inf is here
            host = losses.get()
            bad = [
                u.source
                for u, loss in zip(batch.utterances, host, strict=True)
                if not np.isfinite(loss)
            ]
            detail = "; ".join(str(w.message) for w in caught)
            return dataclasses.replace(
                nothing,
                problem=f"non-finite CTC loss for {', '.join(bad)} in {where}; "
                "batch skipped" + (f" ({detail})" if detail else ""),
            )
        dlogits /= dlogits.dtype.type(B)  # the mean over the global batch
        with np.errstate(all="ignore"):
            grads = models.backward(network, dlogits, cache, backend="cupy")
        return data_parallel.LocalGradients(
            grads, loss_sum, "", cache.state, len(batch.utterances)
        )

    def clip_grad_norm(self, grads: dict, max_norm: float) -> tuple[dict, float]:
        """:func:`npspeech.optim.clip_grad_norm` in place on device gradients."""
        return grads, self.kernels.clip_grad_norm_(grads, max_norm)

    def global_norm(self, grads: dict) -> float:
        """:func:`npspeech.optim.global_norm` of device gradients (a float)."""
        return self.kernels.global_norm(grads)

    def adam_step(
        self, params: dict, grads: dict, state: dict, lr: float, **options: Any
    ) -> tuple[dict, dict]:
        """:func:`npspeech.optim.adam_step` in place on the device arrays (the step
        owns them); returns ``params`` and ``state`` themselves."""
        options.pop("backend", None)
        self.kernels.adam_step_(params, grads, state, lr, **options)
        return params, state
