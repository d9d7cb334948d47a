"""npspeech against PyTorch: the same recipe trained side by side, WER and wall time.

Both sides start from the same initial weights (npspeech's, copied into the PyTorch twin
of ``benchmarks/peers/train_torch.py``), train on the very same batches (one
``BatchLoader``, same seed, same per-epoch plans) with the same loss, optimiser, gradient
clipping, learning-rate schedule, early stopping and best-epoch selection, and are scored
by the same greedy decoder on each test CSV. npspeech runs through its own
``npspeech.train.Trainer`` (checkpoints and log included, as a user would run it).
Dropout masks differ (each framework draws its own), so the runs diverge after the
first step when dropout is on: WERs should agree within noise, not exactly.

Before timing, the script warms up both sides (Numba compilation, PyTorch's first
calls), computes every feature once into the shared in-memory cache, and checks that
the twin's logits and first-step loss equal npspeech's on the first training batch.

Usage::

    python benchmarks/train_compare.py --recipe recipes/kathleen_fsdd_small.toml
    python benchmarks/train_compare.py --quick   # a subset and 2 epochs: a smoke run

Data come from the recipe's ``${NPSPEECH_DATA}`` paths (default ``../shared/data``
beside the repository).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
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
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE),
                        help="training recipe TOML (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ROWS['train']} train / {QUICK_ROWS['dev']} dev / "
                             f"{QUICK_ROWS['test']} test rows per CSV and "
                             f"{QUICK_EPOCHS} epochs (default: the whole recipe)")
    parser.add_argument("--epochs", type=int,
                        help="override the recipe's epochs (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for each side: Numba, PyTorch and BLAS "
                             "(default: %(default)s)")
    parser.add_argument("--test-csv", nargs="+",
                        help="test CSVs (default: $NPSPEECH_DATA/" +
                             " and $NPSPEECH_DATA/".join(TEST_CSVS) + ")")
    parser.add_argument("--output-dir",
                        help="npspeech's run folder (default: a temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="recipe override, as `npspeech train --set` (repeatable)")
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
    """A CSV of ``rows`` rows spread evenly over ``source``, with absolute audio paths."""
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

    command = ["train", "--config", args.recipe, "--no-progress",
               "--output-dir", str(output_dir)]
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
            train_csv=tuple(subset_csv(p, QUICK_ROWS["train"], scratch / "train")
                            for p in config.train_csv),
            dev_csv=tuple(subset_csv(p, QUICK_ROWS["dev"], scratch / "dev")
                          for p in config.dev_csv),
            epochs=args.epochs or QUICK_EPOCHS,
        )
        tests = [subset_csv(p, QUICK_ROWS["test"], scratch / "test") for p in tests]
    config = dataclasses.replace(config, checkpoint_minutes=1e6)  # epoch ends only
    return config, augmentation, tests


def check_first_batch(trainer, twin, loader) -> dict[str, float]:
    """The twin's logits and loss equal npspeech's on the first batch (no dropout)."""
    import torch

    from npspeech import ctc, models

    network = trainer.state.network.copy()
    network.config = dataclasses.replace(network.config, dropout=0.0)
    batch = loader.batch(0, 0)
    ours, lengths, _ = models.forward(network, batch.features, batch.lengths,
                                      backend=trainer.backend)
    model = twin.from_network(network)
    model.eval()
    with torch.no_grad():
        theirs = model(twin.model_input(batch.features, batch.lengths,
                                        network.config.n_context)).numpy()
    valid = models.frame_mask(lengths, ours.shape[0], bool)[:, :, 0]
    difference = float(np.abs(theirs[valid] - ours[valid]).max())
    assert difference < LOGITS_ATOL, f"twin logits differ by {difference}"
    loss_ours = float(ctc.ctc_loss(ours, batch.targets, lengths, batch.target_lengths,
                                   reduction="mean")[0])
    loss_theirs = float(torch.nn.functional.ctc_loss(
        torch.from_numpy(theirs).log_softmax(-1),
        torch.from_numpy(batch.targets.astype(np.int64)),
        torch.from_numpy(lengths.astype(np.int64)),
        torch.from_numpy(batch.target_lengths.astype(np.int64)),
        blank=theirs.shape[-1] - 1, reduction="sum") / len(batch.utterances))
    assert abs(loss_ours - loss_theirs) <= LOSS_RTOL * loss_ours, (loss_ours, loss_theirs)
    return {"logits_max_abs_diff": difference, "loss_npspeech": loss_ours,
            "loss_torch": loss_theirs}


def warm_up(trainer, twin, loader) -> None:
    """Compile and touch every code path once, on throwaway copies of the weights."""
    from npspeech import ctc, models, optim

    batch = loader.batch(0, 0)
    network = trainer.state.network.copy()
    rng = np.random.default_rng(0)
    logits, lengths, cache = models.forward(network, batch.features, batch.lengths,
                                            training=True, rng=rng,
                                            backend=trainer.backend)
    _, dlogits = ctc.ctc_loss(logits, batch.targets, lengths, batch.target_lengths,
                              reduction="mean", backend=trainer.backend)
    grads = models.backward(network, dlogits, cache, backend=trainer.backend)
    grads, _ = optim.clip_grad_norm(grads, 400.0)
    optim.adam_step(network.params, grads, optim.adam_init(network.params), 1e-3,
                    backend=trainer.backend)
    scratch = twin.TorchTrainer(trainer.state.network, trainer.config, seed=0)
    scratch.train_step(batch)


def evaluate_tests(network, model, tests, trainer, twin) -> list[dict[str, object]]:
    """Greedy WER/CER of both best models on each test CSV."""
    from npspeech import data
    from npspeech.inference import evaluate

    rows = []
    for path in tests:
        utterances, durations = data.validate_corpus(
            data.read_csvs([path]), trainer.alphabet, trainer.features, progress=False)
        ours = evaluate(network, utterances, trainer.alphabet, trainer.features,
                        cache=trainer.cache, frames_budget=trainer.config.batch_frames,
                        backend=trainer.backend, durations=durations)
        theirs = twin.evaluate(model, utterances, trainer.alphabet, trainer.features,
                               network.config.n_context, cache=trainer.cache,
                               frames_budget=trainer.config.batch_frames,
                               durations=durations)
        rows.append({"csv": path, "n": len(utterances), "npspeech": ours,
                     "torch": theirs})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("NPSPEECH_DATA", str(DEFAULT_DATA))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peers import train_torch as twin

    limiter = set_threads(args.threads)  # held until the process ends
    from npspeech import modelfile, train

    with tempfile.TemporaryDirectory(prefix="npspeech-compare-") as scratch_name:
        scratch = Path(scratch_name)
        for part in QUICK_ROWS:
            (scratch / part).mkdir()
        output_dir = Path(args.output_dir) if args.output_dir else scratch / "run"
        config, augmentation, tests = load_config(args, output_dir, scratch)
        if augmentation is not None:
            print("note: augmentation is on; both sides get the same augmented batches")
        trainer = train.Trainer(config, augmentation=augmentation)
        loader = trainer.loader
        print(f"recipe {args.recipe}{' (--quick)' if args.quick else ''}: "
              f"{len(trainer.train_set)} train / {len(trainer.dev_set)} dev utterances, "
              f"{trainer.train_seconds / 60:.1f} min of training audio, "
              f"{len(loader)} batches per epoch, up to {config.epochs} epochs, "
              f"n_hidden {config.model.n_hidden}, "
              f"{trainer.state.network.n_parameters():,} parameters, "
              f"{args.threads} thread(s) per side")
        started = time.perf_counter()
        for utterance in [*trainer.train_set, *trainer.dev_set]:
            trainer.cache.get(utterance)  # both sides then read the same cached features
        print(f"features cached in {time.perf_counter() - started:.1f} s (not timed)")
        initial = trainer.state.network.copy()
        warm_up(trainer, twin, loader)
        check = check_first_batch(trainer, twin, loader)
        print(f"first batch, no dropout: logits differ by at most "
              f"{check['logits_max_abs_diff']:.2e}; CTC loss npspeech "
              f"{check['loss_npspeech']:.4f}, torch {check['loss_torch']:.4f}")

        print("\n== npspeech ==")
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # matplotlib font notices
            result = trainer.run()
        npspeech_seconds = time.perf_counter() - started
        epochs = [e for e in train.read_log(trainer.output_dir) if e["event"] == "epoch"]
        steps = [e for e in train.read_log(trainer.output_dir) if e["event"] == "step"]
        for entry in epochs:
            print(f"epoch {entry['epoch']}: train loss {entry['train_loss']:.3f}  "
                  f"dev loss {entry.get('dev_loss', float('nan')):.3f}  "
                  f"dev WER {entry.get('dev_wer', float('nan')):.3f}  "
                  f"CER {entry.get('dev_cer', float('nan')):.3f}  lr {entry['lr']:.2e}")
        print(f"stopped: {result.stopped} after {result.epochs} epochs, {result.steps} "
              f"steps, {result.skipped_batches} skipped; {npspeech_seconds:.1f} s")

        print("\n== torch ==")
        torch_trainer = twin.TorchTrainer(initial, config, seed=config.seed)

        def report(entry):
            print(f"epoch {entry['epoch']}: train loss {entry['train_loss']:.3f}  "
                  f"dev loss {entry.get('dev_loss', float('nan')):.3f}  "
                  f"dev WER {entry.get('dev_wer', float('nan')):.3f}  "
                  f"CER {entry.get('dev_cer', float('nan')):.3f}  lr {entry['lr']:.2e}  "
                  f"({entry['seconds']:.1f} s)", flush=True)

        started = time.perf_counter()
        history = torch_trainer.fit(loader, trainer.dev_set, trainer.alphabet,
                                    trainer.features, cache=trainer.cache,
                                    dev_durations=trainer.dev_durations, report=report)
        torch_seconds = time.perf_counter() - started
        print(f"stopped after {len(history)} epochs, {torch_trainer.steps} steps, "
              f"{torch_trainer.skipped} skipped; {torch_seconds:.1f} s")

        best = modelfile.load(result.model_path).network
        rows = evaluate_tests(best, torch_trainer.best_model(), tests, trainer, twin)

    print("\n== best epoch, greedy decoding ==")
    print(f"{'test CSV':40s} {'n':>4s} {'npspeech WER':>13s} {'CER':>6s} "
          f"{'torch WER':>10s} {'CER':>6s}")
    for row in rows:
        ours, theirs = row["npspeech"], row["torch"]
        name = "/".join(Path(row["csv"]).parts[-2:])
        print(f"{name:40s} {row['n']:4d} {ours.wer:13.3f} {ours.cer:6.3f} "
              f"{theirs.wer:10.3f} {theirs.cer:6.3f}")
    step_seconds = statistics.median(
        b["time"] - a["time"] for a, b in zip(steps, steps[1:])
        if a["epoch"] == b["epoch"]
    ) if len(steps) > 1 else float("nan")
    print(f"\nwall time (training + dev evaluation, features cached, JIT warm): "
          f"npspeech {npspeech_seconds:.1f} s for {result.epochs} epochs, "
          f"torch {torch_seconds:.1f} s for {len(history)} epochs; "
          f"ratio npspeech / torch = {npspeech_seconds / torch_seconds:.2f}")
    per_epoch_ours = npspeech_seconds / max(result.epochs, 1)
    per_epoch_theirs = torch_seconds / max(len(history), 1)
    print(f"per epoch: npspeech {per_epoch_ours:.1f} s, torch {per_epoch_theirs:.1f} s "
          f"(ratio {per_epoch_ours / per_epoch_theirs:.2f}); npspeech median step "
          f"interval {step_seconds * 1000:.0f} ms")
    finite = all(np.isfinite(e["train_loss"]) for e in epochs) and all(
        np.isfinite(h["train_loss"]) for h in history)
    assert finite, "a side produced a non-finite epoch loss"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
