"""Streaming inference: npspeech's runtime against PyTorch CPU on the same weights.

One thread on each side (Numba, BLAS and OpenMP limited before anything is imported,
``torch.set_num_threads(1)``), batch 1, audio fed in 1 s chunks with the state carried
from chunk to chunk, as a live transcription runs. Each side gets the model's own
input frames (26 MFCC every 20 ms for ``deepspeech``, 161 spectrogram bins every 10 ms
for ``ds2-stream``) and does its own windowing:

- npspeech: :meth:`npspeech.runtime.InferenceNetwork.forward_chunk`;
- PyTorch: the same network in ``torch.nn`` modules under ``torch.inference_mode()``
  (``Linear`` + ``Hardtanh``, ``LSTM``/``GRU`` with ``(h, c)`` carried, ``Conv2d`` +
  ``BatchNorm2d`` in eval mode, the lookahead as a depthwise ``conv1d``), with the
  same hold-back of future frames written in torch ops.

The two sides run in interleaved rounds, so that a loaded machine slows both alike;
each round streams ``--seconds`` of audio through a fresh state. Printed per case: the
median real-time factor (compute time over audio time) of each side, the ratio
npspeech / PyTorch of the medians, and the median and range of the per-round ratios.
Both sides' logits are checked to agree before timing. For the DeepSpeech shape of
width 2048 it also prints the weight bytes read per second of compute (the LSTM's
recurrent weight, 64 MiB, is read at every frame) next to the bandwidth of a large
NumPy copy on this machine. With ``--stages``, one more pass of npspeech's stream with
a timer around each kind of compiled kernel prints where its time goes, in ms per
second of audio: the recurrent time loops, the dense products (the recurrent layers'
input projections included), the convolutions, and the rest (Python, NumPy glue).

    python benchmarks/bench_runtime.py [--rounds 7] [--seconds 4] [--case ds-2048 ...]
        [--weights int8] [--stages]

Targets (issue 16): npspeech's real-time factor at most 0.9 of PyTorch's in every case;
with ``--weights int8`` (npspeech on int8 weights, ``npspeech quantize``'s scheme,
against PyTorch in float32) at most 0.5 of PyTorch's. The int8 logits are checked
against PyTorch's float ones to 5% of their range (the rounding of the weights), the
float ones to 0.1%.
"""

from __future__ import annotations

import os

for _variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                  "MKL_NUM_THREADS"):  # fmt: skip
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from npspeech import models  # noqa: E402
from npspeech.config import ModelConfig, from_dict, read_toml  # noqa: E402
from npspeech.constants import BATCH_NORM_EPS  # noqa: E402
from npspeech.runtime import InferenceNetwork  # noqa: E402

TARGET = {"float32": 0.9, "int8": 0.5}
N_CLASSES = 29


# -- the PyTorch twins -----------------------------------------------------------------


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _linear(W: np.ndarray, b: np.ndarray) -> torch.nn.Linear:
    layer = torch.nn.Linear(W.shape[0], W.shape[1])
    layer.weight.data = _t(W.T)
    layer.bias.data = _t(b)
    return layer


def _recurrent(kind: str, params: dict, prefix: str) -> torch.nn.Module:
    W_ih = params[f"{prefix}/W_ih"]
    H = params[f"{prefix}/W_hh"].shape[0]
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    if kind == "rnn":
        raise SystemExit("the PyTorch twin has no clipped-ReLU RNN")
    layer = cls(W_ih.shape[0], H)
    layer.weight_ih_l0.data = _t(W_ih.T)
    layer.weight_hh_l0.data = _t(params[f"{prefix}/W_hh"].T)
    layer.bias_ih_l0.data = _t(params[f"{prefix}/b_ih"])
    layer.bias_hh_l0.data = _t(params[f"{prefix}/b_hh"])
    return layer


def _batch_norm(network, name: str, conv: bool) -> torch.nn.Module:
    n = network.params[f"{name}/gamma"].size
    norm = torch.nn.BatchNorm2d(n) if conv else torch.nn.BatchNorm1d(n)
    norm.eps = BATCH_NORM_EPS
    norm.weight.data = _t(network.params[f"{name}/gamma"])
    norm.bias.data = _t(network.params[f"{name}/beta"])
    norm.running_mean.data = _t(network.state[f"{name}/running_mean"])
    norm.running_var.data = _t(network.state[f"{name}/running_var"])
    return norm.eval()


