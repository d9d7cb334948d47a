"""Time the non-recurrent layers and the optimizer: numba, numpy and PyTorch CPU.

Shapes are DeepSpeech2's front end on a small batch (161-bin spectrogram, two
32-channel convolutions with batch norm), its output layer (log-softmax over 29
classes) and one AdamW step over a 10-million-parameter model. Each case runs forward
+ backward, warms up first (Numba compilation, PyTorch's allocator), checks the result
against PyTorch, and prints the median of ``--repeats`` runs and the ratio to PyTorch.

    python benchmarks/bench_conv_norm_optim.py --repeats 3 --frames 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from npspeech import optim
from npspeech.nn import activations, conv, norm

BACKENDS = ("numba", "numpy")


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up: JIT compilation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, seconds: dict[str, float]) -> None:
    reference = seconds["torch"]
    cells = "  ".join(
        f"{key} {value * 1e3:9.2f} ms ({value / reference:5.2f}x)"
        for key, value in seconds.items()
    )
    print(f"{name:<34} {cells}")


def conv_case(rng, repeats, C_in, C_out, kernel, stride, padding, T, B, F):
    params = conv.init(rng, C_in, C_out, kernel)
    x = rng.standard_normal((T, B, C_in, F)).astype(np.float32)
    lengths = np.full(B, T)
    y, _ = conv.forward(params, x, lengths, stride, padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    tx = torch.from_numpy(x.transpose(1, 2, 0, 3).copy()).requires_grad_(True)
    tW = torch.from_numpy(params["W"]).requires_grad_(True)
    tb = torch.from_numpy(params["b"]).requires_grad_(True)
    tdy = torch.from_numpy(dy.transpose(1, 2, 0, 3).copy())

    def run_torch():
        tx.grad = tW.grad = tb.grad = None
        out = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding)
        out.backward(tdy)
        return out

    seconds = {"torch": median_seconds(run_torch, repeats)}
    expected = run_torch().detach().numpy().transpose(2, 0, 1, 3)
    for backend in BACKENDS:

        def run(backend=backend):
            out, cache = conv.forward(
                params, x, lengths, stride, padding, backend=backend
            )
            return out, conv.backward(params, dy, cache, backend=backend)

        seconds[backend] = median_seconds(run, repeats)
        out, (dx, grads) = run()
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(
            grads["W"], tW.grad.numpy(), rtol=1e-3, atol=1e-3 * np.abs(grads["W"]).max()
        )
    report(f"conv {C_in}->{C_out} k{kernel} s{stride}", seconds)
    return y


def batch_norm_case(rng, repeats, x):
    T, B, C, F = x.shape
    params, state = norm.batch_norm_init(C)
    lengths = np.full(B, T)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = torch.nn.BatchNorm2d(C)
    tx = torch.from_numpy(x.transpose(1, 2, 0, 3).copy()).requires_grad_(True)
    tdy = torch.from_numpy(dy.transpose(1, 2, 0, 3).copy())

    def run_torch():
        tx.grad = None
        out = layer(tx)
        out.backward(tdy)
        return out

    seconds = {"torch": median_seconds(run_torch, repeats)}
    expected = run_torch().detach().numpy().transpose(2, 0, 1, 3)
    for backend in BACKENDS:

        def run(backend=backend):
            out, cache, _ = norm.batch_norm_conv_forward(
                params, state, x, lengths, backend=backend
            )
            return out, norm.batch_norm_conv_backward(
                params, dy, cache, backend=backend
            )

        seconds[backend] = median_seconds(run, repeats)
        out, _ = run()
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)
    report(f"batch norm conv {x.shape}", seconds)


def log_softmax_case(rng, repeats, T, B, V):
    x = rng.standard_normal((T, B, V)).astype(np.float32) * 5
    dy = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    tdy = torch.from_numpy(dy)

    def run_torch():
        tx.grad = None
        out = torch.log_softmax(tx, dim=-1)
        out.backward(tdy)
        return out

    seconds = {"torch": median_seconds(run_torch, repeats)}
    expected = run_torch().detach().numpy()
    for backend in BACKENDS:

        def run(backend=backend):
            out, cache = activations.log_softmax_forward(x, backend=backend)
            return out, activations.log_softmax_backward(dy, cache, backend=backend)

        seconds[backend] = median_seconds(run, repeats)
        np.testing.assert_allclose(run()[0], expected, rtol=1e-4, atol=1e-4)
    report(f"log-softmax {x.shape}", seconds)


def adam_case(rng, repeats, sizes):
    params = {
        f"p{i}": rng.standard_normal(shape).astype(np.float32)
        for i, shape in enumerate(sizes)
    }
    grads = {
        k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()
    }
    tensors = [torch.from_numpy(v.copy()).requires_grad_(True) for v in params.values()]
    for tensor, g in zip(tensors, grads.values()):
        tensor.grad = torch.from_numpy(g)
    # foreach=False: the per-tensor loop, the same structure as ours
    optimizer = torch.optim.AdamW(tensors, lr=1e-3, weight_decay=0.01, foreach=False)
    seconds = {"torch": median_seconds(optimizer.step, repeats)}
    state = optim.adam_init(params)
    for backend in BACKENDS:

        def run(backend=backend):
            return optim.adam_step(
                params, grads, state, 1e-3, weight_decay=0.01, decoupled=True,
                backend=backend,
            )  # fmt: skip

        seconds[backend] = median_seconds(run, repeats)
        new, _ = run()
        reference = torch.optim.AdamW(
            [torch.from_numpy(v.copy()).requires_grad_(True) for v in params.values()],
            lr=1e-3,
            weight_decay=0.01,
        )
        for tensor, g in zip(reference.param_groups[0]["params"], grads.values()):
            tensor.grad = torch.from_numpy(g)
        reference.step()
        for tensor, key in zip(reference.param_groups[0]["params"], params):
            np.testing.assert_allclose(
                new[key], tensor.detach().numpy(), rtol=1e-5, atol=1e-6
            )
    total = sum(int(np.prod(s)) for s in sizes)
    report(f"AdamW step, {total / 1e6:.1f} M params", seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32")
    B, T = args.batch, args.frames
    # DeepSpeech2's front end on a 161-bin spectrogram (kernels as (time, frequency))
    y1 = conv_case(rng, args.repeats, 1, 32, (11, 41), (2, 2), (5, 20), T, B, 161)
    batch_norm_case(rng, args.repeats, y1)
    conv_case(rng, args.repeats, 32, 32, (11, 21), (1, 2), (5, 10), y1.shape[0], B, 81)
    log_softmax_case(rng, args.repeats, T // 2, B, 29)
    adam_case(rng, args.repeats, [(1312, 800), (800, 2400), (800, 2400), (800, 29)] * 2)


if __name__ == "__main__":
    main()
