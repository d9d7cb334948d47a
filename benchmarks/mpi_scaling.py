"""Data-parallel scaling on paper: expected efficiency at 2 to 64 ranks.

    python benchmarks/mpi_scaling.py --measure --threads 2 --allreduce

For each preset (DeepSpeech at width 2048, DS2 as shipped) it takes

- the gradient size: the parameters of ``models.init`` of the preset, float32, plus
  the three scalars and the batch-norm statistics npspeech exchanges with them (one
  fused buffer per step, see ``npspeech.distributed.mpi``);
- the single-process step time: forward, CTC, backward and Adam on a random batch,
  measured here (``--measure``) with the numba backend, or given (``--step NAME=S``);
- a GPU step time from the step's multiply-adds at an assumed sustained float32
  throughput (``--gpu-tflops``; no GPU was available to measure one);

and prints the ring-allreduce cost ``2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x
latency`` and the efficiency ``compute / (compute + exposed allreduce)`` for NVLink
and 100 / 400 Gbit/s links, with and without overlapping the exchange with the
backward pass. ``--allreduce`` also times npspeech's own fused exchange of each
preset's gradient between 2 ranks on this machine (``mpiexec -n 2``) to check the
cost model against a real MPI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PRESETS = ("deepspeech", "ds2")
RANKS = (2, 4, 8, 16, 32, 64)
# Links: (name, bytes/s each rank can send while receiving as much, latency per
# message, most ranks it serves). Bandwidths are what NCCL/MPI reach, below the
# signalling rate: NVLink 4 on an 8-GPU H100/H200 board ~360 GB/s of bus bandwidth
# in NCCL's all_reduce test; a 100 / 400 Gbit/s NIC per rank at 90%.
LINKS = (
    ("NVLink (one 8-GPU node)", 360e9, 5e-6, 8),
    ("400 Gbit/s per rank", 400e9 / 8 * 0.9, 10e-6, None),
    ("100 Gbit/s per rank", 100e9 / 8 * 0.9, 15e-6, None),
)
# The batch each rank trains on: bench_layers' shapes (6 s of speech per utterance).
SHAPES = {"deepspeech": (16, 300), "ds2": (16, 600)}  # (B, T input frames)
# Share of the backward pass that runs after the first gradient bucket is complete,
# i.e. the time a bucketed exchange could hide behind (see the notes in RESULTS.md):
# DeepSpeech's LSTM gradients (71% of its weights) come after its BPTT loop, then
# only the three dense layers' backward (~30% of it) remains; DS2's layers finish one
# by one from the top, so all but the top layer's backward can hide an exchange.
OVERLAPPABLE = {"deepspeech": 0.30, "ds2": 0.80}
BACKWARD_SHARE = 0.62  # backward / (forward + backward) in bench_layers' profiles


def preset_network(name: str):
    """``(Network, FeatureConfig)`` of a shipped preset."""
    from npspeech import models
    from npspeech.cli import train as cli_train
    from npspeech.config import FeatureConfig, ModelConfig, from_dict, read_toml
    from npspeech.features import n_features

    table = read_toml(cli_train.PRESETS_DIR / f"{name}.toml")
    model = from_dict(ModelConfig, table["model"], where=name)
    features = from_dict(FeatureConfig, table["features"], where=name)
    rng = np.random.default_rng(0)
    return models.init(model, n_features(features), 29, rng), features


def exchanged_bytes(network) -> int:
    """Bytes of the fused buffer of one step: gradients, batch-norm statistics and 3
    scalars, float32."""
    values = sum(v.size for v in network.params.values())
    values += sum(v.size for v in network.state.values()) + 3
    return 4 * values


def step_flops(network, B: int, T: int) -> float:
    """Floating-point operations of one training step (forward 2, backward 4 per
    multiply-add): every weight matrix of the dense and recurrent layers is applied
    once per output frame, each convolution kernel once per output position."""
    config = network.config
    frames, bins = T, network.n_input  # (T, F) input, F spectrogram bins for DS2
    macs = 0.0
    for index, stride in enumerate(config.conv_strides):
        W = network.params.get(f"conv_{index + 1}/W")  # (C_out, C_in, k_t, k_f)
        if W is None:  # an architecture without convolutions
            break
        frames, bins = -(-frames // stride[0]), -(-bins // stride[1])
        macs += frames * bins * W.size  # one kernel application per output position
    for value in network.params.values():
        if value.ndim == 2:  # dense and recurrent weights, (F_in, F_out)
            macs += frames * value.size
    return 6.0 * B * macs


def measure_step(name: str, threads: int, repeats: int) -> float:
    """Median seconds of forward + CTC + backward + Adam on a random batch."""
    import numba
    from threadpoolctl import threadpool_limits

    from npspeech import ctc, models, optim
    from npspeech.backends import get_backend

    numba.set_num_threads(threads)
    network, _ = preset_network(name)
    B, T = SHAPES[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, network.n_input)).astype(np.float32)
    lengths = np.full(B, T, dtype=np.int32)
    targets = rng.integers(0, 28, size=B * 40).astype(np.int32)
    target_lengths = np.full(B, 40, dtype=np.int32)
    backend = get_backend("numba")
    state = optim.adam_init(network.params)
    times = []
    with threadpool_limits(threads):
        for _ in range(repeats + 1):  # the first compiles and warms the caches
            started = time.perf_counter()
            logits, out_lengths, cache = models.forward(
                network, x, lengths, training=True, rng=rng, backend=backend
            )
            _, dlogits = ctc.ctc_loss(
                logits,
                targets,
                out_lengths,
                target_lengths,
                blank=network.n_classes - 1,
                reduction="none",
                backend=backend,
            )
            grads = models.backward(network, dlogits / B, cache, backend=backend)
            network.params, state = optim.adam_step(
                network.params, grads, state, 1e-4, backend=backend
            )
            times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def allreduce_child(n_bytes: int, repeats: int) -> None:
    """Run under mpiexec: time MPICollective.allreduce_sum of ``n_bytes``."""
    from npspeech.distributed.mpi import MPICollective

    collective = MPICollective.from_world()
    buffer = np.ones(n_bytes // 4, dtype=np.float32)
    collective.allreduce_sum([buffer])  # first touch of the fused buffer
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        collective.allreduce_sum([buffer])
        times.append(time.perf_counter() - started)
    if collective.is_root:
        print(f"{np.median(times):.6f}")


def measured_allreduce(n_bytes: int, repeats: int = 5) -> float:
    mpiexec = Path(sys.executable).with_name("mpiexec")
    command = [str(mpiexec), "-n", "2", sys.executable, __file__]
    command += ["--allreduce-child", str(n_bytes), "--repeats", str(repeats)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def ring_seconds(n_bytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """Ring allreduce: reduce-scatter then allgather, 2 (N - 1) steps of S / N."""
    return 2 * (ranks - 1) / ranks * n_bytes / bandwidth + 2 * (ranks - 1) * latency


def efficiency(compute: float, exchange: float, hidden: float = 0.0) -> float:
    """Weak scaling (a fixed batch per rank): the step's share spent computing."""
    return compute / (compute + max(exchange - hidden, 0.0))


