"""The training loop: CTC with Adam, dev evaluation, checkpoints, exact resume.

:func:`train` takes a :class:`~npspeech.config.TrainConfig` (never argv) and writes into
``config.output_dir``:

- ``checkpoint_last.npz``: the whole run state (see :mod:`npspeech.checkpoint`), written
  every ``checkpoint_minutes`` and at the end of each epoch;
- ``checkpoint_best.npz`` and ``model.npz``: the state and the model file of the epoch
  with the best dev WER (the last epoch when there is no dev set);
- ``log.jsonl``: one JSON object per step and per epoch;
- ``curves.png``: loss and WER curves (see :func:`plot_run`);
- ``config.json``: the configuration of the run.

Every file is written atomically, so a run killed at any moment resumes
(``resume=True``) from its last checkpoint with nothing lost: the checkpoint holds the
weights, the optimizer moments, the schedule, the early-stopping record and the position
in the epoch, and every random draw (shuffling, augmentation, dropout) is seeded by
``(seed, epoch, batch)``, so the resumed run computes exactly what the uninterrupted one
would have.

A folder that already holds a run (its last checkpoint or model file) is refused
unless the run is resumed or ``overwrite=True`` replaces it; replacing removes nothing
before the new run has set up and writes its own files.

Data-parallel training: given a :class:`~npspeech.distributed.Collective` of several
ranks (``mpirun -n N npspeech train``), every rank trains on its share of each global
batch and applies the same update (see :mod:`npspeech.distributed.mpi`); rank 0 alone
writes the files above and shows progress. The checkpoint records the position in
global batches, so a run resumes with any number of ranks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, fpenv, memory, models, quantize, train_device, train_log
from .alphabet import Alphabet
from .config import TrainConfig, from_dict, to_dict
from .curves import LOG_FILE as LOG_FILE  # the run's log, named for callers
from .curves import PLOT_FILE, plot_run, read_log
from .distributed import data_parallel
from .distributed.collective import Collective
from .errors import ConfigError

LAST_CHECKPOINT = "checkpoint_last.npz"
BEST_CHECKPOINT = "checkpoint_best.npz"
MODEL_FILE = "model.npz"
CONFIG_FILE = "config.json"
# the fourth seed word of the dropout generators (see _step_rng)
_DROPOUT_STREAM = 0x0D50


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    output_dir: Path
    model_path: Path
    epochs: int  # epochs completed
    steps: int  # optimizer steps taken
    skipped_batches: int  # batches skipped for a non-finite loss or gradient
    best_dev_wer: float | None
    best_dev_loss: float | None
    stopped: str  # "epochs", "early_stop", "target_wer", "max_steps"


#: Files that mark a folder as holding a run, and those a replacing run removes.
_RUN_MARKERS = (LAST_CHECKPOINT, MODEL_FILE)
_STALE_ON_REPLACE = (BEST_CHECKPOINT, MODEL_FILE, PLOT_FILE)


class Trainer:
    """One training run. :func:`train` is the usual entry point.

    Parameters
    ----------
    config : TrainConfig
    resume : bool
        Continue from ``output_dir/checkpoint_last.npz`` (it must exist).
    augmentation : npspeech.augment.AugmentConfig, optional
    overwrite : bool
        Replace a run already in ``output_dir`` (else :meth:`run` refuses to start
        there unless resuming).
    collective : npspeech.distributed.Collective, optional
        The ranks of a data-parallel run; None for a single process.
    on_epoch : callable, optional
        Called on rank 0 with each epoch's log entry (``train_loss``, ``dev_wer``,
        ``dev_cer``, ``dev_loss``, ``lr``, ...) as the epoch ends.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        augmentation: Any = None,
        overwrite: bool = False,
        collective: Collective | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ):
        from . import data
        from .backends import get_backend

        self.config = config
        self.output_dir = Path(config.output_dir)
        self.collective = collective if collective is not None else Collective()
        self.on_epoch = on_epoch
        self.backend = get_backend(config.backend)
        _validate(config)
        #: the device-resident step (cupy backend), else None: the host step
        self.device = None
        if train_device.wanted(self.backend, config.model.architecture):
            self.device = train_device.DeviceSteps(
                self.collective, config.freeze_batch_norm
            )
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        self.resume, self.overwrite = resume, overwrite
        # Rank 0 reads the run's files; the others receive what it read (or its
        # error), so that no rank needs the output folder.
        collective = self.collective
        resumed = collective.root_call(self._load_resume_state) if resume else None
        init_model = None
        if resumed is None and config.init_from:
            from . import modelfile

            init_model = collective.root_call(lambda: modelfile.load(config.init_from))
        self.features = (
            init_model.features if init_model is not None else config.features
        )
        self.alphabet = self._alphabet(init_model, resumed)
        self.cache = data.FeatureCache(self.features, config.feature_cache_dir or None)
        utterances = data.read_csvs(config.train_csv)
        self.train_set, durations = data.validate_corpus(
            utterances,
            self.alphabet,
            self.features,
            skip_bad=config.skip_bad_rows,
            progress=config.progress and self.collective.is_root,
        )
        self.train_seconds = float(sum(durations))
        self.loader = data.BatchLoader(
            self.train_set,
            self.alphabet,
            self.features,
            self.cache,
            frames_budget=config.batch_frames,
            max_batch_size=config.max_batch_size or None,
            seed=config.seed,
            sortagrad=config.sortagrad,
            augmentation=augmentation,
            durations=durations,
        )
        self.dev_set: list[Any] = []
        self.dev_durations: list[float] = []
        if config.dev_csv:
            self.dev_set, self.dev_durations = data.validate_corpus(
                data.read_csvs(config.dev_csv),
                self.alphabet,
                self.features,
                skip_bad=config.skip_bad_rows,
                progress=config.progress and self.collective.is_root,
            )
        from .features import n_features

        if resumed is not None:
            self.state = resumed
        else:
            network = self._initial_network(init_model, n_features(self.features))
            # Every rank initialised from the same seed; rank 0's weights are sent to
            # all anyway, so that nothing can make the replicas start apart.
            self.state = collective.broadcast(
                _fresh_state(network, config, self.alphabet)
            )
        self._last_save = time.monotonic()
        # Steps run with subnormal floats flushed to zero (see npspeech.fpenv); False
        # leaves the processor's setting off, for measuring what the flush saves.
        self.flush_subnormals = True

    # -- setup -------------------------------------------------------------------------
    def _load_resume_state(self) -> checkpoint.TrainingState:
        path = self.output_dir / LAST_CHECKPOINT
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {path}")
        state = checkpoint.load(path)
        stored = from_dict(TrainConfig, state.config, where="checkpoint config")
        # A resumed run may train longer or stop differently; the model and data may not
        # change under it.
        for name in (
            "model",
            "features",
            "train_csv",
            "seed",
            "batch_frames",
            "max_batch_size",
            "sortagrad",
        ):
            if getattr(stored, name) != getattr(self.config, name) and not (
                name in ("model", "features") and self.config.init_from
            ):
                raise ConfigError(
                    f"--resume: {name} differs from the checkpointed run's "
                    f"({getattr(stored, name)!r} there); start a new output_dir instead"
                )
        return state

    def _alphabet(self, init_model: Any, resumed: Any) -> Alphabet:
        if resumed is not None:
            return Alphabet(resumed.alphabet)
        if self.config.alphabet:
            return Alphabet.from_file(self.config.alphabet)
        if init_model is not None:
            return init_model.alphabet
        raise ConfigError("train.alphabet is required (or init_from a model file)")

    def _initial_network(self, init_model: Any, n_input: int) -> models.Network:
        config = self.config
        rng = np.random.default_rng([config.seed, 0x1417])  # initialisation stream
        if init_model is None:
            return models.init(config.model, n_input, self.alphabet.n_classes, rng)
        # An int8 file trains on from its dequantized weights, saved as float32.
        network = quantize.float_network(init_model.network)
        if network.n_classes != self.alphabet.n_classes or (
            init_model.alphabet != self.alphabet
        ):
            network = models.with_classes(network, self.alphabet.n_classes, rng)
        if config.reinit_layers:
            names = models.layer_names(network.config)
            if config.reinit_layers > len(names):
                raise ConfigError(
                    f"train.reinit_layers {config.reinit_layers} exceeds the "
                    f"{len(names)} layers of {network.config.architecture}"
                )
            network = models.reinitialize(network, names[-config.reinit_layers :], rng)
        # Dropout is a training choice: take this run's, keep the architecture's sizes.
        network.config = dataclasses.replace(
            network.config, dropout=config.model.dropout
        )
        return network

    # -- one step ----------------------------------------------------------------------
    def train_step(self, batch: Any, epoch: int, index: int) -> dict[str, Any]:
        """Forward, CTC, backward, clip and update on one batch.

        A batch whose loss or gradient is not finite is skipped with a warning naming
        its utterances; the weights and optimizer state are then left untouched. The
        step runs with subnormal floats flushed to zero (:mod:`npspeech.fpenv`) unless
        ``flush_subnormals`` is False, and takes its large arrays from the buffers that
        earlier steps freed (:mod:`npspeech.memory`).

        Returns
        -------
        dict
            ``loss`` (mean CTC loss per utterance), ``grad_norm``, ``skipped`` (bool),
            ``audio_seconds``.
        """
        with fpenv.flushing(self.flush_subnormals), memory.pooled_arrays():
            return self._train_step(batch, epoch, index)

    def _train_step(self, batch: Any, epoch: int, index: int) -> dict[str, Any]:
        from . import optim

        state, config, collective = self.state, self.config, self.collective
        network = state.network
        collective.before_step(state.step)
        seconds = float(batch.lengths.sum()) * self.features.step_ms / 1000.0
        result = {
            "loss": float("nan"),
            "grad_norm": float("nan"),
            "skipped": True,
            "audio_seconds": seconds,
        }
        B = len(batch.utterances)  # the global batch; a rank trains on its rows
        share = batch
        if collective.size > 1:
            share = data_parallel.batch_rows(batch, collective.rows(B))
        # Each rank draws dropout masks for its own rows (a rank-free seed would give
        # every rank the same masks); one process keeps the seed it always had.
        seed = [config.seed, epoch, index, _DROPOUT_STREAM]
        if collective.size > 1:
            seed.append(collective.rank)
        rng = np.random.default_rng(seed)
        device = self.device  # None: the host functions
        if device is None:
            local = self._local_gradients(share, B, epoch, index, rng)
        else:
            device.upload_state(state)
            where = f"batch {index} of epoch {epoch}"
            local = device.local_gradients(network, share, B, where, rng)
        grads, loss_sum, net_state = local.grads, local.loss_sum, local.state
        problem = bool(local.problem)
        if collective.size > 1:
            grads, loss_sum, problem, net_state = data_parallel.sum_over_ranks(
                collective,
                local,
                network.state,
                what=f"gradient exchange of step {state.step + 1}",
            )
        if problem:
            self._skip(
                local.problem
                or f"batch {index} of epoch {epoch} skipped: another rank met a "
                "non-finite network output or CTC loss (see its warning)"
            )
            return result
        with np.errstate(all="ignore"):
            # The norm of the summed gradient: clipping sees the global gradient. A
            # non-finite norm makes the clip factor 0 and inf * 0 = NaN: harmless, as
            # such a batch is skipped just below.
            steps = optim if device is None else device
            if config.clip_norm > 0:
                grads, norm = steps.clip_grad_norm(grads, config.clip_norm)
            else:
                norm = steps.global_norm(grads)
        if not math.isfinite(norm):
            names = ", ".join(u.source for u in batch.utterances)
            self._skip(
                f"non-finite gradient (norm {norm}) in batch {index} of epoch "
                f"{epoch} ({names}); batch skipped"
            )
            return result
        params, optimizer = steps.adam_step(
            network.params,
            grads,
            state.optimizer,
            state.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
            decoupled=config.weight_decay > 0,
            backend=self.backend,
        )
        network.params = params
        network.state = net_state
        state.optimizer = optimizer
        state.step += 1
        result.update(loss=float(loss_sum) / B, grad_norm=float(norm), skipped=False)
        return result

    def _local_gradients(
        self, batch: Any, B: int, epoch: int, index: int, rng: np.random.Generator
    ) -> data_parallel.LocalGradients:
        """Forward, CTC and backward on this rank's rows ``batch`` (None: no rows) of a
        global batch of ``B`` utterances, the gradient scaled by ``1 / B``."""
        from . import ctc

        network = self.state.network
        nothing = data_parallel.LocalGradients(
            {name: np.zeros_like(value) for name, value in network.params.items()},
            0.0,
            "",
            network.state,
            0,
        )
        if batch is None:
            return nothing
        names = ", ".join(u.source for u in batch.utterances)
        with np.errstate(all="ignore"):  # non-finite values are reported below instead
            logits, output_lengths, cache = models.forward(
                network,
                batch.features,
                batch.lengths,
                training=True,
                rng=rng,
                backend=self.backend,
                frozen_batch_norm=self.config.freeze_batch_norm,
            )
        valid = models.frame_mask(output_lengths, logits.shape[0], bool)[:, :, 0]
        if not np.isfinite(logits[valid]).all():
            return dataclasses.replace(
                nothing,
                problem=f"non-finite network output in batch {index} of epoch "
                f"{epoch} ({names}); batch skipped",
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses, dlogits = ctc.ctc_loss(
                logits,
                batch.targets,
                output_lengths,
                batch.target_lengths,
                blank=network.n_classes - 1,
                reduction="none",
                backend=self.backend,
            )
        losses = np.asarray(losses, dtype=np.float64)
        if not np.isfinite(losses).all():
            bad = [
                u.source
                for u, loss in zip(batch.utterances, losses, strict=True)
                if not np.isfinite(loss)
            ]
            detail = "; ".join(str(w.message) for w in caught)
            return dataclasses.replace(
                nothing,
                problem=f"non-finite CTC loss for {', '.join(bad)} in batch {index} "
                f"of epoch {epoch}; batch skipped" + (f" ({detail})" if detail else ""),
            )
        # The mean over the global batch, as DeepSpeech: summed over the ranks, these
        # gradients are the single-process gradient of the whole batch.
        dlogits = dlogits / dlogits.dtype.type(B)
        with np.errstate(all="ignore"):
            grads = models.backward(network, dlogits, cache, backend=self.backend)
        return data_parallel.LocalGradients(
            grads, float(losses.sum()), "", cache.state, len(batch.utterances)
        )

    def _skip(self, message: str) -> None:
        self.state.record["skipped_batches"] = (
            self.state.record.get("skipped_batches", 0) + 1
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- the loop ----------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> TrainResult:
        """Train until the epochs run out, early stopping, the target WER, or
        ``max_steps`` optimizer steps (then the last checkpoint is written and the run
        can be resumed)."""
        config, state, collective = self.config, self.state, self.collective
        replacing = collective.root_call(self._check_output_dir)
        if collective.is_root:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            from .fileio import write_text_atomically

            write_text_atomically(
                self.output_dir / CONFIG_FILE,
                json.dumps(to_dict(config), indent=2, sort_keys=True),
            )
            self._trim_log()
            if replacing:
                # The new run has set up and begun writing: now the old run's files
                # go, so that the folder never mixes the two runs.
                for name in _STALE_ON_REPLACE:
                    (self.output_dir / name).unlink(missing_ok=True)
                self._save_last()
        stopped = state.record.get("stopped") or ""
        if stopped == "epochs" and state.epoch < config.epochs:
            stopped = ""  # a finished run resumed with more epochs goes on
        if collective.is_root:
            from .jit_notice import announce_compilation

            announce_compilation()  # "compiling kernels, first run only", once
        while not stopped and state.epoch < config.epochs:
            epoch = state.epoch
            progress = _progress_bar(
                len(self.loader),
                state.batch,
                epoch,
                config.progress and collective.is_root,
            )
            for index, batch in enumerate(
                self.loader.iterate(epoch, state.batch), start=state.batch
            ):
                started = time.monotonic()
                step = self.train_step(batch, epoch, index)
                state.batch = index + 1
                self._record_step(step, batch, epoch, index, time.monotonic() - started)
                if progress is not None:
                    progress.update(1)
                    # audio seconds trained per wall-clock second; tqdm adds the ETA
                    progress.set_postfix(
                        loss=f"{step['loss']:.3f}",
                        audio_s_per_s=f"{step['audio_seconds_per_second']:.1f}",
                    )
                if max_steps is not None and state.step >= max_steps:
                    stopped = "max_steps"
                    break
                if time.monotonic() - self._last_save >= config.checkpoint_minutes * 60:
                    self._save_last()
            if progress is not None:
                progress.close()
            if stopped:
                break
            stopped = self._end_epoch()
        if stopped != "max_steps":  # finished; a run stopped at max_steps can go on
            stopped = stopped or "epochs"
            state.record["stopped"] = stopped
        self._save_last()
        model_path = self._export_model()
        if stopped != "max_steps" and collective.is_root:
            try:
                plot_run(self.output_dir)
            except Exception as error:  # a missing font must not fail a finished run
                warnings.warn(
                    f"could not plot the training curves: {error}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        record = state.record
        return TrainResult(
            output_dir=self.output_dir,
            model_path=model_path,
            epochs=state.epoch,
            steps=state.step,
            skipped_batches=int(record.get("skipped_batches", 0)),
            best_dev_wer=record.get("best_dev_wer"),
            best_dev_loss=record.get("best_dev_loss"),
            stopped=stopped,
        )

    def _record_step(
        self, step: dict[str, Any], batch: Any, epoch: int, index: int, seconds: float
    ) -> None:
        """Epoch totals in the run record (checkpointed) and a line in the log."""
        record = self.state.record
        step["audio_seconds_per_second"] = step["audio_seconds"] / max(seconds, 1e-9)
        record["audio_seconds"] = (
            record.get("audio_seconds", 0.0) + step["audio_seconds"]
        )
        if not step["skipped"]:
            size = len(batch.utterances)
            record["epoch_loss_sum"] = (
                record.get("epoch_loss_sum", 0.0) + step["loss"] * size
            )
            record["epoch_utterances"] = record.get("epoch_utterances", 0) + size
        self._log(
            {
                "event": "step",
                "epoch": epoch,
                "batch": index,
                "step": self.state.step,
                "loss": step["loss"],
                "grad_norm": step["grad_norm"],
                "lr": self.state.learning_rate,
                "skipped": step["skipped"],
                "audio_seconds_per_second": step["audio_seconds_per_second"],
                "ranks": self.collective.size,
            }
        )

    def _end_epoch(self) -> str:
        """Dev evaluation, schedule, best model and early stopping; returns why to stop
        ("" to go on). Ends with the epoch checkpoint."""
        from . import optim

        config, state = self.config, self.state
        record = state.record
        train_loss = record.get("epoch_loss_sum", 0.0) / max(
            record.get("epoch_utterances", 0), 1
        )
        entry: dict[str, Any] = {
            "event": "epoch",
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": train_loss,
            "lr": state.learning_rate,
        }
        if config.batch_norm_utterances > 0 and state.network.state:
            entry["batch_norm_utterances"] = self._recompute_batch_norm()
        improved = True
        metric = train_loss
        if self.dev_set:
            evaluation = self.evaluate_dev()
            entry.update(
                dev_loss=evaluation.loss, dev_wer=evaluation.wer, dev_cer=evaluation.cer
            )
            improved = record.get("best_dev_wer") is None or (
                evaluation.wer,
                evaluation.loss,
            ) < (record["best_dev_wer"], record["best_dev_loss"])
            if improved:
                record["best_dev_wer"] = evaluation.wer
                record["best_dev_loss"] = evaluation.loss
                record["best_epoch"] = state.epoch
            metric = (
                evaluation.wer if config.early_stop_metric == "wer" else evaluation.loss
            )
        schedule = optim.ReduceOnPlateau.from_state(state.schedule)
        state.learning_rate = schedule.step(metric if math.isfinite(metric) else 1e30)
        state.schedule = schedule.state
        best_metric = record.get("best_stop_metric")
        if best_metric is None or metric < best_metric:
            record["best_stop_metric"] = metric
            record["epochs_without_improvement"] = 0
        else:
            record["epochs_without_improvement"] = (
                record.get("epochs_without_improvement", 0) + 1
            )
        self._log(entry)
        if self.on_epoch is not None and self.collective.is_root:
            self.on_epoch(dict(entry))
        state.epoch += 1
        state.batch = 0
        record["epoch_loss_sum"] = 0.0
        record["epoch_utterances"] = 0
        stop = ""
        if (
            self.dev_set
            and config.target_dev_wer >= 0
            and entry["dev_wer"] <= config.target_dev_wer
        ):
            stop = "target_wer"
        elif (
            config.early_stop_patience > 0
            and record["epochs_without_improvement"] >= config.early_stop_patience
        ):
            stop = "early_stop"
        if improved and self.collective.is_root:
            checkpoint.save(self.output_dir / BEST_CHECKPOINT, self._host_state())
            self._export_model(best=True)
        if stop:
            record["stopped"] = stop
        self._save_last()
        return stop

    def _recompute_batch_norm(self) -> int:
        """Replace the running batch-norm statistics by their mean over a sample of
        training utterances (``train.batch_norm_utterances``, drawn from the seed and
        epoch, so a resumed run draws the same); returns the sample's size. Every rank
        computes the same sample, so the replicas stay equal without communication."""
        from . import batch_norm_stats

        config, state = self.config, self.state
        chosen = batch_norm_stats.sample_indices(
            len(self.train_set), config.batch_norm_utterances, config.seed, state.epoch
        )
        fresh = batch_norm_stats.recompute(
            self._host_state().network,
            [self.cache.get(self.train_set[i]) for i in chosen],
            frames_budget=config.batch_frames,
            max_batch_size=config.max_batch_size or None,
            backend=self.backend,
        )
        state.network.state = fresh
        if self.device is not None:
            self.device.upload_state(state)
        return len(chosen)

    def evaluate_dev(self) -> Any:
        """Greedy WER/CER and mean CTC loss of the current weights on the dev set.

        With several ranks each evaluates a share of the rows (similar amounts of
        audio) and the per-row results are gathered, so every rank gets the same
        :class:`~npspeech.inference.Evaluation`, rows in corpus order.
        """
        from .inference import evaluate

        collective = self.collective
        indices = list(range(len(self.dev_set)))
        if collective.size > 1:
            indices = collective.spread(self.dev_durations)
        evaluation = None
        if indices:
            evaluation = evaluate(
                self._host_state().network,
                [self.dev_set[i] for i in indices],
                self.alphabet,
                self.features,
                cache=self.cache,
                frames_budget=self.config.batch_frames,
                backend=self.backend,
                durations=[self.dev_durations[i] for i in indices],
            )
        if collective.size == 1:
            return evaluation
        return data_parallel.gather_evaluation(collective, indices, evaluation)

    # -- files -------------------------------------------------------------------------
    def _host_state(self) -> checkpoint.TrainingState:
        """The run state with its arrays on the host (itself on a CPU backend)."""
        return self.state if self.device is None else self.device.host_state(self.state)

    def _check_output_dir(self) -> bool:
        """Whether this run replaces one in ``output_dir``; refuses (ConfigError) a
        folder holding a run unless resuming it or ``overwrite``."""
        if self.resume:
            return False
        found = [name for name in _RUN_MARKERS if (self.output_dir / name).is_file()]
        if found and not self.overwrite:
            raise ConfigError(
                f"{self.output_dir} already holds a training run ({', '.join(found)}); "
                "pass --resume to continue it, --overwrite to replace it, or choose "
                "another output_dir"
            )
        return bool(found)

    def _save_last(self) -> None:
        if not self.collective.is_root:
            return
        checkpoint.save(self.output_dir / LAST_CHECKPOINT, self._host_state())
        self._last_save = time.monotonic()

    def _export_model(self, best: bool = False) -> Path:
        """Write ``model.npz`` from the current state (``best``) or, at the end, from
        the best checkpoint when there is one."""
        from . import modelfile

        path = self.output_dir / MODEL_FILE
        if not self.collective.is_root:
            return path
        state = self._host_state()
        if not best:
            best_path = self.output_dir / BEST_CHECKPOINT
            if best_path.is_file() and self.dev_set:
                state = checkpoint.load(best_path)
            elif path.is_file() and self.dev_set:
                return path
        record = state.record
        training = {
            "recipe": to_dict(self.config),
            "train_csv": list(self.config.train_csv),
            "dev_csv": list(self.config.dev_csv),
            "train_utterances": len(self.train_set),
            "train_hours": self.train_seconds / 3600.0,
            "epochs": state.epoch,
            "steps": state.step,
            "dev_wer": record.get("best_dev_wer"),
            "dev_loss": record.get("best_dev_loss"),
            "best_epoch": record.get("best_epoch"),
            "description": self.config.description,
        }
        model = modelfile.ModelFile(
            state.network, self.features, self.alphabet, training
        )
        return modelfile.save(path, model)

    def _log(self, entry: dict[str, Any]) -> None:
        if self.collective.is_root:
            train_log.append(self.output_dir, entry)

    def _trim_log(self) -> None:
        """Drop log lines from after the checkpoint being resumed (to be redone)."""
        train_log.trim(self.output_dir, self.state.step, self.state.epoch)


def _validate(config: TrainConfig) -> None:
    models.validate_config(config.model)
    if not config.train_csv:
        raise ConfigError("train.train_csv is required")
    if config.epochs < 0:
        raise ConfigError(f"train.epochs must be >= 0, got {config.epochs}")
    if config.learning_rate <= 0:
        raise ConfigError(
            f"train.learning_rate must be > 0, got {config.learning_rate}"
        )
    if config.batch_frames <= 0:
        raise ConfigError(f"train.batch_frames must be > 0, got {config.batch_frames}")
    if config.early_stop_metric not in ("loss", "wer"):
        raise ConfigError(
            "train.early_stop_metric must be 'loss' or 'wer', "
            f"got {config.early_stop_metric!r}"
        )
    if not 0 < config.plateau_factor < 1:
        raise ConfigError(
            f"train.plateau_factor must be in (0, 1), got {config.plateau_factor}"
        )
    if config.freeze_batch_norm and config.batch_norm_utterances:
        raise ConfigError(
            "train.freeze_batch_norm keeps the batch-norm statistics as they are; "
            "train.batch_norm_utterances would recompute them: choose one"
        )
    if config.batch_norm_utterances < 0:
        raise ConfigError(
            "train.batch_norm_utterances must be >= 0, "
            f"got {config.batch_norm_utterances}"
        )


def _resume_note(output_dir: str) -> str:
    """How to go on after a failed run (for the message that ends a job)."""
    if (Path(output_dir) / LAST_CHECKPOINT).is_file():
        return (
            f"Its last checkpoint, {Path(output_dir) / LAST_CHECKPOINT}, is intact: "
            "continue with --resume (with any number of ranks)."
        )
    return ""


def _fresh_state(
    network: models.Network, config: TrainConfig, alphabet: Alphabet
) -> checkpoint.TrainingState:
    from . import optim

    schedule = optim.ReduceOnPlateau(
        config.learning_rate,
        mode="min",
        factor=config.plateau_factor,
        patience=config.plateau_patience,
        min_lr=config.min_learning_rate,
    )
    return checkpoint.TrainingState(
        network=network,
        optimizer=optim.adam_init(network.params),
        schedule=schedule.state,
        epoch=0,
        batch=0,
        step=0,
        learning_rate=config.learning_rate,
        record={"skipped_batches": 0, "audio_seconds": 0.0},
        config=to_dict(config),
        alphabet=list(alphabet.labels),
    )


def _progress_bar(total: int, start: int, epoch: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        desc=f"epoch {epoch}",
        unit="batch",
        dynamic_ncols=True,
        leave=False,
    )


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    augmentation: Any = None,
    max_steps: int | None = None,
    overwrite: bool = False,
    collective: Collective | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run (or resume) a training run; see the module docstring for what it writes.

    Parameters are those of :class:`Trainer`, and ``max_steps`` of
    :meth:`Trainer.run`. With a collective of several ranks, an exception on any
    rank ends the whole job (see :meth:`Collective.failing_together`).

    Raises
    ------
    ConfigError, DataError, ModelFileError
        For bad settings, a folder already holding a run, bad corpus rows (all listed
        at once), or an unreadable checkpoint or initial model.
    """
    collective = collective if collective is not None else Collective()
    try:
        with collective.failing_together(lambda: _resume_note(config.output_dir)):
            trainer = Trainer(
                config,
                resume=resume,
                augmentation=augmentation,
                overwrite=overwrite,
                collective=collective,
                on_epoch=on_epoch,
            )
            return trainer.run(max_steps)
    finally:
        memory.release_pool()  # the steps' cached buffers are not needed any more


__all__ = ["Trainer", "TrainResult", "train", "plot_run", "read_log"]
