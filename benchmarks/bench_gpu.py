"""The CuPy backend against PyTorch CUDA on the same shapes, side by side.

Three comparisons, each side timed in one process on the same GPU:

- a DeepSpeech training step (width 2048: three clipped dense layers, an LSTM, a
  clipped dense layer, the output layer; B=32, T=300, 494 inputs, 29 classes): forward,
  CTC, backward, Adam; npspeech keeps everything on the device and reads back the loss
  alone; PyTorch runs the same layers (``nn.LSTM`` is cuDNN's);
- a DS2-small step (two 2D convolutions, three GRU layers of 512, output layer;
  B=32, 161 spectrogram bins, T=300);
- CTC alone (forward + gradient) against ``torch.nn.functional.ctc_loss`` on CUDA;
- the engine's own device step (``ds2-engine``, ``ds2-stream-engine``): the trainer's
  :class:`~npspeech.train_device.DeviceSteps` on a DS2-small :class:`ModelConfig`
  (two convolutions with batch norm, three GRU layers of 512, bidirectional for
  ``ds2``, unidirectional with a lookahead of 20 for ``ds2-stream``; B=32, T=300, 161
  inputs): upload, forward, CTC, backward, clipping, Adam and the batch-norm
  statistics, against a PyTorch twin of the same network (cuDNN convolutions, batch
  norm and GRU) that also uploads its batch each step. The batch has no padding, so
  that the engine's batch norm over valid frames and PyTorch's over all frames agree;
- ``rnn``: the one-launch LSTM/GRU forward step of the cupy backend against its
  two-launch step (GEMM + element-wise kernel), DeepSpeech's LSTM (H=2048) and
  DS2-small's GRU (H=512), to place ``rnn_fused.FUSED_STEP_MAX_HIDDEN``; the ratio is
  one-launch / two-launch.

Both sides start from the same weights and batch, and the first step's losses must
agree before anything is timed. Prints medians in ms and the ratio npspeech / PyTorch
(issue targets: steps <= 1.5, CTC < 1).

    python benchmarks/bench_gpu.py [--steps 10] [--only deepspeech,ds2,ctc]
    python benchmarks/bench_gpu.py --only ds2-engine,ds2-stream-engine,rnn
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import cupy as cp
import numpy as np
import torch

from npspeech.backends import get_backend
from npspeech.backends.cupy_gpu import rnn_fused, train_step
from npspeech.config import ModelConfig

K = get_backend("cupy")
DEV = torch.device("cuda")
CLIP = 20.0


def _sync():
    cp.cuda.Device().synchronize()
    torch.cuda.synchronize()


def _timed(step, repeats):
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        step()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _batch(rng, T, B, F, V, L):
    x = rng.standard_normal((T, B, F)).astype(np.float32)
    lengths = np.full(B, T, dtype=np.int32)
    lengths[B // 2 :] = T * 3 // 4  # half the batch padded
    x[T * 3 // 4 :, B // 2 :] = 0
    target_lengths = np.full(B, L, dtype=np.int32)
    targets = rng.integers(0, V - 1, size=B * L).astype(np.int32)
    return x, lengths, targets, target_lengths


def _glorot(rng, shape):
    limit = np.sqrt(6.0 / sum(shape[-2:]))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


# --- DeepSpeech ---------------------------------------------------------------------


def deepspeech_weights(rng, F, H, V):
    w = {}
    for name, (n_in, n_out) in {
        "d1": (F, H), "d2": (H, H), "d3": (H, H), "d5": (H, H), "out": (H, V),
    }.items():  # fmt: skip
        w[f"{name}.W"] = _glorot(rng, (n_in, n_out))
        w[f"{name}.b"] = np.zeros(n_out, np.float32)
    w["lstm.W_ih"] = _glorot(rng, (H, 4 * H))
    w["lstm.W_hh"] = _glorot(rng, (H, 4 * H))
    w["lstm.b_ih"] = np.zeros(4 * H, np.float32)
    w["lstm.b_hh"] = np.zeros(4 * H, np.float32)
    return w


class CupyDeepSpeech:
    """The DeepSpeech step on the cupy backend's kernels, all on the device."""

    def __init__(self, weights, batch, V):
        self.p = train_step.to_device(weights)
        self.state = {"step": 0}
        for name, value in self.p.items():
            self.state[f"exp_avg.{name}"] = cp.zeros_like(value)
            self.state[f"exp_avg_sq.{name}"] = cp.zeros_like(value)
        x, lengths, targets, target_lengths = batch
        self.x, self.lengths = cp.asarray(x), cp.asarray(lengths)
        self.targets = cp.asarray(targets)
        self.target_lengths = cp.asarray(target_lengths)
        offsets = np.concatenate([[0], np.cumsum(target_lengths)[:-1]])
        self.offsets = cp.asarray(offsets.astype(np.int64))
        self.V = V

    def step(self):
        p = self.p
        T, B, F = self.x.shape
        H = p["lstm.W_hh"].shape[0]
        fwd, bwd = (
            K.dense_clip_forward.device_kernel,
            K.dense_clip_backward.device_kernel,
        )
        a0 = self.x.reshape(T * B, F)
        a1 = fwd(a0, p["d1.W"], p["d1.b"], 0.0, CLIP)
        a2 = fwd(a1, p["d2.W"], p["d2.b"], 0.0, CLIP)
        a3 = fwd(a2, p["d3.W"], p["d3.b"], 0.0, CLIP)
        zeros = cp.zeros((B, H), cp.float32)
        x4 = a3.reshape(T, B, H)
        y, gates, cells, _, _ = K.lstm_forward.device_kernel(
            x4, self.lengths, p["lstm.W_ih"], p["lstm.W_hh"], p["lstm.b_ih"],
            p["lstm.b_hh"], zeros, zeros,
        )  # fmt: skip
        a4 = y.reshape(T * B, H)
        a5 = fwd(a4, p["d5.W"], p["d5.b"], 0.0, CLIP)
        logits = K.dense_forward.device_kernel(a5, p["out.W"], p["out.b"])
        loss, dlogits = train_step.ctc_batch_loss(
            logits.reshape(T, B, self.V), self.targets, self.offsets, self.lengths,
            self.target_lengths, self.V - 1,
        )  # fmt: skip
        g = {}
        d5, g["out.W"], g["out.b"] = K.dense_backward.device_kernel(
            a5, p["out.W"], dlogits.reshape(T * B, self.V)
        )
        d4, g["d5.W"], g["d5.b"] = bwd(a4, p["d5.W"], a5, d5, 0.0, CLIP)
        dx4, g["lstm.W_ih"], g["lstm.W_hh"], g["lstm.b_ih"], g["lstm.b_hh"], _, _ = (
            K.lstm_backward.device_kernel(
                d4.reshape(T, B, H), zeros, zeros, x4, self.lengths, p["lstm.W_ih"],
                p["lstm.W_hh"], zeros, zeros, y, gates, cells,
            )
        )  # fmt: skip
        d3, g["d3.W"], g["d3.b"] = bwd(
            a2, p["d3.W"], a3, dx4.reshape(T * B, H), 0.0, CLIP
        )
        d2, g["d2.W"], g["d2.b"] = bwd(a1, p["d2.W"], a2, d3, 0.0, CLIP)
        _, g["d1.W"], g["d1.b"] = bwd(a0, p["d1.W"], a1, d2, 0.0, CLIP, need_dx=False)
        train_step.adam_step_(p, g, self.state, 1e-4)
        return loss


