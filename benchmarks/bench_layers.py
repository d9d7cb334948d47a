"""One training step (forward, CTC loss, backward, Adam) of two model-shaped layer
stacks, npspeech against PyTorch CPU on identical weights, in one process.

Stacks (float32, time-major, every sequence full length):

- ``ds``: DeepSpeech 0.9's shape: 494 MFCC-context inputs, three dense layers of H units
  with ReLU clipped at 20, one unidirectional LSTM of H units, a dense layer of H with
  the same clip, a dense output of 29 classes; B=16, T=300, H=512 or 2048.
- ``ds2``: a small DeepSpeech 2: 161-bin spectrogram-shaped input, two convolutions of
  32 channels over (time, frequency), kernels (11, 41) and (11, 21), strides (2, 2) and
  (1, 2), each with batch norm and hardtanh(0, 20); three bidirectional GRUs of 512 with
  summed directions, batch norm between them and before the dense output of 29 classes;
  B=16, T=400 input frames (200 after the strided convolution).

Before timing, both sides run one step from the same weights and the script asserts that
the losses agree and that the recurrent layer's ``W_hh`` gradients agree (this also
compiles every Numba kernel). Each side then runs ``--warmup`` untimed and
``--repeats`` timed steps per thread count, alternating sides per thread count
(``--rounds`` times); medians and the ratio npspeech / PyTorch are printed (<= 1.0
means npspeech is as fast or faster). Threads are limited with threadpoolctl (NumPy's
and SciPy's OpenBLAS, PyTorch's OpenMP/MKL), ``numba.set_num_threads`` and
``torch.set_num_threads``.

By default each side's timed steps run in a fresh child process of this script, as
each library runs in a user's training job. In one process the two libraries' thread
pools get in each other's way: OpenBLAS's and PyTorch's OpenMP workers keep spinning
for a while after a call, and with two threads on two cores the other library's next
call then waits for the cores (15-45% slower steps measured, on both sides).
``--in-process`` times both sides in this process instead, as the script did before.
The children also run with the environment a user's ``npspeech train`` gets:
importing npspeech here set its thread-pool defaults (``npspeech/thread_pools.py``),
too late for this process's OpenBLAS but inherited by the children, which load it
afresh. Both sides' children get them; PyTorch computes with MKL on its own libgomp
copy, which reads ``GOMP_SPINCOUNT`` too (its step time was unchanged by it: 0.98
[0.91, 1.04], steps in turns).

``--pairs N`` times the sides in turns, one step each: both children stay up, and the
parent asks each for one step at a time, N times each, alternating which goes first
and pausing ``--pause`` seconds between steps so that the idle side's thread pool has
gone to sleep. On a shared host whose speed drifts over seconds to minutes, adjacent
steps see the same machine; the script prints the median of the N per-pair ratios
with a bootstrap 95% interval, beside the ratio of the medians.

    python benchmarks/bench_layers.py              # every case, 1 and 2 threads
    python benchmarks/bench_layers.py --cases ds-512 --threads 2 --repeats 3 --rounds 3
    python benchmarks/bench_layers.py --cases ds-2048 ds2 --repeats 1
    python benchmarks/bench_layers.py --cases ds-512 --threads 1 2 --pairs 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time

import numba
import numpy as np
import scipy.linalg  # noqa: F401  # load SciPy's BLAS (Numba's) so the limits reach it
import torch
from threadpoolctl import threadpool_limits

from npspeech import ctc, memory, optim
from npspeech.nn import activations, conv, dense, norm, rnn

CLIP = 20.0  # DeepSpeech's ReLU ceiling, DeepSpeech 2's hardtanh upper bound
V = 29  # English alphabet + apostrophe + space + blank
LEARNING_RATE = 1e-4
# float32 steps of different summation orders: losses agree to this relative tolerance
LOSS_RTOL = 1e-3
GRAD_RTOL = 1e-2  # of the largest |gradient| entry: float32 BPTT over hundreds of steps
CASES = ("ds-512", "ds-2048", "ds2")


def random_targets(rng, B, T):
    """Labels (sum L,) and lengths (B,): about one per four frames, never the blank."""
    target_lengths = rng.integers(T // 8, T // 4, size=B).astype(np.int32)
    targets = rng.integers(0, V - 1, size=int(target_lengths.sum())).astype(np.int32)
    return targets, target_lengths


def torch_ctc(logits, targets, input_lengths, target_lengths):
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
    return torch.nn.functional.ctc_loss(
        log_probs, targets, input_lengths, target_lengths, blank=V - 1, reduction="sum"
    )


def set_weight(module_weight, array, transpose=False):
    with torch.no_grad():
        module_weight.copy_(torch.from_numpy(array.T.copy() if transpose else array))


def copy_rnn(module, params, bidirectional):
    names = {
        "W_ih": "weight_ih_l0",
        "W_hh": "weight_hh_l0",
        "b_ih": "bias_ih_l0",
        "b_hh": "bias_hh_l0",
    }
    for suffix in ("", "_reverse") if bidirectional else ("",):
        for ours, theirs in names.items():
            value = params[ours + suffix]
            set_weight(
                getattr(module, theirs + suffix), value, transpose=value.ndim == 2
            )


# --- the DeepSpeech stack -------------------------------------------------------------


class DeepSpeechStack:
    """dense x3 (clipped ReLU) -> LSTM -> dense (clipped ReLU) -> dense(29)."""

    def __init__(self, rng, H, T, B):
        self.layers = {
            "fc1": dense.init(rng, 494, H),
            "fc2": dense.init(rng, H, H),
            "fc3": dense.init(rng, H, H),
            "lstm": rnn.init(rng, "lstm", H, H),
            "fc5": dense.init(rng, H, H),
            "out": dense.init(rng, H, V),
        }
        self.params = {
            f"{layer}/{name}": value
            for layer, p in self.layers.items()
            for name, value in p.items()
        }
        self.adam = optim.adam_init(self.params)
        self.x = rng.standard_normal((T, B, 494)).astype(np.float32)
        self.lengths = np.full(B, T, dtype=np.int32)
        self.targets, self.target_lengths = random_targets(rng, B, T)

    def _layer(self, name):
        prefix = name + "/"
        return {
            k[len(prefix) :]: v for k, v in self.params.items() if k.startswith(prefix)
        }

    def loss_and_grads(self):
        # the dense layers with their clipped ReLU in one pass, as npspeech's
        # DeepSpeech model runs them
        caches = []
        h = self.x
        for name in ("fc1", "fc2", "fc3"):
            h, dense_cache = dense.forward(self._layer(name), h, clip=(0.0, CLIP))
            caches.append((name, dense_cache))
        h, lstm_cache = rnn.forward(self._layer("lstm"), h, self.lengths, "lstm")
        h, dense_cache = dense.forward(self._layer("fc5"), h, clip=(0.0, CLIP))
        caches.append(("fc5", dense_cache))
        logits, out_cache = dense.forward(self._layer("out"), h)
        loss, dlogits = ctc.ctc_loss(
            logits, self.targets, self.lengths, self.target_lengths, reduction="sum"
        )

        grads = {}
        dh, g = dense.backward(self._layer("out"), dlogits, out_cache)
        grads.update({f"out/{k}": v for k, v in g.items()})
        name, dense_cache = caches.pop()
        dh, g = dense.backward(self._layer(name), dh, dense_cache)
        grads.update({f"{name}/{k}": v for k, v in g.items()})
        dh, g = rnn.backward(self._layer("lstm"), dh, lstm_cache)
        grads.update({f"lstm/{k}": v for k, v in g.items()})
        while caches:
            name, dense_cache = caches.pop()
            # the first layer's input is data: no gradient for it (as in PyTorch)
            dh, g = dense.backward(
                self._layer(name), dh, dense_cache, input_grad=name != "fc1"
            )
            grads.update({f"{name}/{k}": v for k, v in g.items()})
        return float(loss), grads

    def step(self):
        # as npspeech's Trainer does: large arrays reuse the buffers earlier steps freed
        with memory.pooled_arrays():
            loss, grads = self.loss_and_grads()
            self.params, self.adam = optim.adam_step(
                self.params, grads, self.adam, LEARNING_RATE
            )
        return loss

    def torch_model(self):
        H = self.layers["fc2"]["W"].shape[0]
        model = torch.nn.ModuleDict(
            {
                "fc1": torch.nn.Linear(494, H),
                "fc2": torch.nn.Linear(H, H),
                "fc3": torch.nn.Linear(H, H),
                "lstm": torch.nn.LSTM(H, H),
                "fc5": torch.nn.Linear(H, H),
                "out": torch.nn.Linear(H, V),
            }
        )
        for name in ("fc1", "fc2", "fc3", "fc5", "out"):
            set_weight(model[name].weight, self.layers[name]["W"], transpose=True)
            set_weight(model[name].bias, self.layers[name]["b"])
        copy_rnn(model["lstm"], self.layers["lstm"], bidirectional=False)
        return model

    def torch_forward(self, model, x):
        h = x
        for name in ("fc1", "fc2", "fc3"):
            h = torch.nn.functional.hardtanh(model[name](h), 0.0, CLIP)
        h, _ = model["lstm"](h)
        h = torch.nn.functional.hardtanh(model["fc5"](h), 0.0, CLIP)
        return model["out"](h)

    def torch_grad_of_recurrent_weight(self, model):
        return model["lstm"].weight_hh_l0.grad.numpy().T, "lstm/W_hh"


# --- the DeepSpeech 2 stack -----------------------------------------------------------

CONVS = (  # (C_in, C_out, kernel (kt, kf), stride (st, sf), padding (pt, pf))
    (1, 32, (11, 41), (2, 2), (5, 20)),
    (32, 32, (11, 21), (1, 2), (5, 10)),
)
GRU_LAYERS = 3


class DeepSpeech2Stack:
    """conv+BN+hardtanh x2 -> bi-GRU (summed) x3 with BN between -> BN -> dense(29)."""

    def __init__(self, rng, H, T, B, n_bins=161):
        self.H = H
        self.convs = [
            conv.init(rng, c_in, c_out, kernel) for c_in, c_out, kernel, _, _ in CONVS
        ]
        self.conv_bn = [norm.batch_norm_init(c_out) for _, c_out, _, _, _ in CONVS]
        F = n_bins
        for _, _, kernel, stride, padding in CONVS:
            F = conv.output_size(F, kernel[1], stride[1], padding[1])
        width = CONVS[-1][1] * F  # C x F' after the last convolution
        self.grus = [
            rnn.init(rng, "gru", width if i == 0 else H, H, bidirectional=True)
            for i in range(GRU_LAYERS)
        ]
        self.rnn_bn = [norm.batch_norm_init(H) for _ in range(GRU_LAYERS)]
        self.out = dense.init(rng, H, V)
        self.params = {}
        for i, p in enumerate(self.convs):
            self.params.update({f"conv{i}/{k}": v for k, v in p.items()})
            self.params.update(
                {f"conv{i}_bn/{k}": v for k, v in self.conv_bn[i][0].items()}
            )
        for i, p in enumerate(self.grus):
            self.params.update({f"gru{i}/{k}": v for k, v in p.items()})
            self.params.update(
                {f"gru{i}_bn/{k}": v for k, v in self.rnn_bn[i][0].items()}
            )
        self.params.update({f"out/{k}": v for k, v in self.out.items()})
        self.bn_state = {f"conv{i}_bn": s for i, (_, s) in enumerate(self.conv_bn)}
        self.bn_state.update({f"gru{i}_bn": s for i, (_, s) in enumerate(self.rnn_bn)})
        self.adam = optim.adam_init(self.params)
        self.x = rng.standard_normal((T, B, 1, n_bins)).astype(np.float32)
        self.lengths = np.full(B, T, dtype=np.int32)
        self.out_lengths = self.lengths
        for _, _, kernel, stride, padding in CONVS:
            self.out_lengths = conv.output_lengths(
                self.out_lengths, kernel, stride, padding
            )
        self.targets, self.target_lengths = random_targets(
            rng, B, int(self.out_lengths[0])
        )

    def _layer(self, name):
        prefix = name + "/"
        return {
            k[len(prefix) :]: v for k, v in self.params.items() if k.startswith(prefix)
        }

    def loss_and_grads(self):
        tape = []
        h, lengths = self.x, self.lengths
        for i, (_, _, _, stride, padding) in enumerate(CONVS):
            h, conv_cache = conv.forward(
                self._layer(f"conv{i}"), h, lengths, stride, padding
            )
            lengths = conv.output_lengths(lengths, CONVS[i][2], stride, padding)
            h, bn_cache, self.bn_state[f"conv{i}_bn"] = norm.batch_norm_conv_forward(
                self._layer(f"conv{i}_bn"), self.bn_state[f"conv{i}_bn"], h, lengths
            )
            h, clip_cache = activations.hardtanh_forward(h, 0.0, CLIP)
            tape.append((i, conv_cache, bn_cache, clip_cache))
        conv_shape = h.shape
        h = h.reshape(h.shape[0], h.shape[1], -1)  # (T', B, C*F')
        gru_tape = []
        for i in range(GRU_LAYERS):
            h, gru_cache = rnn.forward(
                self._layer(f"gru{i}"), h, lengths, "gru", True, "sum"
            )
            h, bn_cache, self.bn_state[f"gru{i}_bn"] = norm.batch_norm_forward(
                self._layer(f"gru{i}_bn"), self.bn_state[f"gru{i}_bn"], h, lengths
            )
            gru_tape.append((i, gru_cache, bn_cache))
        logits, out_cache = dense.forward(self._layer("out"), h)
        loss, dlogits = ctc.ctc_loss(
            logits, self.targets, lengths, self.target_lengths, reduction="sum"
        )

        grads = {}

        def keep(prefix, g):
            grads.update({f"{prefix}/{k}": v for k, v in g.items()})

        dh, g = dense.backward(self._layer("out"), dlogits, out_cache)
        keep("out", g)
        for i, gru_cache, bn_cache in reversed(gru_tape):
            dh, g = norm.batch_norm_backward(self._layer(f"gru{i}_bn"), dh, bn_cache)
            keep(f"gru{i}_bn", g)
            dh, g = rnn.backward(self._layer(f"gru{i}"), dh, gru_cache)
            keep(f"gru{i}", g)
        dh = dh.reshape(conv_shape)
        for i, conv_cache, bn_cache, clip_cache in reversed(tape):
            dh = activations.hardtanh_backward(dh, clip_cache)
            dh, g = norm.batch_norm_conv_backward(
                self._layer(f"conv{i}_bn"), dh, bn_cache
            )
            keep(f"conv{i}_bn", g)
            dh, g = conv.backward(
                self._layer(f"conv{i}"), dh, conv_cache, input_grad=i > 0
            )
            keep(f"conv{i}", g)
        return float(loss), grads

    def step(self):
        # as npspeech's Trainer does: large arrays reuse the buffers earlier steps freed
        with memory.pooled_arrays():
            loss, grads = self.loss_and_grads()
            self.params, self.adam = optim.adam_step(
                self.params, grads, self.adam, LEARNING_RATE
            )
        return loss

    def torch_model(self):
        H = self.H
        modules = {}
        for i, (c_in, c_out, kernel, stride, padding) in enumerate(CONVS):
            module = torch.nn.Conv2d(c_in, c_out, kernel, stride, padding)
            set_weight(module.weight, self.convs[i]["W"])
            set_weight(module.bias, self.convs[i]["b"])
            modules[f"conv{i}"] = module
            modules[f"conv{i}_bn"] = torch.nn.BatchNorm2d(c_out)
        for i in range(GRU_LAYERS):
            n_in = self.grus[i]["W_ih"].shape[0]
            module = torch.nn.GRU(n_in, H, bidirectional=True)
            copy_rnn(module, self.grus[i], bidirectional=True)
            modules[f"gru{i}"] = module
            modules[f"gru{i}_bn"] = torch.nn.BatchNorm1d(H)
        modules["out"] = torch.nn.Linear(H, V)
        set_weight(modules["out"].weight, self.out["W"], transpose=True)
        set_weight(modules["out"].bias, self.out["b"])
        return torch.nn.ModuleDict(modules)

    def torch_forward(self, model, x):
        h = x.permute(1, 2, 0, 3)  # (T, B, 1, F) -> (B, 1, T, F): time is torch's "H"
        for i in range(len(CONVS)):
            h = model[f"conv{i}_bn"](model[f"conv{i}"](h))
            h = torch.nn.functional.hardtanh(h, 0.0, CLIP)
        B, C, T, F = h.shape
        h = h.permute(2, 0, 1, 3).reshape(T, B, C * F)  # npspeech's (T', B, C*F') order
        for i in range(GRU_LAYERS):
            h, _ = model[f"gru{i}"](h)
            h = h[..., : self.H] + h[..., self.H :]
            h = model[f"gru{i}_bn"](h.reshape(T * B, self.H)).reshape(T, B, self.H)
        return model["out"](h)

    def torch_grad_of_recurrent_weight(self, model):
        return model["gru0"].weight_hh_l0.grad.numpy().T, "gru0/W_hh"


# --- driver ---------------------------------------------------------------------------


class TorchSide:
    def __init__(self, stack):
        self.stack = stack
        self.model = stack.torch_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.x = torch.from_numpy(stack.x)
        self.targets = torch.from_numpy(stack.targets.astype(np.int64))
        lengths = stack.out_lengths if hasattr(stack, "out_lengths") else stack.lengths
        self.lengths = torch.from_numpy(lengths.astype(np.int64))
        self.target_lengths = torch.from_numpy(stack.target_lengths.astype(np.int64))

    def loss_and_backward(self):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.stack.torch_forward(self.model, self.x)
        loss = torch_ctc(logits, self.targets, self.lengths, self.target_lengths)
        loss.backward()
        return float(loss.detach())

    def step(self):
        loss = self.loss_and_backward()
        self.optimizer.step()
        return loss


def make_stack(case, rng, batch):
    if case == "ds-512":
        return DeepSpeechStack(rng, 512, 300, batch)
    if case == "ds-2048":
        return DeepSpeechStack(rng, 2048, 300, batch)
    return DeepSpeech2Stack(rng, 512, 400, batch)


def check_agreement(stack, torch_side, case):
    """Same weights, same batch: the losses and one recurrent gradient must agree."""
    loss, grads = stack.loss_and_grads()
    torch_loss = torch_side.loss_and_backward()
    theirs, key = stack.torch_grad_of_recurrent_weight(torch_side.model)
    assert np.isfinite(loss) and abs(loss - torch_loss) <= LOSS_RTOL * abs(
        torch_loss
    ), f"{case}: loss {loss} != torch {torch_loss}"
    scale = np.abs(theirs).max()
    error = np.abs(grads[key] - theirs).max()
    assert error <= GRAD_RTOL * scale, (
        f"{case}: {key} differs by {error} (scale {scale})"
    )
    print(
        f"{case}: loss {loss:.6g} vs torch {torch_loss:.6g}; {key} max |diff| "
        f"{error:.2e} of {scale:.2e}"
    )


@contextlib.contextmanager
def limited_threads(threads):
    """Both sides' thread pools at ``threads``: BLAS, Numba's and PyTorch's."""
    with threadpool_limits(threads):
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        yield


