"""npspeech against PyTorch: the same recipe trained side by side, WER and wall time.

Both sides start from the same initial weights (npspeech's, copied into the PyTorch
twin of ``benchmarks/peers/train_torch.py`` for ``deepspeech`` recipes, of
``benchmarks/peers/train_torch_ds2.py`` for ``ds2`` and ``ds2-stream`` ones), train
on the very same batches (one ``BatchLoader``, same seed, same per-epoch plans) with
the same loss, optimiser, gradient clipping, learning-rate schedule, early stopping and
best-epoch selection, and are scored by the same greedy decoder on each test CSV.
npspeech runs through its own ``npspeech.train.Trainer`` (checkpoints and log
included, as a user would run it).
Dropout masks differ (each framework draws its own), so the runs diverge after the
first step when dropout is on: WERs should agree within noise, not exactly.

Before timing, the script warms up both sides (Numba compilation, PyTorch's first
calls), computes every feature once into the shared in-memory cache, and checks that
the twin's logits and first-step loss equal npspeech's on the first training batch.

Usage::

    python benchmarks/train_compare.py --recipe recipes/kathleen_fsdd_small.toml
    python benchmarks/train_compare.py --recipe recipes/kathleen_fsdd_ds2.toml
    python benchmarks/train_compare.py --recipe recipes/kathleen_fsdd_ds2_stream.toml
    python benchmarks/train_compare.py --quick   # a subset and 2 epochs: a smoke run
    python benchmarks/train_compare.py --sizing 6   # time 6 real batches,
                                                    # project an epoch
    python benchmarks/train_compare.py --recipe recipes/kathleen_fsdd_ds2.toml \
        --npspeech-run runs/kathleen_fsdd_ds2      # the twin only, against a run
                                                   # `npspeech train` already made

With ``--npspeech-run``, only the twin trains: npspeech's side is the finished run in
that folder (its log and best model), which must have been trained with the recipe's
settings (the script compares the folder's ``config.json`` with them), so it started
from the same weights and saw the same batches. Its wall time is not measured again.

Data come from the recipe's ``${NPSPEECH_DATA}`` paths (default ``../shared/data``
beside the repository).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = REPO / "recipes" / "kathleen_fsdd_small.toml"
DEFAULT_DATA = REPO.parent / "shared" / "data"
TEST_CSVS = ("kathleen_arctic/test.csv", "fsdd/test.csv")  # under $NPSPEECH_DATA
# --quick: rows kept from each CSV (spread evenly over the file) and epochs
QUICK_ROWS = {"train": 48, "dev": 12, "test": 12}
QUICK_EPOCHS = 2
# The first-batch check: float32 logits of two implementations of one network.
LOGITS_ATOL = 1e-3
LOSS_RTOL = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipe",
        default=str(DEFAULT_RECIPE),
        help="training recipe TOML (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS['train']} train / {QUICK_ROWS['dev']} dev / "
        f"{QUICK_ROWS['test']} test rows per CSV and "
        f"{QUICK_EPOCHS} epochs (default: the whole recipe)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="override the recipe's epochs (default: the recipe's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for each side: Numba, PyTorch and BLAS (default: %(default)s)",
    )
    parser.add_argument(
        "--test-csv",
        nargs="+",
        help="test CSVs (default: $NPSPEECH_DATA/"
        + " and $NPSPEECH_DATA/".join(TEST_CSVS)
        + ")",
    )
    parser.add_argument(
        "--torch-first",
        action="store_true",
        help="train the PyTorch twin first (default: npspeech first), "
        "to see whether the order shifts the timing on a busy "
        "machine",
    )
    parser.add_argument(
        "--torch-flush-denormal",
        action="store_true",
        help="run the PyTorch twin with torch.set_flush_denormal(True) (PyTorch's "
        "default is off; npspeech flushes subnormal floats to zero while training)",
    )
    parser.add_argument(
        "--sizing",
        type=int,
        metavar="BATCHES",
        help="only time this many real batches of epoch 1 on each side "
        "and project the time of a full epoch's steps (default: "
        "train and compare)",
    )
    parser.add_argument(
        "--output-dir", help="npspeech's run folder (default: a temporary folder)"
    )
    parser.add_argument(
        "--npspeech-run",
        metavar="DIR",
        help="a finished `npspeech train` run of the same recipe and settings: train "
        "only the twin and compare with that run's log and best model",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="recipe override, as `npspeech train --set` (repeatable)",
    )
    return parser.parse_args(argv)


def set_threads(count: int) -> object:
    """The same thread count for Numba, PyTorch and BLAS; returns the BLAS limiter."""
    import numba
    import torch

    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # BLAS then keeps its own default
        return None
    return threadpool_limits(limits=count)


def subset_csv(source: str, rows: int, folder: Path) -> str:
    """``rows`` rows spread evenly over ``source``, as a CSV with absolute paths."""
    source_path = Path(source)
    with source_path.open(newline="", encoding="utf-8") as handle:
        reader = list(csv.reader(handle))
    header, body = reader[0], reader[1:]
    picks = np.linspace(0, len(body) - 1, min(rows, len(body))).round().astype(int)
    column = header.index("wav_filename")
    target = folder / f"{source_path.parent.name}_{source_path.stem}.csv"
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index in picks:
            row = list(body[index])
            row[column] = str((source_path.parent / row[column]).resolve())
            writer.writerow(row)
    return str(target)


def load_config(args: argparse.Namespace, output_dir: Path, scratch: Path):
    """The recipe's TrainConfig (with --quick's subsets) and the test CSVs."""
    from npspeech.cli import build_parser
    from npspeech.cli import train as cli_train

    command = [
        "train",
        "--config",
        args.recipe,
        "--no-progress",
        "--output-dir",
        str(output_dir),
    ]
    for override in args.overrides:
        command += ["--set", override]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    settings = cli_train.resolve_settings(build_parser().parse_args(command))
    config, augmentation = cli_train.build_config(settings)
    data = Path(os.environ["NPSPEECH_DATA"])
    tests = list(args.test_csv or [str(data / name) for name in TEST_CSVS])
    if args.quick:
        config = dataclasses.replace(
            config,
            train_csv=tuple(
                subset_csv(p, QUICK_ROWS["train"], scratch / "train")
                for p in config.train_csv
            ),
            dev_csv=tuple(
                subset_csv(p, QUICK_ROWS["dev"], scratch / "dev")
                for p in config.dev_csv
            ),
            epochs=args.epochs or QUICK_EPOCHS,
        )
        tests = [subset_csv(p, QUICK_ROWS["test"], scratch / "test") for p in tests]
    config = dataclasses.replace(config, checkpoint_minutes=1e6)  # epoch ends only
    return config, augmentation, tests


def check_first_batch(trainer, twin, loader) -> dict[str, float]:
    """The twin's logits and loss equal npspeech's on the first batch (no dropout,
    batch norm from the running statistics: the evaluation-mode forward pass)."""
    import torch

    from npspeech import ctc, models

    network = trainer.state.network.copy()
    network.config = dataclasses.replace(network.config, dropout=0.0)
    batch = loader.batch(0, 0)
    ours, lengths, _ = models.forward(
        network, batch.features, batch.lengths, backend=trainer.backend
    )
    model = twin.build(network)
    model.eval()
    with torch.no_grad():
        theirs, their_lengths = model.forward_batch(batch.features, batch.lengths)
        theirs = theirs.numpy()
    assert np.array_equal(their_lengths, lengths), (their_lengths, lengths)
    valid = models.frame_mask(lengths, ours.shape[0], bool)[:, :, 0]
    difference = float(np.abs(theirs[valid] - ours[valid]).max())
    assert difference < LOGITS_ATOL, f"twin logits differ by {difference}"
    loss_ours = float(
        ctc.ctc_loss(
            ours, batch.targets, lengths, batch.target_lengths, reduction="mean"
        )[0]
    )
    loss_theirs = float(
        torch.nn.functional.ctc_loss(
            torch.from_numpy(theirs).log_softmax(-1),
            torch.from_numpy(batch.targets.astype(np.int64)),
            torch.from_numpy(lengths.astype(np.int64)),
            torch.from_numpy(batch.target_lengths.astype(np.int64)),
            blank=theirs.shape[-1] - 1,
            reduction="sum",
        )
        / len(batch.utterances)
    )
    assert abs(loss_ours - loss_theirs) <= LOSS_RTOL * loss_ours, (
        loss_ours,
        loss_theirs,
    )
    return {
        "logits_max_abs_diff": difference,
        "loss_npspeech": loss_ours,
        "loss_torch": loss_theirs,
    }


def warm_up(trainer, twin, loader) -> None:
    """Compile and touch every code path once, on throwaway copies of the weights."""
    from npspeech import ctc, models, optim

    batch = loader.batch(0, 0)
    network = trainer.state.network.copy()
    rng = np.random.default_rng(0)
    logits, lengths, cache = models.forward(
        network,
        batch.features,
        batch.lengths,
        training=True,
        rng=rng,
        backend=trainer.backend,
    )
    _, dlogits = ctc.ctc_loss(
        logits,
        batch.targets,
        lengths,
        batch.target_lengths,
        reduction="mean",
        backend=trainer.backend,
    )
    grads = models.backward(network, dlogits, cache, backend=trainer.backend)
    grads, _ = optim.clip_grad_norm(grads, 400.0)
    optim.adam_step(
        network.params,
        grads,
        optim.adam_init(network.params),
        1e-3,
        backend=trainer.backend,
    )
    scratch = twin.TorchTrainer(trainer.state.network, trainer.config, seed=0)
    scratch.train_step(batch)


@contextlib.contextmanager
def timed_bookkeeping(trainer, seconds: dict[str, float]):
    """Add up the time npspeech's run spends writing files rather than training.

    ``Trainer.run`` writes checkpoints and the model file each epoch and draws the
    curves at the end; the twin does none of that, so the comparable figure is the
    run's wall time less these. The functions still run; they are only timed.
    """
    from npspeech import checkpoint, train

    def timer(function, key):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - started

        return wrapper

    saved = (checkpoint.save, train.plot_run)
    checkpoint.save = timer(checkpoint.save, "checkpoints")
    train.plot_run = timer(train.plot_run, "plot")
    trainer._export_model = timer(trainer._export_model, "model file")
    try:
        yield seconds
    finally:
        checkpoint.save, train.plot_run = saved
        del trainer._export_model  # back to the class's method


def npspeech_step_seconds(steps, loader, step_ms: float) -> list[float]:
    """Seconds of each npspeech training step, from its log's throughput figures.

    The log gives audio seconds per wall second for each step; the audio of a step is
    its batch's frames (the loader's plan) times the frame step.
    """
    seconds = []
    for entry in steps:
        members = loader.epoch_batches(entry["epoch"])[entry["batch"]]
        audio = float(loader.frames[members].sum()) * step_ms / 1000.0
        seconds.append(audio / entry["audio_seconds_per_second"])
    return seconds


def evaluate_tests(network, model, tests, trainer, twin) -> list[dict[str, object]]:
    """Greedy WER/CER of both best models on each test CSV."""
    from npspeech import data
    from npspeech.inference import evaluate

    rows = []
    for path in tests:
        utterances, durations = data.validate_corpus(
            data.read_csvs([path]), trainer.alphabet, trainer.features, progress=False
        )
        ours = evaluate(
            network,
            utterances,
            trainer.alphabet,
            trainer.features,
            cache=trainer.cache,
            frames_budget=trainer.config.batch_frames,
            backend=trainer.backend,
            durations=durations,
        )
        theirs = twin.evaluate(
            model,
            utterances,
            trainer.alphabet,
            trainer.features,
            cache=trainer.cache,
            frames_budget=trainer.config.batch_frames,
            durations=durations,
        )
        rows.append(
            {"csv": path, "n": len(utterances), "npspeech": ours, "torch": theirs}
        )
    return rows


def project_epoch(trainer, twin, count: int) -> None:
    """Time ``count`` batches spread over epoch 1 on each side; project an epoch.

    The npspeech trainer's weights are updated by these steps: call it instead of a run.
    """
    loader = trainer.loader
    plan = loader.epoch_batches(1)
    padded = [int(loader.frames[members].max()) * len(members) for members in plan]
    picks = np.linspace(0, len(plan) - 1, min(count, len(plan))).round().astype(int)
    torch_trainer = twin.TorchTrainer(trainer.state.network, trainer.config, seed=0)
    ours = theirs = frames = 0.0
    for index in picks.tolist():
        batch = loader.batch(1, index)
        started = time.perf_counter()
        trainer.train_step(batch, 1, index)
        middle = time.perf_counter()
        torch_trainer.train_step(batch)
        ended = time.perf_counter()
        T, B, _ = batch.features.shape
        print(
            f"batch {index:4d}: {T:4d} frames x {B:2d}  npspeech "
            f"{middle - started:6.3f} s  torch {ended - middle:6.3f} s"
        )
        ours, theirs = ours + middle - started, theirs + ended - middle
        frames += T * B
    total = sum(padded)
    print(
        f"per padded frame: npspeech {ours / frames * 1e3:.3f} ms, torch "
        f"{theirs / frames * 1e3:.3f} ms; an epoch ({len(plan)} batches, {total:,} "
        f"padded frames) of steps: npspeech {ours / frames * total:.0f} s, torch "
        f"{theirs / frames * total:.0f} s (ratio {ours / theirs:.2f})"
    )


@dataclasses.dataclass
class Side:
    """One side's run: per-epoch records and timings."""

    name: str
    epochs: list[dict]  # epoch, train_loss, lr and, with a dev set, dev_loss/wer/cer
    seconds: float  # training and dev evaluation, files excluded
    step_seconds: list[float]  # each training step alone
    stopped: str
    detail: str  # how the run ended, what else it did