class TorchDeepSpeech:
    """DeepSpeech streaming in torch: context windows held back n_context frames."""

    def __init__(self, network: models.Network):
        p, config = network.params, network.config
        self.n_context, self.n_input = config.n_context, network.n_input
        self.clip = float(config.relu_clip)
        self.dense_in = [
            _linear(p[f"{n}/W"], p[f"{n}/b"]) for n in ("layer_1", "layer_2", "layer_3")
        ]
        self.lstm = _recurrent("lstm", p, "layer_4")
        self.dense_5 = _linear(p["layer_5/W"], p["layer_5/b"])
        self.dense_6 = _linear(p["layer_6/W"], p["layer_6/b"])

    def new_state(self):
        return {"buffer": torch.zeros(self.n_context, self.n_input), "rnn": None}

    def chunk(self, features: torch.Tensor, state, final: bool) -> torch.Tensor:
        buffer = torch.cat([state["buffer"], features])
        if final:
            buffer = torch.cat([buffer, torch.zeros(self.n_context, self.n_input)])
        width = 2 * self.n_context + 1
        T = buffer.shape[0] - 2 * self.n_context
        if T <= 0:
            state["buffer"] = buffer
            return torch.zeros(0, N_CLASSES)
        # (T, F, width) -> (T, width, F) -> (T, width * F), frame-major
        x = buffer.unfold(0, width, 1).transpose(1, 2).reshape(T, -1)
        state["buffer"] = buffer[T:]
        for layer in self.dense_in:
            x = torch.nn.functional.hardtanh(layer(x), 0.0, self.clip)
        x, state["rnn"] = self.lstm(x[:, None], state["rnn"])
        x = torch.nn.functional.hardtanh(self.dense_5(x[:, 0]), 0.0, self.clip)
        return self.dense_6(x)


class TorchDS2Stream:
    """ds2-stream streaming in torch: each convolution and the lookahead hold back
    the frames they still need, as npspeech does."""

    def __init__(self, network: models.Network):
        p, config = network.params, network.config
        self.clip = float(config.relu_clip)
        self.convs = []
        for index, (c_in, c_out, kernel, stride, padding, _) in enumerate(
            models._conv_geometry(config, network.n_input), start=1
        ):
            conv = torch.nn.Conv2d(
                c_in, c_out, kernel, stride=stride, padding=(0, padding[1])
            )
            conv.weight.data = _t(p[f"conv_{index}/W"])
            conv.bias.data = _t(p[f"conv_{index}/b"])
            norm = _batch_norm(network, f"conv_{index}_bn", conv=True)
            self.convs.append((conv, norm, kernel[0], stride[0], padding[0], c_in))
        self.freqs = [network.n_input] + [
            g[5] for g in models._conv_geometry(config, network.n_input)
        ]
        self.rnns, self.norms = [], []
        for index in range(1, config.rnn_layers + 1):
            self.rnns.append(_recurrent(config.rnn_kind, p, f"rnn_{index}"))
            self.norms.append(
                _batch_norm(network, f"rnn_{index}_bn", conv=False)
                if index > 1
                else None
            )
        W = p["lookahead/W"]  # (context + 1, H) -> depthwise conv1d weight (H, 1, k)
        self.lookahead = _t(W.T[:, None, :])
        self.context = W.shape[0] - 1
        self.out_norm = _batch_norm(network, "output_bn", conv=False)
        self.output = _linear(p["output/W"], p["output/b"])
        self.hidden = config.n_hidden

    def new_state(self):
        buffers = [
            torch.zeros(pt, c_in, f)
            for (_, _, _, _, pt, c_in), f in zip(self.convs, self.freqs, strict=False)
        ]
        return {
            "convs": buffers,
            "look": torch.zeros(0, self.hidden),
            "rnn": [None] * len(self.rnns),
        }

    def chunk(self, features: torch.Tensor, state, final: bool) -> torch.Tensor:
        x = features[:, None, :]  # (T, 1, F)
        for index, (conv, norm, kt, st, pt, _) in enumerate(self.convs):
            buffer = torch.cat([state["convs"][index], x])
            if final:
                buffer = torch.cat([buffer, torch.zeros(pt, *buffer.shape[1:])])
            T = (buffer.shape[0] - kt) // st + 1 if buffer.shape[0] >= kt else 0
            if T > 0:
                used = (T - 1) * st + kt
                # (T, C, F) -> (1, C, T, F), PyTorch's layout
                y = conv(buffer[:used].permute(1, 0, 2)[None])
                y = torch.nn.functional.hardtanh(norm(y), 0.0, self.clip)
                x = y[0].permute(1, 0, 2)
            else:
                x = torch.zeros(0, conv.out_channels, self.freqs[index + 1])
            state["convs"][index] = buffer[T * st :]
        x = x.reshape(x.shape[0], -1)  # (T, C x F')
        if x.shape[0]:
            for index, (rnn, norm) in enumerate(
                zip(self.rnns, self.norms, strict=True)
            ):
                if norm is not None:
                    x = norm(x)
                y, state["rnn"][index] = rnn(x[:, None], state["rnn"][index])
                x = y[:, 0]
        else:
            x = torch.zeros(0, self.hidden)
        buffer = torch.cat([state["look"], x])
        if final:
            buffer = torch.cat([buffer, torch.zeros(self.context, self.hidden)])
        T = max(buffer.shape[0] - self.context, 0)
        y = torch.nn.functional.conv1d(
            buffer[: T + self.context].T[None], self.lookahead, groups=self.hidden
        )[0].T  # (T, H)
        state["look"] = buffer[T:]
        y = torch.nn.functional.hardtanh(y, 0.0, self.clip)
        return self.output(self.out_norm(y))


