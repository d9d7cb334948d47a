"""Training-step time of a fresh network against a trained one, on the same batches.

A network's weights do not change how many operations a step takes, but they can change
how long each takes: values below float32's smallest normal number (subnormals), which a
trained LSTM produces, cost ~100 times a normal operation on x86. This script times the
same real batches through ``Trainer.train_step`` twice: once from a freshly initialised
state, once from a run's last checkpoint (weights and Adam moments), each in its own
process so that neither warms the other, and prints the ratio. ``--no-flush`` turns the
processor's flush-to-zero switch (``npspeech.fpenv``) off inside the steps, to show what
it saves; the recurrent kernels' own software flush stays on either way.

The checkpoint is copied to a temporary folder first, so the run folder is not touched.

    python benchmarks/bench_trained_state.py --run-dir runs/compare_s3b
    python benchmarks/bench_trained_state.py --run-dir runs/compare_s3b --no-flush
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def time_steps(recipe: str, run_dir: str | None, every: int, flush: bool) -> dict:
    """Seconds of the steps over every ``every``-th batch of epoch 1 (one thread)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import numba

    numba.set_num_threads(1)
    from npspeech import train
    from npspeech.cli import build_parser
    from npspeech.cli import train as cli_train

    with tempfile.TemporaryDirectory(prefix="npspeech-trained-") as scratch:
        if run_dir is not None:
            shutil.copy(Path(run_dir) / train.LAST_CHECKPOINT, scratch)
        command = [
            "train",
            "--config",
            recipe,
            "--no-progress",
            "--output-dir",
            scratch,
        ]
        settings = cli_train.resolve_settings(build_parser().parse_args(command))
        config, augmentation = cli_train.build_config(settings)
        trainer = train.Trainer(
            config, augmentation=augmentation, resume=run_dir is not None
        )
        plan = trainer.loader.epoch_batches(1)
        picks = list(range(0, len(plan), every))
        batches = [trainer.loader.batch(1, index) for index in picks]
        trainer.flush_subnormals = flush
        for index, batch in list(zip(picks, batches))[:2]:  # compile, warm up
            trainer.train_step(batch, 1, index)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for index, batch in zip(picks, batches):
            trainer.train_step(batch, 1, index)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "steps": len(picks),
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/kathleen_fsdd_small.toml")
    parser.add_argument(
        "--run-dir", required=True, help="a run folder with checkpoint_last.npz"
    )
    parser.add_argument(
        "--every", type=int, default=4, help="time every N-th batch of epoch 1"
    )
    parser.add_argument(
        "--no-flush", action="store_true", help="flush-to-zero off inside the steps"
    )
    parser.add_argument("--child", choices=["fresh", "trained"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("NPSPEECH_DATA", str(DEFAULT_DATA))
    flush = not args.no_flush
    if args.child:
        run_dir = args.run_dir if args.child == "trained" else None
        print(json.dumps(time_steps(args.recipe, run_dir, args.every, flush)))
        return 0
    results = {}
    for state in ("fresh", "trained"):
        command = [
            sys.executable,
            __file__,
            "--child",
            state,
            "--run-dir",
            args.run_dir,
        ]
        command += ["--recipe", args.recipe, "--every", str(args.every)]
        command += ["--no-flush"] if args.no_flush else []
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        results[state] = json.loads(output.stdout.strip().splitlines()[-1])
        r = results[state]
        print(
            f"{state:8s} {r['steps']} steps: {r['seconds']:.2f} s wall, "
            f"{r['cpu']:.2f} s CPU",
            flush=True,
        )
    ratio = results["trained"]["seconds"] / results["fresh"]["seconds"]
    print(
        f"trained / fresh: {ratio:.2f} (flush-to-zero {'on' if flush else 'off'}; "
        f"checkpoint {args.run_dir})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