class TorchDeepSpeech(torch.nn.Module):
    def __init__(self, weights, batch, V):
        super().__init__()
        W = {k: torch.from_numpy(v).to(DEV) for k, v in weights.items()}
        self.dense = torch.nn.ParameterDict(
            {k.replace(".", "_"): torch.nn.Parameter(v) for k, v in W.items()
             if not k.startswith("lstm")}
        )  # fmt: skip
        H = W["lstm.W_hh"].shape[0]
        self.lstm = torch.nn.LSTM(H, H).to(DEV)
        with torch.no_grad():
            self.lstm.weight_ih_l0.copy_(W["lstm.W_ih"].T)
            self.lstm.weight_hh_l0.copy_(W["lstm.W_hh"].T)
            self.lstm.bias_ih_l0.copy_(W["lstm.b_ih"])
            self.lstm.bias_hh_l0.copy_(W["lstm.b_hh"])
        x, lengths, targets, target_lengths = batch
        self.x = torch.from_numpy(x).to(DEV)
        self.lengths = torch.from_numpy(lengths.astype(np.int64)).to(DEV)
        self.targets = torch.from_numpy(targets.astype(np.int64)).to(DEV)
        self.target_lengths = torch.from_numpy(target_lengths.astype(np.int64)).to(DEV)
        self.V = V
        self.opt = torch.optim.Adam(self.parameters(), lr=1e-4)

    def _dense(self, a, name, clip=True):
        out = a @ self.dense[f"{name}_W"] + self.dense[f"{name}_b"]
        return out.clamp(0.0, CLIP) if clip else out

    def step(self):
        T, B, _ = self.x.shape
        a = self._dense(self._dense(self._dense(self.x, "d1"), "d2"), "d3")
        packed = torch.nn.utils.rnn.pack_padded_sequence(a, self.lengths.cpu())
        y, _ = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)
        logits = self._dense(self._dense(y, "d5"), "out", clip=False)
        loss = torch.nn.functional.ctc_loss(
            logits.log_softmax(-1), self.targets, self.lengths, self.target_lengths,
            blank=self.V - 1, reduction="sum",
        ) / B  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss)