def timed_steps(step, threads, repeats, warmup):
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones
    (JIT compilation, allocator, BLAS buffers, Adam's state), at ``threads`` threads."""
    with limited_threads(threads):
        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return times


def side_step(case, side, batch):
    """One side's training step on a fresh stack."""
    stack = make_stack(case, np.random.default_rng(0), batch)
    return stack.step if side == "npspeech" else TorchSide(stack).step


def step_times(case, side, threads, batch, repeats, warmup):
    """Seconds of each timed training step of one side, on a fresh stack."""
    return timed_steps(side_step(case, side, batch), threads, repeats, warmup)


def child_command(case, side, threads, args, *extra):
    """The command line of a child process of this script timing one side."""
    return [
        sys.executable,
        __file__,
        "--child-side",
        side,
        "--cases",
        case,
        "--threads",
        str(threads),
        "--batch",
        str(args.batch),
        # a fresh process has compiled nothing and allocated nothing yet
        "--warmup",
        str(max(args.warmup, 1)),
        *extra,
    ]


def step_times_in_child(case, side, threads, args):
    """``step_times`` in a fresh Python process running this script."""
    command = child_command(case, side, threads, args, "--repeats", str(args.repeats))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{side} child for {case} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def serve_steps(case, side, threads, batch, warmup):
    """A child of ``--pairs``: build the stack, warm up, then run one timed step per
    ``step`` line read from stdin, printing its seconds; stop at end of input."""
    step = side_step(case, side, batch)
    timed_steps(step, threads, 0, max(warmup, 1))
    print("ready", flush=True)
    with limited_threads(threads):
        for line in sys.stdin:
            if line.strip() != "step":
                break
            start = time.perf_counter()
            step()
            print(time.perf_counter() - start, flush=True)


class _StepServer:
    """A child process running :func:`serve_steps`, asked for one step at a time."""

    def __init__(self, case, side, threads, args):
        command = child_command(case, side, threads, args, "--serve")
        self.side = side
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, what):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} step server stopped (see its stderr)")
        if what is not None and line.strip() != what:
            raise RuntimeError(f"{self.side} step server said {line.strip()!r}")
        return line

    def step(self):
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return float(self._expect(None))

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def paired_steps(case, threads, args):
    """(npspeech seconds, PyTorch seconds) of ``args.pairs`` pairs of adjacent steps."""
    servers = [_StepServer(case, side, threads, args) for side in ("npspeech", "torch")]
    pairs = []
    try:
        for i in range(args.pairs):
            times = {}
            for server in servers if i % 2 == 0 else servers[::-1]:
                time.sleep(args.pause)
                times[server.side] = server.step()
            pairs.append((times["npspeech"], times["torch"]))
    finally:
        for server in servers:
            server.close()
    return pairs


