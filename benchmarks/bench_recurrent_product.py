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

A second table measures the streaming case as a stack of recurrent layers runs it
(ds2-stream's defaults: 5 GRUs of 1024 units, ``W_hh`` (1024, 3072), 12 MiB each):
``--frames`` one-row steps on each layer's weight in turn, so that every step reads
its weight from the cache level the whole stack fits in (L3 here), and the bytes read
per second next to a plain compiled read (a sum) of the same weights: the bandwidth
one core gets from that level, the bound of a product that reads each weight once.

    python benchmarks/bench_recurrent_product.py
    python benchmarks/bench_recurrent_product.py --repeats 50
    python benchmarks/bench_recurrent_product.py --hidden 1024 --gates 3 --layers 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import torch
from numba import njit
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


@njit(fastmath=True)
def _read(w):  # pragma: no cover - jit
    """The sum of ``w``'s values (reassociated, so that it vectorises): a plain read."""
    total = np.float32(0.0)
    flat = w.reshape(-1)
    for i in range(flat.size):
        total += flat[i]
    return total


def stream_table(hidden: int, gates: int, layers: int, frames: int, repeats: int):
    """(side, bytes per second): median over ``repeats`` passes of ``frames`` one-row
    steps per layer, the layers' weights in turn."""
    rng = np.random.default_rng(1)
    weights = [
        rng.standard_normal((hidden, gates * hidden)).astype(np.float32)
        for _ in range(layers)
    ]
    packed = [packed_matmul.pack_panels(W) for W in weights]
    h = rng.standard_normal((1, hidden)).astype(np.float32)
    h_t, out = packed_matmul.buffers(packed[0], 1)
    th = torch.from_numpy(h)
    tweights = [torch.from_numpy(W) for W in weights]
    exact = h.astype(np.float64) @ weights[-1].astype(np.float64)
    packed_matmul.rows_times(h, h_t, packed[-1], out, 1)
    error = np.abs(out[:, : exact.shape[1]] - exact).max() / np.abs(exact).max()
    assert error < 1e-5, f"streaming product: error {error:.2e}"

    def npspeech():
        for W in packed:
            for _ in range(frames):
                packed_matmul.rows_times(h, h_t, W, out, 1)

    def torch_mm():
        for W in tweights:
            for _ in range(frames):
                torch.mm(th, W)

    def read():
        for W in packed:
            for _ in range(frames):
                _read(W)

    nbytes = sum(W.nbytes for W in packed) * frames
    sides = {"npspeech": npspeech, "torch.mm": torch_mm, "plain read": read}
    medians = {name: [] for name in sides}
    for run in sides.values():
        run()  # compile, warm the caches
    for _ in range(repeats):  # interleaved, so that a loaded machine slows all alike
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            medians[name].append(time.perf_counter() - start)
    return [(name, nbytes / statistics.median(t)) for name, t in medians.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--gates", type=int, default=3, help="3: GRU, 4: LSTM")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--frames", type=int, default=50, help="steps per layer")
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
        mib = args.hidden * args.gates * args.hidden * 4 / 2**20
        print(
            f"\nStreaming: {args.layers} layers of W_hh ({args.hidden}, "
            f"{args.gates * args.hidden}) = {mib:.1f} MiB each, {args.frames} one-row "
            "steps per layer in turn; median of "
            f"{max(3, args.repeats // 4)} interleaved passes\n"
        )
        print("| side | GB/s read |")
        print("| --- | --- |")
        for name, rate in stream_table(
            args.hidden, args.gates, args.layers, args.frames, max(3, args.repeats // 4)
        ):
            print(f"| {name} | {rate / 1e9:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