# --- DS2-small ----------------------------------------------------------------------

CONVS = [  # (C_out, kt, kf, st, sf, pt, pf)
    (32, 11, 41, 2, 2, 5, 20),
    (32, 11, 21, 1, 2, 5, 10),
]


def ds2_weights(rng, F, H, V, layers=3):
    w, C, Fc = {}, 1, F
    for i, (C_out, kt, kf, _, sf, _, pf) in enumerate(CONVS):
        w[f"conv{i}.W"] = _glorot(rng, (C_out, C, kt, kf)) * 0.1
        w[f"conv{i}.b"] = np.zeros(C_out, np.float32)
        C, Fc = C_out, (Fc + 2 * pf - kf) // sf + 1
    n_in = C * Fc
    for i in range(layers):
        w[f"gru{i}.W_ih"] = _glorot(rng, (n_in, 3 * H))
        w[f"gru{i}.W_hh"] = _glorot(rng, (H, 3 * H))
        w[f"gru{i}.b_ih"] = np.zeros(3 * H, np.float32)
        w[f"gru{i}.b_hh"] = np.zeros(3 * H, np.float32)
        n_in = H
    w["out.W"] = _glorot(rng, (H, V))
    w["out.b"] = np.zeros(V, np.float32)
    return w


def _conv_lengths(lengths):
    """Valid output frames after the convolutions (NumPy or CuPy lengths)."""
    for _, kt, _, st, _, pt, _ in CONVS:
        lengths = (lengths + 2 * pt - kt) // st + 1
    return lengths


