"""CTC loss forward + backward: npspeech (Numba) against PyTorch CPU, side by side.

Both sides start from float32 logits (T, B, V) and return the summed loss and its
gradient w.r.t. the logits (PyTorch: log_softmax, ctc_loss, autograd backward).
Timed with 1 and 2 threads on each side; prints medians and the ratio npspeech /
PyTorch (target: <= 0.25). Checks that the two agree before timing.

    python benchmarks/bench_ctc.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import torch

from npspeech.ctc import ctc_loss

CASES = [  # (T, B, V, L)
    (400, 16, 29, 80),
    (1000, 8, 29, 200),
]
TARGET_RATIO = 0.25


def make_batch(rng: np.random.Generator, T: int, B: int, V: int, L: int):
    """Random logits with full-length inputs and targets of length L (flat)."""
    logits = rng.standard_normal((T, B, V)).astype(np.float32)
    input_lengths = np.full(B, T, dtype=np.int32)
    target_lengths = np.full(B, L, dtype=np.int32)
    targets = rng.integers(0, V - 1, size=B * L).astype(np.int32)  # blank = V - 1
    return logits, targets, input_lengths, target_lengths


def npspeech_step(batch, grad_buffer):
    logits, targets, input_lengths, target_lengths = batch
    return ctc_loss(
        logits, targets, input_lengths, target_lengths,
        reduction="sum", backend="numba", out=grad_buffer,
    )  # fmt: skip


def torch_step(batch):
    logits, targets, input_lengths, target_lengths = batch
    x = torch.from_numpy(logits).requires_grad_(True)
    loss = torch.nn.functional.ctc_loss(
        x.log_softmax(-1),
        torch.from_numpy(targets.astype(np.int64)),
        torch.from_numpy(input_lengths.astype(np.int64)),
        torch.from_numpy(target_lengths.astype(np.int64)),
        blank=logits.shape[2] - 1,
        reduction="sum",
    )
    loss.backward()
    return float(loss.detach()), x.grad.numpy()


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'T':>5} {'B':>3} {'V':>3} {'L':>4} {'threads':>7} "
          f"{'npspeech ms':>12} {'torch ms':>9} {'ratio':>6}")  # fmt: skip
    for T, B, V, L in CASES:
        batch = make_batch(rng, T, B, V, L)
        grad_buffer = np.empty_like(batch[0])
        # Correctness first (this also compiles and warms the kernel).
        loss, grad = npspeech_step(batch, grad_buffer)
        torch_loss, _ = torch_step(batch)
        assert np.isclose(float(loss), torch_loss, rtol=1e-4), (loss, torch_loss)
        # The gradient is checked against PyTorch in float64: PyTorch's float32
        # gradient drifts by 1e-3 and more at these sizes, while npspeech's float32
        # result (float64 accumulation inside) stays within ~1e-7 of float64.
        _, exact_grad = torch_step((batch[0].astype(np.float64),) + batch[1:])
        error = np.abs(grad - exact_grad).max()
        assert error < 1e-5, error
        for threads in (1, 2):
            numba.set_num_threads(threads)
            torch.set_num_threads(threads)
            npspeech_step(batch, grad_buffer)  # warm-up at this thread count
            torch_step(batch)
            ours = median_seconds(
                lambda batch=batch, grad_buffer=grad_buffer: npspeech_step(
                    batch, grad_buffer
                ),
                args.repeats,
            )
            theirs = median_seconds(lambda batch=batch: torch_step(batch), args.repeats)
            ratio = ours / theirs
            flag = "" if ratio <= TARGET_RATIO else "  (above target)"
            print(f"{T:>5} {B:>3} {V:>3} {L:>4} {threads:>7} {ours * 1e3:>12.2f} "
                  f"{theirs * 1e3:>9.2f} {ratio:>6.3f}{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
