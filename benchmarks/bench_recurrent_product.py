"""The recurrent layers' per-step product ``h @ W_hh``: npspeech's packed register tiles
against ``torch.mm`` and NumPy's ``@``, one thread each, in one process.

Shapes (float32): B rows of state times the (H, G*H) recurrent weight, as an LSTM
(G=4) forward step (K=H, N=4H) and backward step (K=4H, N=H) at H=512 and 2048, and
one row (streaming inference). The packing of ``W_hh`` is done once per layer call in
the real loops, so it is not timed here; packing the rows of ``h`` is (it happens every
step). Before timing, the script asserts that every side's product matches a float64
reference to 1e-5 of its largest value. Prints minimum and median microseconds over
``--repeats`` calls, GFLOP/s, and the ratio npspeech / torch (<= 1.0: npspeech as fast
or faster).

    python benchmarks/bench_recurrent_product.py
    python benchmarks/bench_recurrent_product.py --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from npspeech.backends.numba_cpu import packed_matmul

SHAPES = (  # (B, K, N)
    (16, 512, 2048),
    (16, 2048, 512),
    (16, 2048, 8192),
    (16, 8192, 2048),
    (1, 512, 2048),
    (1, 2048, 8192),
)


def times_of(function, repeats: int) -> list[float]:
    function()  # JIT compilation, first touch of the buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _sides(h, W):
    """name -> (run the product, its result as an (B, N) array)."""
    N = W.shape[1]
    W_packed = packed_matmul.pack_panels(W)
    h_t, out = packed_matmul.buffers(W_packed, h.shape[0])
    th, tW = torch.from_numpy(h), torch.from_numpy(W)
    return {
        "npspeech": (
            lambda: packed_matmul.rows_times(h, h_t, W_packed, out, 1),
            lambda: out[:, :N],
        ),
        "torch.mm": (lambda: torch.mm(th, tW), lambda: torch.mm(th, tW).numpy()),
        "numpy @": (lambda: h @ W, lambda: h @ W),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| B, K, N | side | min us | median us | GFLOP/s (min) | npspeech / torch |")
    print("| --- | --- | --- | --- | --- | --- |")
    with threadpool_limits(1):
        for B, K, N in SHAPES:
            h = rng.standard_normal((B, K)).astype(np.float32)
            W = rng.standard_normal((K, N)).astype(np.float32)
            exact = h.astype(np.float64) @ W.astype(np.float64)
            scale = np.abs(exact).max()

            sides = _sides(h, W)
            medians = {}
            for name, (run, result) in sides.items():
                run()
                error = np.abs(result() - exact).max() / scale
                assert error < 1e-5, f"{name} {B, K, N}: error {error:.2e}"
                times = times_of(run, args.repeats)
                medians[name] = statistics.median(times)
                ratio = ""
                if name == "torch.mm":
                    ratio = f"{medians['npspeech'] / medians['torch.mm']:.2f}"
                gflops = 2 * B * K * N / min(times) / 1e9
                print(
                    f"| {B}, {K}, {N} | {name} | {min(times) * 1e6:.0f} | "
                    f"{medians[name] * 1e6:.0f} | {gflops:.0f} | {ratio} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