class CupyDS2(CupyDeepSpeech):
    def step(self):
        p, xp_ = self.p, self.x[:, :, None, :]  # (T, B, 1, F)
        acts, a = [], xp_
        for i, (_, _, _, st, sf, pt, pf) in enumerate(CONVS):
            padded = cp.pad(a, ((pt, pt), (0, 0), (0, 0), (pf, pf)))
            z = K.conv2d_forward.device_kernel(
                padded, p[f"conv{i}.W"], p[f"conv{i}.b"], st, sf
            )
            a = K.clip_forward.device_kernel(z, 0.0, CLIP)
            acts.append((padded, a))
        T, B, C, Fc = a.shape
        lengths = _conv_lengths(self.lengths)
        a = K.mask_padded.device_kernel(a, lengths).reshape(T, B, C * Fc)
        zeros = None
        grus = []
        for i in range(3):
            H = p[f"gru{i}.W_hh"].shape[0]
            zeros = cp.zeros((B, H), cp.float32)
            y, gates, hn, _ = K.gru_forward.device_kernel(
                a, lengths, p[f"gru{i}.W_ih"], p[f"gru{i}.W_hh"], p[f"gru{i}.b_ih"],
                p[f"gru{i}.b_hh"], zeros,
            )  # fmt: skip
            grus.append((a, y, gates, hn))
            a = y
        logits = K.dense_forward.device_kernel(
            a.reshape(T * B, H), p["out.W"], p["out.b"]
        )
        loss, dlogits = train_step.ctc_batch_loss(
            logits.reshape(T, B, self.V), self.targets, self.offsets, lengths,
            self.target_lengths, self.V - 1,
        )  # fmt: skip
        g = {}
        d, g["out.W"], g["out.b"] = K.dense_backward.device_kernel(
            a.reshape(T * B, H), p["out.W"], dlogits.reshape(T * B, self.V)
        )
        d = d.reshape(T, B, H)
        for i in reversed(range(3)):
            x_i, y, gates, hn = grus[i]
            grads = K.gru_backward.device_kernel(
                d, zeros, x_i, lengths, p[f"gru{i}.W_ih"], p[f"gru{i}.W_hh"], zeros,
                y, gates, hn,
            )  # fmt: skip
            d = grads[0]
            for k, name in enumerate(("W_ih", "W_hh", "b_ih", "b_hh")):
                g[f"gru{i}.{name}"] = grads[1 + k]
        d = K.mask_padded.device_kernel(d.reshape(T, B, C, Fc), lengths)
        for i in reversed(range(len(CONVS))):
            _, kt, kf, st, sf, pt, pf = CONVS[i]
            padded, out = acts[i]
            d = K.clip_backward.device_kernel(d, out, 0.0, CLIP)
            dxp, g[f"conv{i}.W"], g[f"conv{i}.b"] = K.conv2d_backward.device_kernel(
                d, padded, p[f"conv{i}.W"], st, sf, need_dx=i > 0
            )
            if dxp is not None:
                d = dxp[pt : dxp.shape[0] - pt, :, :, pf : dxp.shape[3] - pf]
        train_step.adam_step_(p, g, self.state, 1e-4)
        return loss


