"""A PyTorch twin of npspeech's ``deepspeech`` model, and of its training loop for
every architecture.

Used only by benchmarks (``benchmarks/train_compare.py``) and peer tests; PyTorch is a
test-only dependency and ``npspeech/`` never imports this module. The ``ds2`` and
``ds2-stream`` networks are in ``train_torch_ds2.py`` beside this file; :func:`build`
picks the twin of a network, and :class:`TorchTrainer` and :func:`evaluate` train and
score either through its ``forward_batch``.

The twin is built to differ from :class:`npspeech.train.Trainer` in the framework only:

- the same layers (``deepspeech``'s here; ``train_torch_ds2.py`` lists ds2's): dense
  x3 with ReLU clipped at ``relu_clip`` (``hardtanh(0, clip)``) and dropout, one
  unidirectional LSTM, dense with clipped ReLU and dropout, output;
- the same initial weights, copied from an npspeech :class:`~npspeech.models.Network`
  (npspeech computes ``x @ W`` with ``W (F_in, F_out)``, PyTorch ``x @ weight.T``, so
  every matrix is transposed; the LSTM's fused ``(F, 4H)`` gates are in PyTorch's order
  i, f, g, o already, and ``b_ih``/``b_hh`` are stored separately on both sides);
- the same batches: npspeech's :class:`~npspeech.data.BatchLoader` output, context
  stacked with :func:`npspeech.models.stack_context` before the tensor conversion;
- the same loss: CTC with the blank last over each sequence's output frames (fewer than
  its input frames after a strided convolution), summed over the batch and divided by
  the batch size (npspeech's trainer averages the per-utterance losses);
- the same optimiser: Adam (AdamW when ``weight_decay > 0``, as npspeech decouples it),
  global-norm gradient clipping, ReduceLROnPlateau on the same dev metric, the same
  early stopping and best-epoch selection;
- the same greedy decoder and the same WER/CER counting (npspeech's).

What differs: dropout masks come from PyTorch's generator, not npspeech's, so the two
runs diverge after the first step whenever dropout is on (the ds2 recipes use none).

Shape legend: T frames, B batch, F features per frame before stacking, X stacked input
features ``(2 * n_context + 1) * F``, H hidden units, V classes (blank last).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

from npspeech import data, metrics, models
from npspeech.alphabet import Alphabet
from npspeech.config import FeatureConfig, TrainConfig
from npspeech.inference import log_softmax, make_decoder

#: npspeech's dense layers of the ``deepspeech`` architecture, bottom to top
DENSE_LAYERS = ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6")
#: npspeech's LSTM parameter names -> torch.nn.LSTM's (one layer, one direction)
LSTM_NAMES = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0",
              "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}  # fmt: skip


class TorchDeepSpeech(torch.nn.Module):
    """DeepSpeech 0.9's network in PyTorch, named like npspeech's parameters.

    Parameters
    ----------
    n_input : int
        X, stacked input features per frame (494 for 26 MFCC and 9 frames of context).
    n_hidden : int
        H.
    n_classes : int
        V, blank included.
    relu_clip : float
        Ceiling of the clipped ReLU.
    dropout : float
        Dropout rate after layers 1, 2, 3 and 5 while training.
    n_context : int
        Frames stacked on each side by :meth:`forward_batch`.
    """

    time_stride = 1  # one output frame per feature frame

    def __init__(
        self,
        n_input: int,
        n_hidden: int,
        n_classes: int,
        relu_clip: float,
        dropout: float,
        n_context: int = 0,
    ):
        super().__init__()
        self.relu_clip = float(relu_clip)
        self.dropout = float(dropout)
        self.n_context = int(n_context)
        self.layer_1 = torch.nn.Linear(n_input, n_hidden)
        self.layer_2 = torch.nn.Linear(n_hidden, n_hidden)
        self.layer_3 = torch.nn.Linear(n_hidden, n_hidden)
        self.layer_4 = torch.nn.LSTM(n_hidden, n_hidden)
        self.layer_5 = torch.nn.Linear(n_hidden, n_hidden)
        self.layer_6 = torch.nn.Linear(n_hidden, n_classes)

    def _clip_drop(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.hardtanh(x, 0.0, self.relu_clip)  # ReLU clipped at relu_clip
        return functional.dropout(x, self.dropout, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a stacked, padded batch.

        Parameters
        ----------
        x : tensor, shape (T, B, X)
            Context-stacked features, zero on padded frames.

        Returns
        -------
        tensor, shape (T, B, V)
            Logits. Valid frames equal npspeech's; padded frames hold whatever the
            layers make of zeros (npspeech zeroes them). The LSTM runs unidirectionally
            and every padded frame follows its sequence's valid ones, so padding never
            reaches a valid frame, and CTC gives padded frames zero gradient.
        """
        for layer in (self.layer_1, self.layer_2, self.layer_3):
            x = self._clip_drop(layer(x))
        x, _ = self.layer_4(x)  # (T, B, H)
        x = self._clip_drop(self.layer_5(x))
        return self.layer_6(x)  # (T, B, V)

    def forward_batch(
        self, features: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Logits ``(T, B, V)`` of a loader batch ``features (T, B, F)``, ``lengths
        (B,)``, context stacked as npspeech does, and the output lengths (the input's).
        """
        dtype = self.layer_1.weight.dtype
        x = model_input(features, lengths, self.n_context, dtype)
        return self(x), np.asarray(lengths, dtype=np.int32)


def _require_deepspeech(network: models.Network) -> None:
    if network.config.architecture != "deepspeech":
        raise ValueError(
            "the PyTorch twin builds the 'deepspeech' architecture only, got "
            f"{network.config.architecture!r}"
        )


def from_network(network: models.Network, dtype: Any = None) -> TorchDeepSpeech:
    """A :class:`TorchDeepSpeech` holding a copy of ``network``'s weights.

    Parameters
    ----------
    network : npspeech.models.Network
        A ``deepspeech`` network.
    dtype : torch.dtype, optional
        ``torch.float32`` or ``torch.float64``; default: the network's own dtype.
    """
    _require_deepspeech(network)
    config, params = network.config, network.params
    if dtype is None:
        dtype = torch.float64 if network.dtype == np.float64 else torch.float32
    model = TorchDeepSpeech(
        params["layer_1/W"].shape[0],
        config.n_hidden,
        network.n_classes,
        config.relu_clip,
        config.dropout,
        config.n_context,
    ).to(dtype)
    with torch.no_grad():
        for name in DENSE_LAYERS:
            layer = getattr(model, name)
            weight = params[f"{name}/W"].T.copy()  # (F_in, F_out) -> (F_out, F_in)
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(params[f"{name}/b"]))
        for ours, theirs in LSTM_NAMES.items():
            value = params[f"layer_4/{ours}"]
            # (F, 4H) -> (4H, F); the gate blocks i, f, g, o stay in place
            value = value.T.copy() if value.ndim == 2 else value
            getattr(model.layer_4, theirs).copy_(torch.from_numpy(value))
    return model


def network_params(model: TorchDeepSpeech) -> dict[str, np.ndarray]:
    """The twin's weights in npspeech's names and layouts (float copies)."""
    params: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name in DENSE_LAYERS:
            layer = getattr(model, name)
            params[f"{name}/W"] = layer.weight.detach().numpy().T.copy()  # (in, out)
            params[f"{name}/b"] = layer.bias.detach().numpy().copy()
        for ours, theirs in LSTM_NAMES.items():
            value = getattr(model.layer_4, theirs).detach().numpy()
            value = value.T if value.ndim == 2 else value  # (4H, F) -> (F, 4H)
            params[f"layer_4/{ours}"] = value.copy()
    return params


def _ds2_twin() -> Any:
    """``train_torch_ds2.py`` beside this file: imported from the package when this
    module was (``benchmarks/train_compare.py``), else by path (tests load the twins
    from their files, ``benchmarks/`` being no package)."""
    if __package__:
        return importlib.import_module(f"{__package__}.train_torch_ds2")
    name = f"{__name__}_ds2"
    if name not in sys.modules:
        path = Path(__file__).with_name("train_torch_ds2.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build(network: models.Network, dtype: Any = None) -> torch.nn.Module:
    """The PyTorch twin of any npspeech network, holding a copy of its weights.

    ``deepspeech``: :func:`from_network` here; ``ds2`` and ``ds2-stream``:
    ``train_torch_ds2.from_network``. Either twin has ``forward_batch(features,
    lengths) -> (logits (T', B, V) tensor, output lengths (B,) int32)`` and
    ``time_stride``.
    """
    if network.config.architecture == "deepspeech":
        return from_network(network, dtype)
    return _ds2_twin().from_network(network, dtype)


def model_input(
    features: np.ndarray,
    lengths: np.ndarray,
    n_context: int,
    dtype: Any = torch.float32,
) -> torch.Tensor:
    """npspeech's context stacking of a loader batch, as a tensor.

    Parameters
    ----------
    features : array, shape (T, B, F)
    lengths : int array, shape (B,)
    n_context : int
    dtype : torch.dtype

    Returns
    -------
    tensor, shape (T, B, (2 * n_context + 1) * F)
    """
    stacked = models.stack_context(features, lengths, n_context)  # (T, B, X)
    return torch.from_numpy(np.ascontiguousarray(stacked)).to(dtype)


@dataclasses.dataclass
class Scores:
    """Greedy error rates and mean CTC loss of a corpus (npspeech's ``Evaluation``)."""

    wer: float
    cer: float
    loss: float  # mean over the utterances with a finite loss


def evaluate(
    model: torch.nn.Module,
    utterances: Sequence[Any],
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    *,
    cache: Any,
    frames_budget: int,
    durations: Sequence[float] | None = None,
) -> Scores:
    """Greedy WER/CER and CTC loss of the twin, batched and decoded as npspeech does.

    Batches come from a non-shuffling :class:`~npspeech.data.BatchLoader`, log-softmax
    and decoding from npspeech (:func:`npspeech.inference.make_decoder`), counts from
    :func:`npspeech.metrics.error_counts`: only the network runs in PyTorch.
    """
    loader = data.BatchLoader(
        utterances,
        alphabet,
        feature_config,
        cache,
        frames_budget=frames_budget,
        shuffle=False,
        sortagrad=False,
        durations=durations,
        prefetch=False,
    )
    frame_seconds = feature_config.step_ms / 1000.0 * model.time_stride
    decoder = make_decoder(alphabet, None, frame_seconds)
    total = metrics.ErrorCounts(0, 0, 0, 0)
    losses: list[float] = []
    model.eval()
    with torch.no_grad():
        for batch in loader.iterate(0):
            logits, lengths = model.forward_batch(batch.features, batch.lengths)
            log_probs = functional.log_softmax(logits, dim=-1)
            loss = functional.ctc_loss(
                log_probs,
                torch.from_numpy(batch.targets.astype(np.int64)),
                torch.from_numpy(lengths.astype(np.int64)),
                torch.from_numpy(batch.target_lengths.astype(np.int64)),
                blank=logits.shape[-1] - 1,
                reduction="none",
            )
            losses += [value for value in loss.tolist() if math.isfinite(value)]
            scores = log_softmax(logits.numpy())  # npspeech's, for identical decoding
            for b, utterance in enumerate(batch.utterances):
                text = decoder.decode(scores[: int(lengths[b]), b])[0].text
                total = total + metrics.error_counts(utterance.transcript, text)
    loss = float(np.mean(losses)) if losses else float("inf")
    return Scores(total.wer, total.cer, loss)


class TorchTrainer:
    """The training loop of :class:`npspeech.train.Trainer`, in PyTorch.

    Parameters
    ----------
    network : npspeech.models.Network
        The initial weights and batch-norm state (any architecture; copied, not
        shared).
    config : TrainConfig
        The same settings the npspeech run uses.
    seed : int
        Seeds PyTorch's dropout generator.
    """

    def __init__(self, network: models.Network, config: TrainConfig, seed: int = 0):
        self.config = config
        self.model = build(network, torch.float32)
        optimizer = torch.optim.AdamW if config.weight_decay > 0 else torch.optim.Adam
        self.optimizer = optimizer(
            self.model.parameters(),
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
        )
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_learning_rate,
        )
        self.generator_seed = int(seed)
        torch.manual_seed(self.generator_seed)
        self.steps = 0
        self.skipped = 0
        self.step_seconds: list[float] = []  # wall time of each train_step in fit
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.best_epoch = -1

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train_step(self, batch: data.Batch) -> dict[str, Any]:
        """Forward, CTC, backward, clip and Adam on one loader batch.

        Returns
        -------
        dict
            ``loss`` (mean CTC loss per utterance), ``grad_norm`` (before clipping) and
            ``skipped`` (a non-finite loss or gradient leaves the weights untouched, as
            in npspeech).
        """
        self.model.train()
        if self.config.freeze_batch_norm:  # normalise with the stored statistics
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        logits, lengths = self.model.forward_batch(batch.features, batch.lengths)
        log_probs = functional.log_softmax(logits, dim=-1)  # (T', B, V)
        B = len(batch.utterances)
        total = functional.ctc_loss(
            log_probs,
            torch.from_numpy(batch.targets.astype(np.int64)),
            torch.from_numpy(lengths.astype(np.int64)),
            torch.from_numpy(batch.target_lengths.astype(np.int64)),
            blank=logits.shape[-1] - 1,
            reduction="sum",
        )
        loss = total / B  # the per-utterance mean, as npspeech's trainer
        if not torch.isfinite(loss):
            self.skipped += 1
            return {"loss": float("nan"), "grad_norm": float("nan"), "skipped": True}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = list(self.model.parameters())
        if self.config.clip_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.clip_norm)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters])
            )
        if not torch.isfinite(norm):
            self.skipped += 1
            return {"loss": float("nan"), "grad_norm": float("nan"), "skipped": True}
        self.optimizer.step()
        self.steps += 1
        return {"loss": loss.item(), "grad_norm": norm.item(), "skipped": False}

    def fit(
        self,
        loader: data.BatchLoader,
        dev: Sequence[Any],
        alphabet: Alphabet,
        feature_config: FeatureConfig,
        *,
        cache: Any,
        dev_durations: Sequence[float] | None = None,
        report: Any = None,
    ) -> list[dict[str, Any]]:
        """Train epoch by epoch on ``loader``'s batches, as npspeech's ``Trainer.run``.

        After each epoch: dev WER/CER/loss, the plateau schedule on the dev loss (or
        WER), best-epoch selection on ``(dev WER, dev loss)`` and early stopping.
        The best epoch's weights are left in :attr:`best_state`.

        Parameters
        ----------
        loader : BatchLoader
            The very loader the npspeech run used (same seed, same batch plans).
        dev : sequence of Utterance
            Dev rows; empty to select on the training loss.
        report : callable, optional
            Called with each epoch's record as it completes.

        Returns
        -------
        list of dict
            Per epoch: ``epoch``, ``train_loss``, ``lr``, ``seconds`` (training and dev
            evaluation) and, with a dev set, ``dev_loss``, ``dev_wer``, ``dev_cer``.
        """
        config = self.config
        history: list[dict[str, Any]] = []
        best_key: tuple[float, float] | None = None
        best_metric: float | None = None
        without_improvement = 0
        for epoch in range(config.epochs):
            started = time.perf_counter()
            loss_sum, count = 0.0, 0
            for batch in loader.iterate(epoch):
                step_started = time.perf_counter()
                step = self.train_step(batch)
                self.step_seconds.append(time.perf_counter() - step_started)
                if not step["skipped"]:
                    loss_sum += step["loss"] * len(batch.utterances)
                    count += len(batch.utterances)
            record: dict[str, Any] = {
                "epoch": epoch,
                "lr": self.learning_rate,
                "train_loss": loss_sum / max(count, 1),
            }
            if config.batch_norm_utterances > 0:
                self.recompute_batch_norm(loader, cache, epoch)
            metric = record["train_loss"]
            improved = True
            if dev:
                scores = evaluate(
                    self.model,
                    dev,
                    alphabet,
                    feature_config,
                    cache=cache,
                    frames_budget=config.batch_frames,
                    durations=dev_durations,
                )
                record.update(
                    dev_loss=scores.loss, dev_wer=scores.wer, dev_cer=scores.cer
                )
                key = (scores.wer, scores.loss)
                improved = best_key is None or key < best_key
                if improved:
                    best_key = key
                wer_metric = config.early_stop_metric == "wer"
                metric = scores.wer if wer_metric else scores.loss
            self.schedule.step(metric if math.isfinite(metric) else 1e30)
            if best_metric is None or metric < best_metric:
                best_metric, without_improvement = metric, 0
            else:
                without_improvement += 1
            if improved:
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.best_epoch = epoch
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            if report is not None:
                report(record)
            if (
                dev
                and 0 <= config.target_dev_wer
                and record["dev_wer"] <= config.target_dev_wer
            ):
                break
            if 0 < config.early_stop_patience <= without_improvement:
                break
        return history

    def recompute_batch_norm(self, loader: data.BatchLoader, cache: Any, epoch: int):
        """``train.batch_norm_utterances``: the ds2 twins' batch-norm statistics from
        the same sample of training utterances npspeech's trainer draws."""
        twin = _ds2_twin()
        if not isinstance(self.model, twin.TorchDS2):
            return  # deepspeech has no batch norm
        from npspeech import batch_norm_stats

        chosen = batch_norm_stats.sample_indices(
            len(loader.utterances),
            self.config.batch_norm_utterances,
            self.config.seed,
            epoch,
        )
        twin.recompute_batch_norm(
            self.model,
            [cache.get(loader.utterances[i]) for i in chosen],
            frames_budget=self.config.batch_frames,
            max_batch_size=self.config.max_batch_size or None,
        )

    def best_model(self) -> torch.nn.Module:
        """A copy of the twin with the best epoch's weights."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_state)
        return model