# -- the cases -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    config: ModelConfig
    n_input: int
    frames_per_second: int  # input frames per second of audio


def _preset(name: str) -> ModelConfig:
    """The ``[model]`` table of ``npspeech/presets/NAME.toml``."""
    path = Path(models.__file__).parent / "presets" / f"{name}.toml"
    return from_dict(ModelConfig, read_toml(path)["model"], where=str(path))


def _cases() -> dict[str, Case]:
    deepspeech = _preset("deepspeech")
    stream = _preset("ds2-stream")
    return {
        "ds-2048": Case(
            "ds-2048", dataclasses.replace(deepspeech, n_hidden=2048), 26, 50
        ),
        "ds-512": Case("ds-512", dataclasses.replace(deepspeech, n_hidden=512), 26, 50),
        "ds2-stream": Case("ds2-stream", stream, 161, 100),
    }


def _randomise_norms(network: models.Network, rng) -> None:
    """Batch-norm statistics as a trained model has them, not the identity."""
    for name, value in network.state.items():
        if name.endswith("running_mean"):
            network.state[name] = rng.normal(0, 0.3, value.shape).astype(np.float32)
        else:
            network.state[name] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)


def _stream_numpy(runtime, features, chunk):
    state = runtime.new_state()
    out = []
    for start in range(0, features.shape[0], chunk):
        last = start + chunk >= features.shape[0]
        out.append(runtime.forward_chunk(features[start : start + chunk], state, last))
    return np.concatenate(out)


def _stream_torch(twin, features, chunk):
    state = twin.new_state()
    out = []
    with torch.inference_mode():
        for start in range(0, features.shape[0], chunk):
            last = start + chunk >= features.shape[0]
            out.append(twin.chunk(features[start : start + chunk], state, last))
    return torch.cat(out).numpy()


def _weight_bytes_per_second(
    network: models.Network, seconds: float, fps: int, itemsize: int = 4
):
    """Bytes of weights the DeepSpeech stream reads per second of audio: every matrix
    once per chunk, the LSTM's W_hh once per frame; ``itemsize`` bytes per weight."""
    once = sum(v.size for k, v in network.params.items() if "W_hh" not in k)
    per_frame = network.params["layer_4/W_hh"].size
    return (once / seconds + per_frame * fps) * itemsize