class TorchDS2(torch.nn.Module):
    def __init__(self, weights, batch, V):
        super().__init__()
        W = {k: torch.from_numpy(v).to(DEV) for k, v in weights.items()}
        self.convs = torch.nn.ModuleList()
        for i, (C_out, kt, kf, st, sf, pt, pf) in enumerate(CONVS):
            conv = torch.nn.Conv2d(
                W[f"conv{i}.W"].shape[1], C_out, (kt, kf), (st, sf), (pt, pf)
            ).to(DEV)
            with torch.no_grad():
                conv.weight.copy_(W[f"conv{i}.W"])
                conv.bias.copy_(W[f"conv{i}.b"])
            self.convs.append(conv)
        self.grus = torch.nn.ModuleList()
        for i in range(3):
            H = W[f"gru{i}.W_hh"].shape[0]
            gru = torch.nn.GRU(W[f"gru{i}.W_ih"].shape[0], H).to(DEV)
            with torch.no_grad():
                gru.weight_ih_l0.copy_(W[f"gru{i}.W_ih"].T)
                gru.weight_hh_l0.copy_(W[f"gru{i}.W_hh"].T)
                gru.bias_ih_l0.copy_(W[f"gru{i}.b_ih"])
                gru.bias_hh_l0.copy_(W[f"gru{i}.b_hh"])
            self.grus.append(gru)
        self.out_W = torch.nn.Parameter(W["out.W"])
        self.out_b = torch.nn.Parameter(W["out.b"])
        x, lengths, targets, target_lengths = batch
        self.x = torch.from_numpy(x).to(DEV)
        self.lengths = torch.from_numpy(_conv_lengths(lengths).astype(np.int64))
        self.targets = torch.from_numpy(targets.astype(np.int64)).to(DEV)
        self.target_lengths = torch.from_numpy(target_lengths.astype(np.int64)).to(DEV)
        self.V = V
        self.opt = torch.optim.Adam(self.parameters(), lr=1e-4)

    def step(self):
        a = self.x.permute(1, 0, 2)[:, None]  # (B, 1, T, F)
        for conv in self.convs:
            a = conv(a).clamp(0.0, CLIP)
        B, C, T, Fc = a.shape
        a = a.permute(2, 0, 1, 3).reshape(T, B, C * Fc)
        mask = (
            torch.arange(T, device=DEV)[:, None] < self.lengths.to(DEV)[None]
        ).float()
        a = a * mask[:, :, None]
        for gru in self.grus:
            packed = torch.nn.utils.rnn.pack_padded_sequence(a, self.lengths)
            a, _ = gru(packed)
            a, _ = torch.nn.utils.rnn.pad_packed_sequence(a, total_length=T)
        logits = a @ self.out_W + self.out_b
        loss = torch.nn.functional.ctc_loss(
            logits.log_softmax(-1), self.targets, self.lengths.to(DEV),
            self.target_lengths, blank=self.V - 1, reduction="sum",
        ) / B  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss)


# --- the engine's device step (ds2, ds2-stream) --------------------------------------

#: the trainer's gradient clipping in both twins (DeepSpeech2 PyTorch's max_norm)
MAX_NORM = 400.0
LEARNING_RATE = 1e-4


def ds2_small_config(architecture):
    """DS2-small as a model configuration: ModelConfig's convolutions, three GRU
    layers of 512 (``ds2-stream``: unidirectional, a lookahead of 20 frames)."""
    return ModelConfig(architecture=architecture, n_hidden=512, rnn_kind="gru",
                       rnn_layers=3, lookahead_context=20, dropout=0.0)  # fmt: skip


class EngineStep:
    """One training step as ``npspeech train --backend cupy`` runs it:
    :class:`npspeech.train_device.DeviceSteps` (the batch uploaded, forward, CTC,
    backward, clipping, Adam, the new batch-norm statistics kept), scalars back."""

    def __init__(self, network, batch, seed=0):
        from npspeech import optim
        from npspeech.distributed.collective import Collective
        from npspeech.train_device import DeviceSteps

        self.steps = DeviceSteps(Collective())
        self.network = network.copy()
        self.network.params = train_step.to_device(self.network.params)
        self.network.state = train_step.to_device(self.network.state)
        self.optimizer = train_step.to_device(optim.adam_init(network.params))
        x, lengths, targets, target_lengths = batch
        self.B = x.shape[1]
        utterances = [types.SimpleNamespace(source=f"u{b}") for b in range(self.B)]
        self.batch = types.SimpleNamespace(
            features=x, lengths=lengths, targets=targets,
            target_lengths=target_lengths, utterances=utterances,
        )  # fmt: skip
        self.rng = np.random.default_rng(seed)

    def step(self):
        local = self.steps.local_gradients(
            self.network, self.batch, self.B, "the benchmark batch", self.rng
        )
        assert not local.problem, local.problem
        grads, _ = self.steps.clip_grad_norm(local.grads, MAX_NORM)
        self.steps.adam_step(self.network.params, grads, self.optimizer,
                             LEARNING_RATE)  # fmt: skip
        self.network.state = local.state
        return local.loss_sum / self.B