def median_ratio_interval(pairs, draws=10_000, seed=0):
    """Median of the per-pair ratios ours / theirs and its percentile-bootstrap 95%
    interval (pairs resampled with replacement)."""
    ratios = np.array([ours / theirs for ours, theirs in pairs])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ratios), size=(draws, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(ratios)), float(low), float(high)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times each side is timed per thread count, alternating the sides",
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps per side and thread count (in-process, the agreement check "
        "before them already compiles every kernel, so 0 is fair for the long cases; a "
        "child process always runs at least one)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="time both sides in this process rather than one child process per side",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="time the sides in turns, one step each, this many times per thread "
        "count (see above); replaces --repeats/--rounds",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.5,
        help="seconds between two steps with --pairs (default 0.5)",
    )
    parser.add_argument(
        "--child-side", choices=("npspeech", "torch"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pairs and args.in_process:
        parser.error("--pairs runs one child process per side; drop --in-process")

    if args.child_side and args.serve:  # a child of --pairs
        (case,), (threads,) = args.cases, args.threads
        serve_steps(case, args.child_side, threads, args.batch, args.warmup)
        return
    if args.child_side:  # a child: time one side, print the step times as JSON
        (case,), (threads,) = args.cases, args.threads
        times = step_times(
            case, args.child_side, threads, args.batch, args.repeats, args.warmup
        )
        print(json.dumps(times))
        return

    rows = []
    for case in args.cases:
        stack = make_stack(case, np.random.default_rng(0), args.batch)
        torch_side = TorchSide(stack)
        with limited_threads(max(args.threads)):
            check_agreement(stack, torch_side, case)
        for threads in args.threads:
            if args.pairs:
                pairs = paired_steps(case, threads, args)
                for ours_now, theirs_now in pairs:
                    print(
                        f"  {case} threads {threads}: npspeech {ours_now:.3f}  "
                        f"torch {theirs_now:.3f}  ratio {ours_now / theirs_now:.3f}",
                        flush=True,
                    )
                ours = statistics.median(p[0] for p in pairs)
                theirs = statistics.median(p[1] for p in pairs)
                middle, low, high = median_ratio_interval(pairs)
                rows.append((case, threads, ours, theirs, (middle, low, high)))
                print(
                    f"{case:<8} threads {threads}: npspeech {ours:7.3f} s  torch "
                    f"{theirs:7.3f} s  ratio of medians {ours / theirs:5.2f}  median "
                    f"ratio {middle:.3f} [{low:.3f}, {high:.3f}]",
                    flush=True,
                )
                continue
            ours, theirs = [], []
            for _ in range(args.rounds):
                if args.in_process:
                    for side, times in ((stack, ours), (torch_side, theirs)):
                        times += timed_steps(
                            side.step, threads, args.repeats, args.warmup
                        )
                else:
                    ours_now = step_times_in_child(case, "npspeech", threads, args)
                    theirs_now = step_times_in_child(case, "torch", threads, args)
                    print(
                        f"  {case} threads {threads}: npspeech "
                        f"{' '.join(f'{t:.3f}' for t in ours_now)}  torch "
                        f"{' '.join(f'{t:.3f}' for t in theirs_now)}",
                        flush=True,
                    )
                    ours += ours_now
                    theirs += theirs_now
            ours, theirs = statistics.median(ours), statistics.median(theirs)
            rows.append((case, threads, ours, theirs, None))
            print(
                f"{case:<8} threads {threads}: npspeech {ours:7.3f} s  "
                f"torch {theirs:7.3f} s  ratio {ours / theirs:5.2f}",
                flush=True,
            )

    if args.pairs:
        where = f"{args.pairs} pairs of adjacent steps, one child process per side"
    elif args.in_process:
        where = "one process"
    else:
        where = "one child process per side"
    print(f"\nmedian step times, {where}")
    print("\n| case | threads | npspeech s | torch s | npspeech / torch |", end="")
    print(" median pair ratio [95%] |" if args.pairs else "")
    print("| --- | --- | --- | --- | --- |" + (" --- |" if args.pairs else ""))
    for case, threads, ours, theirs, paired in rows:
        line = (
            f"| {case} | {threads} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} |"
        )
        if paired:
            line += f" {paired[0]:.3f} [{paired[1]:.3f}, {paired[2]:.3f}] |"
        print(line)


if __name__ == "__main__":
    main()
