"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint uses the model file's container (:func:`npspeech.modelfile.save_archive`:
an ``.npz`` with JSON metadata and a SHA-256 over all of it, written atomically) and
holds the network, the optimizer state, the learning-rate schedule, the position in the
epoch (epoch and next batch), the early-stopping record and the run's configuration.
Dropout and augmentation draw from generators seeded by ``(seed, epoch, batch)``, so the
position is all the random state a resumed run needs.

Nested optimizer and schedule states (dicts of arrays, numbers and strings) are stored
by replacing each array with a ``{"__array__": NAME}`` reference in the JSON and the
array itself under ``NAME`` in the archive.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from .config import ModelConfig, from_dict, to_dict
from .errors import ModelFileError
from .modelfile import load_archive, save_archive
from .models import Network

FORMAT_NAME = "npspeech-checkpoint"
FORMAT_VERSION = 1
_ARRAY_REF = "__array__"


@dataclasses.dataclass
class TrainingState:
    """A run's state between two steps.

    Attributes
    ----------
    network : Network
    optimizer : dict
        The optimizer's state (arrays, integer step).
    schedule : dict
        The plateau schedule's state.
    epoch : int
        Current epoch (0-based).
    batch : int
        Index of the next batch of ``epoch`` to train on.
    step : int
        Optimizer steps taken over the whole run.
    learning_rate : float
        Rate for the next step.
    record : dict
        Everything else the loop tracks across epochs (best dev metrics, epochs without
        improvement, skipped batches, audio seconds seen, elapsed time).
    config : dict
        The run's :class:`~npspeech.config.TrainConfig` as a dict.
    alphabet : list of str
    """

    network: Network
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    epoch: int
    batch: int
    step: int
    learning_rate: float
    record: dict[str, Any]
    config: dict[str, Any]
    alphabet: list[str]


def _split(value: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON-able copy of ``value`` with arrays moved into ``arrays``."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {_ARRAY_REF: prefix}
    if isinstance(value, dict):
        return {str(k): _split(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`_split`."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY_REF}:
            return arrays[value[_ARRAY_REF]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def save(path: str | os.PathLike, state: TrainingState) -> Path:
    """Atomically write ``state`` to ``path``."""
    network = state.network
    arrays: dict[str, np.ndarray] = {}
    arrays.update({f"params/{k}": v for k, v in network.params.items()})
    arrays.update({f"state/{k}": v for k, v in network.state.items()})
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": to_dict(network.config),
        "n_input": network.n_input,
        "n_classes": network.n_classes,
        "optimizer": _split(state.optimizer, "optimizer", arrays),
        "schedule": _split(state.schedule, "schedule", arrays),
        "epoch": state.epoch,
        "batch": state.batch,
        "step": state.step,
        "learning_rate": state.learning_rate,
        "record": _split(state.record, "record", arrays),
        "config": state.config,
        "alphabet": state.alphabet,
    }
    return save_archive(path, meta, arrays)


def load(path: str | os.PathLike) -> TrainingState:
    """Read a checkpoint written by :func:`save`.

    Raises
    ------
    ModelFileError
        For a missing, truncated, foreign, newer or modified checkpoint.
    """
    meta, arrays = load_archive(
        path, format_name=FORMAT_NAME, format_version=FORMAT_VERSION, what="checkpoint"
    )
    try:
        network = Network(
            from_dict(ModelConfig, meta["model"], where="model"),
            int(meta["n_input"]),
            int(meta["n_classes"]),
            {
                k[len("params/") :]: v
                for k, v in arrays.items()
                if k.startswith("params/")
            },
            {
                k[len("state/") :]: v
                for k, v in arrays.items()
                if k.startswith("state/")
            },
        )
        return TrainingState(
            network=network,
            optimizer=_join(meta["optimizer"], arrays),
            schedule=_join(meta["schedule"], arrays),
            epoch=int(meta["epoch"]),
            batch=int(meta["batch"]),
            step=int(meta["step"]),
            learning_rate=float(meta["learning_rate"]),
            record=_join(meta["record"], arrays),
            config=dict(meta["config"]),
            alphabet=list(meta["alphabet"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(
            f"{path}: checkpoint metadata is incomplete ({error})"
        ) from None