def copy_bandwidth() -> float:
    """Bytes per second (read + write) of a 512 MiB NumPy copy, best of five."""
    src = np.ones(2**27, dtype=np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * src.nbytes / best


# npspeech.runtime._numba's entry points that InferenceNetwork calls, by stage
STAGES = {
    "recurrent": ("lstm_sequence", "gru_sequence", "rnn_sequence"),
    "dense": ("dense", "dense_clip"),
    "conv": ("conv_clip",),
}


def stage_times(runtime, features, chunk, audio_seconds: float) -> dict:
    """ms per second of audio in each of :data:`STAGES` and the rest, for one stream
    of ``features`` through ``runtime`` (its kernels wrapped in timers meanwhile)."""
    kernels = runtime._kernels
    spent = dict.fromkeys(STAGES, 0.0)
    originals = {}

    def timed(stage, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start

        return wrapper

    for stage, names in STAGES.items():
        for name in names:
            originals[name] = getattr(kernels, name)
            setattr(kernels, name, timed(stage, originals[name]))
    try:
        total = _timed(lambda: _stream_numpy(runtime, features, chunk))
    finally:
        for name, function in originals.items():
            setattr(kernels, name, function)
    spent["rest"] = total - sum(spent.values())
    return {stage: 1e3 * t / audio_seconds for stage, t in spent.items()}


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run_case(
    case: Case,
    rounds: int,
    seconds: float,
    seed: int = 0,
    weights: str = "float32",
    stages: bool = False,
) -> dict:
    rng = np.random.default_rng(seed)
    network = models.init(case.config, case.n_input, N_CLASSES, rng)
    if network.state:
        _randomise_norms(network, rng)
    runtime = InferenceNetwork(network, backend="numba", weights=weights)
    deepspeech = case.config.architecture == "deepspeech"
    twin = (TorchDeepSpeech if deepspeech else TorchDS2Stream)(network)
    chunk = case.frames_per_second  # 1 s of audio
    T = int(round(seconds * case.frames_per_second))
    features = rng.normal(0, 1, (T, case.n_input)).astype(np.float32)
    features_t = torch.from_numpy(features)
    # agreement, and the first run's compile out of the timing
    ours = _stream_numpy(runtime, features, chunk)
    theirs = _stream_torch(twin, features_t, chunk)
    scale = float(np.abs(theirs).max())
    tolerance = 5e-2 if weights == "int8" else 1e-3
    np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * scale)
    times = {"npspeech": [], "torch": []}
    for _ in range(rounds):
        times["npspeech"].append(
            _timed(lambda: _stream_numpy(runtime, features, chunk))
        )
        times["torch"].append(_timed(lambda: _stream_torch(twin, features_t, chunk)))
    audio_seconds = T / case.frames_per_second
    rtf = {side: [t / audio_seconds for t in v] for side, v in times.items()}
    ratios = [a / b for a, b in zip(rtf["npspeech"], rtf["torch"], strict=True)]
    result = {
        "case": case.name,
        "rtf_npspeech": statistics.median(rtf["npspeech"]),
        "rtf_torch": statistics.median(rtf["torch"]),
        "ratio_medians": statistics.median(rtf["npspeech"])
        / statistics.median(rtf["torch"]),
        "ratio_paired": statistics.median(ratios),
        "ratio_range": (min(ratios), max(ratios)),
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "logit_scale": scale,
    }
    if case.config.architecture == "deepspeech":
        itemsize = 1 if weights == "int8" else 4
        ours_per_second = _weight_bytes_per_second(
            network, 1.0, case.frames_per_second, itemsize
        )
        theirs_per_second = _weight_bytes_per_second(
            network, 1.0, case.frames_per_second
        )
        result["weight_bytes_per_s"] = ours_per_second / result["rtf_npspeech"]
        result["torch_weight_bytes_per_s"] = theirs_per_second / result["rtf_torch"]
    if stages:
        result["stages"] = stage_times(runtime, features, chunk, audio_seconds)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--case", action="append", choices=list(_cases()))
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also print where npspeech's time goes (ms per second of audio)",
    )
    parser.add_argument(
        "--weights",
        choices=tuple(TARGET),
        default="float32",
        help="npspeech's weights (PyTorch always runs float32)",
    )
    args = parser.parse_args(argv)
    target = TARGET[args.weights]
    import numba

    numba.set_num_threads(1)
    torch.set_num_threads(1)
    names = args.case or list(_cases())
    print(
        f"streaming, batch 1, 1 s chunks, {args.seconds:g} s per round, "
        f"{args.rounds} interleaved rounds, 1 thread each side, npspeech weights "
        f"{args.weights}; load: "
        f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"
    )
    bandwidth = copy_bandwidth() if "ds-2048" in names else None
    failed = False
    for name in names:
        r = run_case(
            _cases()[name],
            args.rounds,
            args.seconds,
            weights=args.weights,
            stages=args.stages,
        )
        low, high = r["ratio_range"]
        ok = r["ratio_medians"] <= target
        failed |= not ok
        print(
            f"{name:11s} RTF npspeech {r['rtf_npspeech']:.4f}"
            f"  torch {r['rtf_torch']:.4f}"
            f"  ratio {r['ratio_medians']:.3f} (paired median {r['ratio_paired']:.3f},"
            f" range {low:.3f}-{high:.3f})  target <= {target}: "
            f"{'met' if ok else 'NOT met'}  max |diff| {r['max_abs_diff']:.2e}"
            f" of {r['logit_scale']:.2f}"
        )
        if "weight_bytes_per_s" in r and bandwidth is not None:
            print(
                f"{'':11s} weight reads {r['weight_bytes_per_s'] / 1e9:.2f} GB/s "
                f"(torch {r['torch_weight_bytes_per_s'] / 1e9:.2f}); NumPy copy "
                f"bandwidth (read + write) {bandwidth / 1e9:.2f} GB/s"
            )
        if "stages" in r:
            print(
                f"{'':11s} npspeech ms per s of audio: "
                + ", ".join(f"{stage} {ms:.1f}" for stage, ms in r["stages"].items())
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