def table(name, n_bytes, compute, label) -> list[str]:
    lines = [
        f"{name}, {label}: compute {compute:.3g} s per step; efficiency at N ranks, "
        "exchange after backward / overlapped with backward",
        "| link | " + " | ".join(f"N={n}" for n in RANKS) + " |",
        "|---|" + "---|" * len(RANKS),
    ]
    hidden = compute * BACKWARD_SHARE * OVERLAPPABLE[name]
    for link, bandwidth, latency, most in LINKS:
        cells = []
        for n in RANKS:
            if most is not None and n > most:
                cells.append("n/a")
                continue
            seconds = ring_seconds(n_bytes, n, bandwidth, latency)
            cells.append(
                f"{efficiency(compute, seconds):.2f} / "
                f"{efficiency(compute, seconds, hidden):.2f}"
            )
        lines.append(f"| {link} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="time the steps here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--step",
        action="append",
        default=[],
        metavar="PRESET=SECONDS",
        help="a measured CPU step time instead of --measure",
    )
    parser.add_argument("--gpu-tflops", type=float, default=15.0)
    parser.add_argument("--allreduce", action="store_true")
    parser.add_argument("--allreduce-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allreduce_child:
        allreduce_child(args.allreduce_child, args.repeats)
        return 0
    given = dict(item.split("=") for item in args.step)
    for name in PRESETS:
        network, _ = preset_network(name)
        n_bytes = exchanged_bytes(network)
        B, T = SHAPES[name]
        flops = step_flops(network, B, T)
        print(
            f"\n## {name}: {n_bytes / 1e6:.1f} MB exchanged per step "
            f"({network.n_parameters():,} parameters); B={B}, T={T} input frames: "
            f"{flops / 1e12:.2f} TFLOP per step"
        )
        if name in given:
            cpu = float(given[name])
        elif args.measure:
            cpu = measure_step(name, args.threads, args.repeats)
        else:
            cpu = None
        for link, bandwidth, latency, most in LINKS:
            costs = [
                "n/a"
                if most is not None and n > most
                else f"{ring_seconds(n_bytes, n, bandwidth, latency) * 1e3:.1f}"
                for n in RANKS
            ]
            print(f"allreduce ms over {link}: " + ", ".join(costs))
        if args.allreduce:
            seconds = measured_allreduce(n_bytes)
            print(
                f"measured here, 2 ranks on one host (shared memory, MPI): "
                f"{seconds * 1e3:.1f} ms = {n_bytes / seconds / 1e9:.2f} GB/s "
                "of algorithm bandwidth"
            )
        if cpu is not None:
            print(
                "\n".join(
                    table(name, n_bytes, cpu, f"CPU step here ({args.threads} threads)")
                )
            )
        gpu = flops / (args.gpu_tflops * 1e12)
        print(
            "\n".join(
                table(
                    name,
                    n_bytes,
                    gpu,
                    f"GPU step at an assumed {args.gpu_tflops:g} TFLOP/s",
                )
            )
        )
        for link, bandwidth, latency, most in LINKS:
            n = most or RANKS[-1]
            needed = 9 * ring_seconds(n_bytes, n, bandwidth, latency)
            print(
                f"90% at N={n} over {link} needs >= {needed:.3g} s of compute per step"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