def run_npspeech(trainer) -> Side:
    """npspeech's ``Trainer.run`` as a user runs it (checkpoints, log, plot)."""
    from npspeech import train

    files: dict[str, float] = {}
    started = time.perf_counter()
    with warnings.catch_warnings(), timed_bookkeeping(trainer, files):
        warnings.simplefilter("ignore", UserWarning)  # matplotlib font notices
        result = trainer.run()
    run_seconds = time.perf_counter() - started
    log = train.read_log(trainer.output_dir)
    epochs = [entry for entry in log if entry["event"] == "epoch"]
    steps = [entry for entry in log if entry["event"] == "step"]
    detail = (
        f"{result.epochs} epochs, {result.steps} steps, "
        f"{result.skipped_batches} skipped; whole run {run_seconds:.1f} s, of "
        "which writing files "
        + ", ".join(f"{key} {value:.1f} s" for key, value in files.items())
    )
    return Side(
        "npspeech",
        epochs,
        run_seconds - sum(files.values()),
        npspeech_step_seconds(steps, trainer.loader, trainer.features.step_ms),
        result.stopped,
        detail,
    )


def finished_npspeech(trainer, config) -> Side:
    """npspeech's side from a finished run in ``config.output_dir``: its epochs from
    the log. Refuses a run whose settings differ from ``config`` (other weights or
    batches), or one that has not finished."""
    import json

    from npspeech import checkpoint, train
    from npspeech.config import to_dict

    folder = Path(config.output_dir)
    try:
        recorded = json.loads((folder / train.CONFIG_FILE).read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(
            f"--npspeech-run {folder}: no readable run ({error})"
        ) from None
    ignored = {"output_dir", "progress", "checkpoint_minutes"}
    wanted = json.loads(json.dumps(to_dict(config)))  # tuples as the file has lists
    differ = sorted(
        key
        for key in set(recorded) | set(wanted)
        if key not in ignored and recorded.get(key) != wanted.get(key)
    )
    if differ:
        raise SystemExit(
            f"--npspeech-run {folder}: trained with other settings: "
            + ", ".join(differ)
        )
    log = train.read_log(folder)
    epochs = [entry for entry in log if entry["event"] == "epoch"]
    state = checkpoint.load(folder / train.LAST_CHECKPOINT)
    if not state.record.get("stopped") or not (folder / train.MODEL_FILE).is_file():
        raise SystemExit(f"--npspeech-run {folder}: the run has not finished")
    steps = [entry for entry in log if entry["event"] == "step"]
    return Side(
        "npspeech",
        epochs,
        float("nan"),
        npspeech_step_seconds(steps, trainer.loader, trainer.features.step_ms),
        state.record["stopped"],
        f"read from {folder}: {len(epochs)} epochs",
    )


def run_torch(twin, initial, trainer, flush_denormal=False) -> tuple[Side, object]:
    """The PyTorch twin on the same loader; returns the side and its best model.

    ``flush_denormal``: train with ``torch.set_flush_denormal(True)`` (then back off).
    """
    import torch

    torch_trainer = twin.TorchTrainer(initial, trainer.config, seed=trainer.config.seed)
    if flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("torch.set_flush_denormal is not supported on this CPU")
    started = time.perf_counter()
    try:
        history = torch_trainer.fit(
            trainer.loader,
            trainer.dev_set,
            trainer.alphabet,
            trainer.features,
            cache=trainer.cache,
            dev_durations=trainer.dev_durations,
        )
    finally:
        torch.set_flush_denormal(False)
    seconds = time.perf_counter() - started
    detail = (
        f"{len(history)} epochs, {torch_trainer.steps} steps, "
        f"{torch_trainer.skipped} skipped; best epoch {torch_trainer.best_epoch}"
    )
    side = Side("torch", history, seconds, torch_trainer.step_seconds, "", detail)
    return side, torch_trainer.best_model()


def print_side(side: Side) -> None:
    print(f"\n== {side.name} ==")
    for entry in side.epochs:
        print(
            f"epoch {entry['epoch']}: train loss {entry['train_loss']:.3f}  "
            f"dev loss {entry.get('dev_loss', float('nan')):.3f}  "
            f"dev WER {entry.get('dev_wer', float('nan')):.3f}  "
            f"CER {entry.get('dev_cer', float('nan')):.3f}  lr {entry['lr']:.2e}"
        )
    if math.isnan(side.seconds):  # a finished run read back (--npspeech-run)
        print(side.detail)
    else:
        print(f"{side.detail}; training + dev evaluation {side.seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NPSPEECH_DATA", str(DEFAULT_DATA))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peers import train_torch as twin

    limiter = set_threads(args.threads)  # noqa: F841 - the limits hold while it lives
    from npspeech import modelfile, train

    with tempfile.TemporaryDirectory(prefix="npspeech-compare-") as scratch_name:
        scratch = Path(scratch_name)
        for part in QUICK_ROWS:
            (scratch / part).mkdir()
        output_dir = Path(args.output_dir) if args.output_dir else scratch / "run"
        if args.npspeech_run:
            output_dir = Path(args.npspeech_run)
        config, augmentation, tests = load_config(args, output_dir, scratch)
        if augmentation is not None:
            print("note: augmentation is on; both sides get the same augmented batches")
        trainer = train.Trainer(config, augmentation=augmentation)
        print(
            f"recipe {args.recipe}{' (--quick)' if args.quick else ''}: "
            f"{len(trainer.train_set)} train / {len(trainer.dev_set)} dev rows, "
            f"{trainer.train_seconds / 60:.1f} min of training audio, "
            f"{len(trainer.loader)} batches per epoch, up to {config.epochs} epochs, "
            f"n_hidden {config.model.n_hidden}, "
            f"{trainer.state.network.n_parameters():,} parameters, "
            f"{args.threads} thread(s) per side"
        )
        if args.sizing:
            warm_up(trainer, twin, trainer.loader)
            project_epoch(trainer, twin, args.sizing)
            return 0
        started = time.perf_counter()
        for utterance in [*trainer.train_set, *trainer.dev_set]:
            trainer.cache.get(utterance)  # both sides read these cached features
        print(f"features cached in {time.perf_counter() - started:.1f} s (not timed)")
        initial = trainer.state.network.copy()
        warm_up(trainer, twin, trainer.loader)
        check = check_first_batch(trainer, twin, trainer.loader)
        print(
            f"first batch, no dropout: logits differ by at most "
            f"{check['logits_max_abs_diff']:.2e}; CTC loss npspeech "
            f"{check['loss_npspeech']:.4f}, torch {check['loss_torch']:.4f}"
        )

        if args.npspeech_run:
            ours = finished_npspeech(trainer, config)
            theirs, torch_model = run_torch(
                twin, initial, trainer, args.torch_flush_denormal
            )
        elif args.torch_first:
            theirs, torch_model = run_torch(
                twin, initial, trainer, args.torch_flush_denormal
            )
            ours = run_npspeech(trainer)
        else:
            ours = run_npspeech(trainer)
            theirs, torch_model = run_torch(
                twin, initial, trainer, args.torch_flush_denormal
            )
        print_side(ours)
        print_side(theirs)
        best = modelfile.load(trainer.output_dir / train.MODEL_FILE).network
        rows = evaluate_tests(best, torch_model, tests, trainer, twin)

    print("\n== best epoch on dev, greedy decoding ==")
    print(
        f"{'test CSV':32s} {'n':>4s} {'npspeech WER':>13s} {'CER':>6s} "
        f"{'torch WER':>10s} {'CER':>6s}"
    )
    for row in rows:
        name = "/".join(Path(row["csv"]).parts[-2:])
        print(
            f"{name:32s} {row['n']:4d} {row['npspeech'].wer:13.3f} "
            f"{row['npspeech'].cer:6.3f} {row['torch'].wer:10.3f} "
            f"{row['torch'].cer:6.3f}"
        )
    if args.npspeech_run:
        print(
            f"\ntorch: {theirs.seconds:.1f} s of training + dev evaluation for "
            f"{len(theirs.epochs)} epochs; npspeech's run read from {args.npspeech_run}"
            " (not timed here)"
        )
        check_losses(ours, theirs)
        return 0
    print(
        f"\nwall time of training + dev evaluation (features cached, JIT warm, "
        f"{args.threads} thread(s), {'torch' if args.torch_first else 'npspeech'} "
        f"first{', torch flushing denormals' if args.torch_flush_denormal else ''}): "
        f"npspeech {ours.seconds:.1f} s for {len(ours.epochs)} epochs, "
        f"torch {theirs.seconds:.1f} s for {len(theirs.epochs)} epochs; "
        f"ratio npspeech / torch {ours.seconds / theirs.seconds:.2f}"
    )
    ours_median = statistics.median(ours.step_seconds)
    theirs_median = statistics.median(theirs.step_seconds)
    print(
        f"training steps alone: npspeech {sum(ours.step_seconds):.1f} s over "
        f"{len(ours.step_seconds)} steps (median {ours_median:.3f} s), torch "
        f"{sum(theirs.step_seconds):.1f} s over {len(theirs.step_seconds)} steps "
        f"(median {theirs_median:.3f} s); ratio of sums "
        f"{sum(ours.step_seconds) / sum(theirs.step_seconds):.2f}, of medians "
        f"{ours_median / theirs_median:.2f}"
    )
    check_losses(ours, theirs)
    return 0


def check_losses(*sides: Side) -> None:
    """Each side's epoch losses are finite and fell over the run."""
    for side in sides:
        losses = [entry["train_loss"] for entry in side.epochs]
        assert all(np.isfinite(losses)), f"{side.name}: non-finite epoch loss {losses}"
        if len(losses) > 1:
            assert losses[-1] < losses[0], f"{side.name}: no fall in loss {losses}"


if __name__ == "__main__":
    raise SystemExit(main())
