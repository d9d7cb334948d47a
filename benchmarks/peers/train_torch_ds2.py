"""A PyTorch twin of npspeech's ``ds2`` and ``ds2-stream`` networks.

Used only by benchmarks (``benchmarks/train_compare.py``, through the training loop of
``train_torch.py``) and peer tests; PyTorch is a test-only dependency and
``npspeech/`` never imports this module.

The twin computes what :func:`npspeech.models.forward` computes, layer for layer:

- convolutions: ``torch.nn.Conv2d`` on ``(B, C, T, F)``; npspeech keeps PyTorch's
  weight layout ``(C_out, C_in, kt, kf)``, so the weights copy as they are. Input
  frames past a sequence's end are zeroed first (npspeech reads them as zero), and each
  sequence's output length is ``(L + 2 pt - kt) // st + 1``;
- batch norm over valid frames only: the valid frames are gathered and go through
  ``torch.nn.BatchNorm1d`` (per feature for the sequence-wise batch norm of the
  recurrent inputs and of the output layer, per channel over the frequencies for the
  convolutions: ``(N, C, F)``), then scattered back with zero padding. PyTorch's
  momentum, ``eps`` and unbiased running variance are npspeech's conventions too;
- hardtanh in ``[0, relu_clip]``, then padded frames zeroed;
- recurrent layers: ``torch.nn.GRU`` (or ``LSTM``) over a packed batch, so the backward
  direction starts at each sequence's own end; the directions are summed. npspeech's
  fused gates are PyTorch's (``r, z, n``, with the reset gate applied to
  ``W_hn h + b_hn``; ``i, f, g, o`` for the LSTM) with ``x @ W`` instead of
  ``x @ weight.T``, so every matrix is transposed; dropout after each of them when
  ``config.dropout`` is set (its masks come from PyTorch's generator, so a run with
  dropout matches npspeech's in distribution, not step for step);
- ds2-stream's lookahead: a depthwise ``conv1d`` (``groups = F``) over the current and
  ``context`` future frames, frames past the end read as zero;
- the output layer, ``torch.nn.Linear``, zero on padded frames.

Shape legend: T frames, B batch, F features (or frequencies), C channels, H hidden
units, V classes (blank last), N valid frames of a batch, T' output frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from torch.nn.utils import rnn as rnn_utils

from npspeech import models

ARCHITECTURES = ("ds2", "ds2-stream")
#: npspeech's recurrent parameter names -> torch's (one layer; the ``_reverse`` keys
#: of a bidirectional layer map to torch's ``*_reverse``)
RNN_NAMES = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0",
             "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}  # fmt: skip
RNN_CLASSES = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
STATE_NAMES = ("running_mean", "running_var")


def frame_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """``(T, B)`` bool, True on valid frames."""
    return torch.arange(T)[:, None] < lengths[None, :]


class MaskedBatchNorm(torch.nn.BatchNorm1d):
    """Batch norm whose statistics and output cover the valid frames only.

    ``forward(x, mask)`` takes ``x (T, B, F)`` (sequence-wise, per feature) or
    ``x (T, B, C, F)`` (per channel, over the frequencies too) and ``mask (T, B)``;
    padded frames come out zero.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        valid = super().forward(x[mask])  # (N, F) or (N, C, F)
        out = x.new_zeros(x.shape)
        out[mask] = valid
        return out


