"""A dense layer's weight gradient ``x.T @ dy``: npspeech's tiled product
(``npspeech.backends.numba_cpu.weight_product``) against NumPy's BLAS, float32.

Both run in this process in turns, one call each, so that a shared host's drifting
speed touches both alike; the script prints the median time of each and the median of
the per-turn ratios npspeech / NumPy (< 1.0: npspeech faster). Each result is first
checked against a float64 product. Shapes are (frames, F_in, F_out): the frames of a
batch of 16 x 300 (4800) by the layer widths of the benchmarked stacks.

    python benchmarks/bench_weight_product.py --threads 1 2
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from npspeech.backends.numba_cpu.weight_product import transposed_product

SHAPES = (
    (4800, 494, 512),  # DeepSpeech's first layer (494 = 26 MFCC x 19 frames of context)
    (4800, 512, 512),
    (7364, 384, 384),  # the recipe model's layers, a batch of 32 utterances
    (4800, 768, 768),
    (4800, 1024, 1024),  # past MAX_RESULT_BYTES: NumPy's own product
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--turns", type=int, default=31)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| frames, F_in, F_out | threads | NumPy ms | npspeech ms | median ratio |")
    print("| --- | --- | --- | --- | --- |")
    for frames, n_in, n_out in SHAPES:
        x = rng.standard_normal((frames, n_in)).astype(np.float32)
        dy = rng.standard_normal((frames, n_out)).astype(np.float32)
        exact = x.astype(np.float64).T @ dy.astype(np.float64)
        for threads in args.threads:
            numba.set_num_threads(threads)
            with threadpool_limits(threads):
                ours = transposed_product(x, dy, threads)
                error = np.abs(ours - exact).max() / np.abs(exact).max()
                assert error < 1e-5, f"relative error {error:.2e}"
                theirs_times, our_times = [], []
                for _ in range(args.turns):
                    start = time.perf_counter()
                    x.T @ dy
                    theirs_times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    transposed_product(x, dy, threads)
                    our_times.append(time.perf_counter() - start)
            theirs, ours = np.array(theirs_times), np.array(our_times)
            print(
                f"| {frames}, {n_in}, {n_out} | {threads} | "
                f"{np.median(theirs) * 1e3:.1f} | {np.median(ours) * 1e3:.1f} | "
                f"{np.median(ours / theirs):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