class TorchEngineDS2(torch.nn.Module):
    """The engine's ds2 / ds2-stream network in PyTorch, from the same weights:
    conv, BatchNorm2d, hardtanh(0, 20) per convolution; GRU layers (batch norm before
    all but the first; directions summed for ds2); ds2-stream's lookahead as a
    depthwise conv1d over future frames and hardtanh; batch norm and the output
    layer. For unpadded batches only (see the module docstring)."""

    def __init__(self, network, batch, device=None):
        super().__init__()
        dev = DEV if device is None else device
        config, p = network.config, network.params
        W = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in
             p.items()}  # fmt: skip
        self.clip = float(config.relu_clip)
        self.convs, self.conv_norms = torch.nn.ModuleList(), torch.nn.ModuleList()
        for i, (stride, padding) in enumerate(
            zip(config.conv_strides, config.conv_padding, strict=True), start=1
        ):
            weight = W[f"conv_{i}/W"]
            C_out, C_in, kt, kf = weight.shape
            conv = torch.nn.Conv2d(C_in, C_out, (kt, kf), stride, padding)
            norm = torch.nn.BatchNorm2d(weight.shape[0], momentum=0.1, eps=1e-5)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(W[f"conv_{i}/b"])
                norm.weight.copy_(W[f"conv_{i}_bn/gamma"])
                norm.bias.copy_(W[f"conv_{i}_bn/beta"])
            self.convs.append(conv.to(dev))
            self.conv_norms.append(norm.to(dev))
        self.bidirectional = config.architecture == "ds2"
        self.rnns, self.rnn_norms = torch.nn.ModuleList(), torch.nn.ModuleList()
        for i in range(1, config.rnn_layers + 1):
            name = f"rnn_{i}"
            n_in, H = W[f"{name}/W_ih"].shape[0], W[f"{name}/W_hh"].shape[0]
            rnn = torch.nn.GRU(n_in, H, bidirectional=self.bidirectional)
            with torch.no_grad():
                for suffix in ("", "_reverse") if self.bidirectional else ("",):
                    getattr(rnn, f"weight_ih_l0{suffix}").copy_(
                        W[f"{name}/W_ih{suffix}"].T
                    )
                    getattr(rnn, f"weight_hh_l0{suffix}").copy_(
                        W[f"{name}/W_hh{suffix}"].T
                    )
                    getattr(rnn, f"bias_ih_l0{suffix}").copy_(W[f"{name}/b_ih{suffix}"])
                    getattr(rnn, f"bias_hh_l0{suffix}").copy_(W[f"{name}/b_hh{suffix}"])
            self.rnns.append(rnn.to(dev))
            if i > 1:
                self.rnn_norms.append(self._norm1d(W, f"{name}_bn").to(dev))
        self.lookahead = None
        if config.architecture == "ds2-stream":
            taps = W["lookahead/W"]  # (context + 1, H)
            self.lookahead = torch.nn.Parameter(taps.T[:, None, :].contiguous())
        self.output_norm = self._norm1d(W, "output_bn").to(dev)
        self.out_W = torch.nn.Parameter(W["output/W"])
        self.out_b = torch.nn.Parameter(W["output/b"])
        x, lengths, targets, target_lengths = batch
        assert (lengths == x.shape[0]).all(), "the twin takes unpadded batches"
        self.x = x  # uploaded each step, as the engine's trainer does
        self.dev = dev
        self.targets = torch.from_numpy(targets.astype(np.int64)).to(dev)
        self.target_lengths = torch.from_numpy(target_lengths.astype(np.int64)).to(dev)
        self.opt = torch.optim.Adam(self.parameters(), lr=LEARNING_RATE)

    @staticmethod
    def _norm1d(W, name):
        norm = torch.nn.BatchNorm1d(W[f"{name}/gamma"].shape[0], momentum=0.1, eps=1e-5)
        with torch.no_grad():
            norm.weight.copy_(W[f"{name}/gamma"])
            norm.bias.copy_(W[f"{name}/beta"])
        return norm

    def _rows(self, norm, a):
        T, B, F = a.shape
        return norm(a.reshape(T * B, F)).reshape(T, B, F)

    def step(self):
        x = torch.from_numpy(self.x).to(self.dev)  # (T, B, F)
        a = x.permute(1, 0, 2)[:, None]  # (B, 1, T, F)
        for conv, norm in zip(self.convs, self.conv_norms, strict=True):
            a = torch.nn.functional.hardtanh(norm(conv(a)), 0.0, self.clip)
        B, C, T, Fc = a.shape
        a = a.permute(2, 0, 1, 3).reshape(T, B, C * Fc)  # channel-major features
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                a = self._rows(self.rnn_norms[i - 1], a)
            a, _ = rnn(a)
            if self.bidirectional:
                a = a[:, :, : a.shape[2] // 2] + a[:, :, a.shape[2] // 2 :]
        if self.lookahead is not None:
            taps = self.lookahead.shape[2]
            future = torch.nn.functional.pad(a.permute(1, 2, 0), (0, taps - 1))
            a = torch.nn.functional.conv1d(future, self.lookahead, groups=a.shape[2])
            a = a.permute(2, 0, 1)  # (B, H, T) -> (T, B, H)
            a = torch.nn.functional.hardtanh(a, 0.0, self.clip)
        logits = self._rows(self.output_norm, a) @ self.out_W + self.out_b
        frames = torch.full((B,), T, dtype=torch.int64, device=self.dev)
        loss = torch.nn.functional.ctc_loss(
            logits.log_softmax(-1), self.targets, frames, self.target_lengths,
            blank=logits.shape[2] - 1, reduction="sum",
        ) / B  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), MAX_NORM)
        self.opt.step()
        return float(loss.detach())


