"""Training-step time of a fresh network against a trained one, on the same batches.

A network's weights do not change how many operations a step takes, but they can change
how long each takes: values below float32's smallest normal number (subnormals), which a
trained LSTM produces, cost ~100 times a normal operation on x86. This script times the
same real batches through ``Trainer.train_step`` from two states in one process: a
freshly initialised one and a run's last checkpoint (weights and Adam moments), taking
turns batch by batch, and prints the ratio. ``--no-flush`` turns the processor's
flush-to-zero switch (``npspeech.fpenv``) off inside the steps, to show what it saves;
the recurrent kernels' own software flush stays on either way.

The checkpoint is copied to a temporary folder first, so the run folder is not touched.

    python benchmarks/bench_trained_state.py --run-dir runs/compare_s3b
    python benchmarks/bench_trained_state.py --run-dir runs/compare_s3b --no-flush
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_trainer(recipe: str, scratch: str, checkpoint: Path | None):
    """A Trainer whose output folder is ``scratch``, resumed from ``checkpoint``."""
    from npspeech import train
    from npspeech.cli import build_parser
    from npspeech.cli import train as cli_train

    if checkpoint is not None:
        shutil.copy(checkpoint, Path(scratch) / train.LAST_CHECKPOINT)
    command = ["train", "--config", recipe, "--no-progress", "--output-dir", scratch]
    settings = cli_train.resolve_settings(build_parser().parse_args(command))
    config, augmentation = cli_train.build_config(settings)
    return train.Trainer(
        config, augmentation=augmentation, resume=checkpoint is not None
    )


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
    args = parser.parse_args(argv)
    os.environ.setdefault("NPSPEECH_DATA", str(DEFAULT_DATA))
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import numba

    numba.set_num_threads(1)
    from npspeech import train

    checkpoint = Path(args.run_dir) / train.LAST_CHECKPOINT
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        trainers = {
            "fresh": make_trainer(args.recipe, a, None),
            "trained": make_trainer(args.recipe, b, checkpoint),
        }
        if trainers["trained"].state.step == 0:
            raise SystemExit(
                f"{checkpoint} holds an untrained state: nothing to compare"
            )
        loader = trainers["fresh"].loader
        picks = list(range(0, len(loader.epoch_batches(1)), args.every))
        batches = [loader.batch(1, index) for index in picks]
        seconds = {name: 0.0 for name in trainers}
        for trainer in trainers.values():
            trainer.flush_subnormals = not args.no_flush
            for index, batch in list(zip(picks, batches))[:2]:  # compile, warm up
                trainer.train_step(batch, 1, index)
        # the two states take turns on each batch, so that drifts of the machine's
        # speed reach both alike
        for index, batch in zip(picks, batches):
            for name, trainer in trainers.items():
                started = time.perf_counter()
                step = trainer.train_step(batch, 1, index)
                seconds[name] += time.perf_counter() - started
                if step["skipped"]:  # a skipped step does no backward pass: no figure
                    raise SystemExit(f"{name}: batch {index} was skipped")
    for name in trainers:
        print(f"{name:8s} {len(picks)} steps: {seconds[name]:.2f} s")
    print(
        f"trained / fresh: {seconds['trained'] / seconds['fresh']:.2f} (flush-to-zero "
        f"{'off' if args.no_flush else 'on'}; checkpoint {checkpoint})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