class TorchDS2(torch.nn.Module):
    """npspeech's ``ds2`` / ``ds2-stream`` network in PyTorch, named like its layers.

    Parameters
    ----------
    config : npspeech.config.ModelConfig
        A ``ds2`` or ``ds2-stream`` configuration (``rnn_kind`` "gru" or "lstm").
    n_input : int
        F, features per input frame.
    n_classes : int
        V, blank included.
    """

    def __init__(self, config: Any, n_input: int, n_classes: int):
        super().__init__()
        if config.architecture not in ARCHITECTURES:
            raise ValueError(
                f"the ds2 twin builds {' and '.join(ARCHITECTURES)}, got "
                f"{config.architecture!r}"
            )
        if config.rnn_kind not in RNN_CLASSES:
            raise ValueError(
                f"the ds2 twin has no rnn_kind {config.rnn_kind!r}; "
                f"choose one of {', '.join(RNN_CLASSES)}"
            )
        self.relu_clip = float(config.relu_clip)
        self.dropout = float(config.dropout)
        self.bidirectional = config.architecture == "ds2"
        self.time_stride = models.time_stride(config)
        self.convolutions: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
        momentum, H = float(config.batch_norm_momentum), int(config.n_hidden)
        width = 0
        geometry = models._conv_geometry(config, n_input)
        for index, (c_in, c_out, kernel, stride, padding, f_out) in enumerate(
            geometry, start=1
        ):
            name = f"conv_{index}"
            conv = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding)
            self.add_module(name, conv)
            self.add_module(f"{name}_bn", MaskedBatchNorm(c_out, momentum=momentum))
            self.convolutions.append((name, tuple(kernel), tuple(padding)))
            width = c_out * f_out  # C x F' after the last convolution
        self.rnn_layers = int(config.rnn_layers)
        for index in range(1, self.rnn_layers + 1):
            if index > 1:
                self.add_module(
                    f"rnn_{index}_bn", MaskedBatchNorm(width, momentum=momentum)
                )
            rnn = RNN_CLASSES[config.rnn_kind](
                width, H, bidirectional=self.bidirectional
            )
            self.add_module(f"rnn_{index}", rnn)
            width = H  # directions are summed
        self.lookahead: torch.nn.Parameter | None = None
        if config.architecture == "ds2-stream":
            taps = int(config.lookahead_context) + 1
            # depthwise conv1d weight: (F, 1, taps), F groups of one channel
            self.lookahead = torch.nn.Parameter(torch.zeros(H, 1, taps))
        self.output_bn = MaskedBatchNorm(H, momentum=momentum)
        self.output = torch.nn.Linear(H, n_classes)

    def _clip(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hardtanh in [0, relu_clip] with padded frames zeroed; mask (T, B)."""
        x = functional.hardtanh(x, 0.0, self.relu_clip)
        return x * mask.reshape(*mask.shape, *(1,) * (x.ndim - 2)).to(x.dtype)

    def _recurrent(
        self, rnn: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """One recurrent layer over a packed batch; (T, B, F) -> (T, B, H)."""
        packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = rnn(packed)
        out, _ = rnn_utils.pad_packed_sequence(out, total_length=x.shape[0])
        if self.bidirectional:
            H = out.shape[2] // 2
            out = out[:, :, :H] + out[:, :, H:]  # DeepSpeech2 sums the directions
        return out

    def _lookahead(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """y[t] = sum_k W[k] x[t + k] per feature; (T, B, H) -> (T, B, H)."""
        taps = self.lookahead.shape[2]
        x = (x * mask[:, :, None].to(x.dtype)).permute(1, 2, 0)  # (B, H, T)
        x = functional.pad(x, (0, taps - 1))  # future frames past the end are zero
        y = functional.conv1d(x, self.lookahead, groups=x.shape[1])  # (B, H, T)
        return y.permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of a padded batch.

        Parameters
        ----------
        x : tensor, shape (T, B, F)
            Features; frames past ``lengths`` are ignored.
        lengths : int64 tensor, shape (B,)
            Valid frames per sequence, each long enough for at least one output frame.

        Returns
        -------
        logits : tensor, shape (T', B, V)
            Zero on padded frames, as npspeech's.
        output_lengths : int64 tensor, shape (B,)
        """
        mask = frame_mask(lengths, x.shape[0])
        x = (x * mask[:, :, None].to(x.dtype)).permute(1, 0, 2)[:, None]  # (B,1,T,F)
        for name, kernel, padding in self.convolutions:
            conv = getattr(self, name)
            x = conv(x)  # (B, C, T', F')
            lengths = (lengths + 2 * padding[0] - kernel[0]) // conv.stride[0] + 1
            mask = frame_mask(lengths, x.shape[2])  # (T', B)
            x = getattr(self, f"{name}_bn")(x.permute(2, 0, 1, 3), mask)
            x = self._clip(x, mask)  # (T', B, C, F')
            # the next convolution reads zeros past each sequence's end
            x = x.permute(1, 2, 0, 3)
        T, B = x.shape[2], x.shape[0]
        x = x.permute(2, 0, 1, 3).reshape(T, B, -1)  # (T', B, C x F'), channel-major
        for index in range(1, self.rnn_layers + 1):
            if index > 1:
                x = getattr(self, f"rnn_{index}_bn")(x, mask)
            x = self._recurrent(getattr(self, f"rnn_{index}"), x, lengths)
            x = functional.dropout(x, self.dropout, self.training)
        if self.lookahead is not None:
            x = self._clip(self._lookahead(x, mask), mask)
        x = self.output_bn(x, mask)
        logits = self.output(x) * mask[:, :, None].to(x.dtype)  # (T', B, V)
        return logits, lengths

    def forward_batch(
        self, features: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`forward` of a loader batch ``features (T, B, F)``, ``lengths (B,)``;
        returns the logits ``(T', B, V)`` and the output lengths as int32 ``(B,)``."""
        dtype = self.output.weight.dtype
        x = torch.from_numpy(np.ascontiguousarray(features)).to(dtype)
        logits, out = self(x, torch.from_numpy(np.asarray(lengths, dtype=np.int64)))
        return logits, out.numpy().astype(np.int32)


def _rnn_pairs(model: TorchDS2):
    """(npspeech name, torch module, torch parameter name) of every recurrent weight."""
    suffixes = ("", "_reverse") if model.bidirectional else ("",)
    for index in range(1, model.rnn_layers + 1):
        rnn = getattr(model, f"rnn_{index}")
        for ours, theirs in RNN_NAMES.items():
            for suffix in suffixes:
                yield f"rnn_{index}/{ours}{suffix}", rnn, theirs + suffix


def _norm_names(model: TorchDS2) -> list[str]:
    return [name for name, module in model.named_children() if name.endswith("_bn")]


def from_network(network: models.Network, dtype: Any = None) -> TorchDS2:
    """A :class:`TorchDS2` holding a copy of ``network``'s weights and batch-norm state.

    Parameters
    ----------
    network : npspeech.models.Network
        A ``ds2`` or ``ds2-stream`` network.
    dtype : torch.dtype, optional
        ``torch.float32`` or ``torch.float64``; default: the network's own dtype.
    """
    if dtype is None:
        dtype = torch.float64 if network.dtype == np.float64 else torch.float32
    params, state = network.params, network.state
    model = TorchDS2(network.config, network.n_input, network.n_classes).to(dtype)

    def put(target: torch.Tensor, value: np.ndarray) -> None:
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    with torch.no_grad():
        for name, _, _ in model.convolutions:
            put(getattr(model, name).weight, params[f"{name}/W"])  # same layout
            put(getattr(model, name).bias, params[f"{name}/b"])
        for name in _norm_names(model):
            norm = getattr(model, name)
            put(norm.weight, params[f"{name}/gamma"])
            put(norm.bias, params[f"{name}/beta"])
            for key in STATE_NAMES:
                put(getattr(norm, key), state[f"{name}/{key}"])
        for ours, rnn, theirs in _rnn_pairs(model):
            value = params[ours]
            put(getattr(rnn, theirs), value.T if value.ndim == 2 else value)
        if model.lookahead is not None:
            put(model.lookahead, params["lookahead/W"].T[:, None, :])  # (F, 1, taps)
        put(model.output.weight, params["output/W"].T)  # (H, V) -> (V, H)
        put(model.output.bias, params["output/b"])
    return model


def _collect(model: TorchDS2, value: Any) -> dict[str, np.ndarray]:
    """``value(parameter)`` (a tensor) of every parameter, in npspeech's names and
    layouts (copies)."""

    def get(tensor: torch.Tensor) -> np.ndarray:
        return value(tensor).detach().numpy()

    out: dict[str, np.ndarray] = {}
    for name, _, _ in model.convolutions:
        out[f"{name}/W"] = get(getattr(model, name).weight).copy()
        out[f"{name}/b"] = get(getattr(model, name).bias).copy()
    for name in _norm_names(model):
        out[f"{name}/gamma"] = get(getattr(model, name).weight).copy()
        out[f"{name}/beta"] = get(getattr(model, name).bias).copy()
    for ours, rnn, theirs in _rnn_pairs(model):
        array = get(getattr(rnn, theirs))
        out[ours] = (array.T if array.ndim == 2 else array).copy()
    if model.lookahead is not None:
        out["lookahead/W"] = get(model.lookahead)[:, 0, :].T.copy()  # (taps, F)
    out["output/W"] = get(model.output.weight).T.copy()  # (V, H) -> (H, V)
    out["output/b"] = get(model.output.bias).copy()
    return out


def network_params(model: TorchDS2) -> dict[str, np.ndarray]:
    """The twin's weights in npspeech's names and layouts (copies)."""
    return _collect(model, lambda parameter: parameter)


def network_grads(model: TorchDS2) -> dict[str, np.ndarray]:
    """The gradients ``backward()`` left, in npspeech's names and layouts (copies)."""
    return _collect(model, lambda parameter: parameter.grad)


def network_state(model: TorchDS2) -> dict[str, np.ndarray]:
    """The batch norms' running statistics, in npspeech's names (copies)."""
    return {
        f"{name}/{key}": getattr(getattr(model, name), key).numpy().copy()
        for name in _norm_names(model)
        for key in STATE_NAMES
    }


def recompute_batch_norm(
    model: TorchDS2,
    features: list[np.ndarray],
    *,
    frames_budget: int,
    max_batch_size: int | None = None,
) -> None:
    """Set every batch norm's running statistics, in place, to the frame-weighted mean
    of its per-batch statistics over ``features`` (each ``(T_u, F)``), batched as
    training batches them; the weights are unchanged. What
    ``train.batch_norm_utterances`` asks of npspeech's trainer
    (``npspeech/batch_norm_stats.py``), done with PyTorch's own modules: momentum 1
    leaves each batch's statistics in the running buffers."""
    from npspeech import data

    norms = [m for m in model.modules() if isinstance(m, MaskedBatchNorm)]
    if not norms or not features:
        return
    plan = data.make_batches(
        [f.shape[0] for f in features],
        frames_budget,
        max_batch_size=max_batch_size,
        shuffle=False,
    )
    sums = [[m.running_mean.double() * 0, m.running_var.double() * 0] for m in norms]
    momenta = [m.momentum for m in norms]
    total = 0
    was_training = model.training
    model.train()
    try:
        for m in norms:
            m.momentum = 1.0
        with torch.no_grad():
            for batch in plan:
                padded, lengths = data.pad([features[i] for i in batch])
                model.forward_batch(padded, lengths)
                weight = int(lengths.sum())
                for (mean, var), m in zip(sums, norms):
                    mean += weight * m.running_mean.double()
                    var += weight * m.running_var.double()
                total += weight
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    for (mean, var), m in zip(sums, norms):
        m.running_mean.copy_(mean / total)
        m.running_var.copy_(var / total)