def engine_pair(architecture, rng, T=300, B=32, F=161, V=29, L=40, config=None):
    """The engine's device step and its PyTorch twin on one unpadded batch."""
    from npspeech import models

    config = ds2_small_config(architecture) if config is None else config
    x = rng.standard_normal((T, B, F)).astype(np.float32)
    lengths = np.full(B, T, dtype=np.int32)
    target_lengths = np.full(B, L, dtype=np.int32)
    targets = rng.integers(0, V - 1, size=B * L).astype(np.int32)
    network = models.init(config, F, V, rng)
    batch = (x, lengths, targets, target_lengths)
    return EngineStep(network, batch), TorchEngineDS2(network, batch)


# --- one launch per recurrent step against two ----------------------------------------


def rnn_pair(kind, rng, T, B, H):
    """The cupy backend's forward pass of one recurrent layer with the one-launch
    step and with the two-launch step; each returns the sum of its outputs."""
    G = {"lstm": 4, "gru": 3}[kind]
    x = cp.asarray(rng.standard_normal((T, B, H)).astype(np.float32))
    lengths = cp.full(B, T, dtype=cp.int32)
    weights = [cp.asarray(_glorot(rng, (H, G * H))) for _ in range(2)]
    weights += [cp.zeros(G * H, cp.float32) for _ in range(2)]
    states = [cp.zeros((B, H), cp.float32)] * (2 if kind == "lstm" else 1)
    forward = getattr(K, f"{kind}_forward").device_kernel

    def run(bound):
        def side():
            saved = rnn_fused.FUSED_STEP_MAX_HIDDEN
            rnn_fused.FUSED_STEP_MAX_HIDDEN = bound
            try:
                return float(forward(x, lengths, *weights, *states)[0].sum())
            finally:
                rnn_fused.FUSED_STEP_MAX_HIDDEN = saved

        return side

    return run(H), run(0)


# --- CTC alone ----------------------------------------------------------------------


def ctc_pair(rng, T, B, V, L):
    logits = rng.standard_normal((T, B, V)).astype(np.float32)
    lengths = np.full(B, T, np.int32)
    target_lengths = np.full(B, L, np.int32)
    targets = rng.integers(0, V - 1, B * L).astype(np.int32)
    offsets = cp.asarray((np.arange(B) * L).astype(np.int64))
    d = [cp.asarray(a) for a in (logits, targets, lengths, target_lengths)]
    t_logits = torch.from_numpy(logits).to(DEV)
    t_args = [
        torch.from_numpy(a.astype(np.int64)).to(DEV)
        for a in (targets, lengths, target_lengths)
    ]

    def ours():
        losses, _ = K.ctc_loss_and_grad.device_kernel(
            d[0], d[1], offsets, d[2], d[3], V - 1
        )
        return float(losses.sum())

    def theirs():
        x = t_logits.detach().requires_grad_(True)
        loss = torch.nn.functional.ctc_loss(
            x.log_softmax(-1), t_args[0].view(B, L), t_args[1], t_args[2],
            blank=V - 1, reduction="sum",
        )  # fmt: skip
        loss.backward()
        return float(loss)

    return ours, theirs


def compare(name, ours, theirs, steps, rtol):
    first_ours, first_theirs = ours(), theirs()
    assert np.isfinite(first_ours), name
    assert abs(first_ours - first_theirs) <= rtol * abs(first_theirs), (
        name, first_ours, first_theirs,
    )  # fmt: skip
    for _ in range(2):  # warm-up: kernels compiled, cuDNN plans chosen
        ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(3):  # alternate the sides so drift hits both
        t_ours.append(_timed(ours, steps))
        t_theirs.append(_timed(theirs, steps))
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(
        f"{name:<34} npspeech {mo:9.2f} ms  torch {mt:9.2f} ms  ratio {mo / mt:6.3f}"
        f"  (first loss {first_ours:.4f} vs {first_theirs:.4f})",
        flush=True,
    )
    return mo / mt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", default="deepspeech,ds2,ctc")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    print(
        f"GPU: {torch.cuda.get_device_name()}  cupy {cp.__version__}  "
        f"torch {torch.__version__}"
    )
    rng = np.random.default_rng(0)
    V = 29
    if "deepspeech" in only:
        batch = _batch(rng, 300, 32, 494, V, 60)
        w = deepspeech_weights(rng, 494, 2048, V)
        compare("deepspeech-2048 B=32 T=300 step", CupyDeepSpeech(w, batch, V).step,
                TorchDeepSpeech(w, batch, V).step, args.steps, 1e-3)  # fmt: skip
    if "ds2" in only:
        batch = _batch(rng, 300, 32, 161, V, 40)
        w = ds2_weights(rng, 161, 512, V)
        compare("ds2-small B=32 T=300 step", CupyDS2(w, batch, V).step,
                TorchDS2(w, batch, V).step, args.steps, 1e-3)  # fmt: skip
    if "ctc" in only:
        for T, B, L in ((300, 32, 60), (1000, 8, 200)):
            ours, theirs = ctc_pair(rng, T, B, V, L)
            compare(f"ctc T={T} B={B} V={V} L={L}", ours, theirs, args.steps, 1e-4)
    for architecture in ("ds2", "ds2-stream"):
        if f"{architecture}-engine" in only:
            engine, twin = engine_pair(architecture, rng)
            # 5e-3: cuDNN's convolutions and GRU default to TF32 on this GPU
            compare(f"{architecture} engine B=32 T=300 step", engine.step, twin.step,
                    args.steps, 5e-3)  # fmt: skip
    if "rnn" in only:  # the ratio here is one launch per step / two
        for kind, T, B, H in (("lstm", 300, 32, 2048), ("gru", 150, 32, 512)):
            one, two = rnn_pair(kind, rng, T, B, H)
            compare(f"{kind} H={H} B={B} T={T} 1 vs 2 launches", one, two,
                    args.steps, 1e-3)  # fmt: skip


if __name__ == "__main__":
    main()
