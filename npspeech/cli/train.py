"""`npspeech train`: train (or resume) a model from a recipe and command-line options.

Settings are layered, each layer overriding the one before:

1. the defaults of npspeech.config.TrainConfig;
2. the architecture preset (--preset, or `preset = "..."` at the top of the recipe;
   deepspeech when neither names one): npspeech/presets/NAME.toml;
3. the recipe (--config RECIPE.toml) with [train], [model], [features] and [augment]
   tables;
4. --set section.key=value options, in order (values are TOML: --set train.epochs=10,
   --set train.train_csv=["a.csv","b.csv"]; a bare word is a string);
5. the explicit flags (--epochs, --n-hidden, ...).

Paths in a recipe may use environment variables (${NPSPEECH_DATA}/fsdd/train.csv).

A folder that already holds a run is refused unless --resume continues it or
--overwrite replaces it. Each epoch prints a line with its train loss and dev loss,
WER and CER.

Data-parallel training: launched by an MPI launcher with several processes
(mpirun -n 4 npspeech train --config RECIPE.toml), the processes train one model
together, each on its share of every batch; rank 0 writes the files and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NpspeechError

SECTIONS = ("train", "model", "features", "augment")
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
_PATH_KEYS = (
    "train_csv",
    "dev_csv",
    "alphabet",
    "output_dir",
    "init_from",
    "feature_cache_dir",
)


def _default(name: str) -> Any:
    from ..config import TrainConfig

    return getattr(TrainConfig(), name)


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train or resume a model",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="RECIPE.toml",
        help="recipe file (default: none, only presets and flags)",
    )
    parser.add_argument(
        "--preset",
        choices=available_presets(),
        help="architecture preset (default: the recipe's, else deepspeech)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting; repeatable (default: none)",
    )
    flags = parser.add_argument_group("common settings (each overrides the recipe)")
    flags.add_argument(
        "--train-csv",
        nargs="+",
        metavar="CSV",
        help="training corpus CSVs (default: the recipe's)",
    )
    flags.add_argument(
        "--dev-csv",
        nargs="+",
        metavar="CSV",
        help="dev corpus CSVs for selection and early stopping "
        "(default: the recipe's, else none)",
    )
    flags.add_argument(
        "--alphabet", metavar="FILE", help="alphabet.txt (default: the recipe's)"
    )
    flags.add_argument(
        "--epochs",
        type=int,
        help=f"most epochs to train (default: {_default('epochs')})",
    )
    flags.add_argument(
        "--n-hidden",
        type=int,
        help="hidden layer width (default: the preset's; 2048 for deepspeech)",
    )
    flags.add_argument(
        "--dropout",
        type=float,
        help="dropout rate (default: the preset's: 0.05 for deepspeech, after its "
        "dense layers; 0 for ds2 and ds2-stream, after each recurrent layer)",
    )
    flags.add_argument(
        "--learning-rate",
        type=float,
        help=f"Adam learning rate (default: {_default('learning_rate')})",
    )
    flags.add_argument(
        "--batch-frames",
        type=int,
        help=f"padded frames per batch (default: {_default('batch_frames')})",
    )
    flags.add_argument(
        "--max-batch-size",
        type=int,
        help="utterances per batch at most, 0 for no limit "
        f"(default: {_default('max_batch_size')})",
    )
    flags.add_argument(
        "--output-dir",
        metavar="DIR",
        help="checkpoints, log, plot and model.npz go here "
        f"(default: {_default('output_dir')})",
    )
    flags.add_argument(
        "--seed", type=int, help=f"random seed (default: {_default('seed')})"
    )
    flags.add_argument(
        "--skip-bad-rows",
        action="store_true",
        default=None,
        help="skip corpus rows that fail validation instead of stopping "
        "(default: stop and list them)",
    )
    flags.add_argument(
        "--target-dev-wer",
        type=float,
        help="stop as soon as the dev WER is at most this "
        f"(default: {_default('target_dev_wer')}, never)",
    )
    flags.add_argument(
        "--early-stop-patience",
        type=int,
        help="epochs without dev improvement before stopping, 0 for never "
        f"(default: {_default('early_stop_patience')})",
    )
    flags.add_argument(
        "--checkpoint-minutes",
        type=float,
        help="write the last checkpoint at least this often "
        f"(default: {_default('checkpoint_minutes')})",
    )
    flags.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from this model file, or `bundled` (bundled:NAME) for a model "
        "shipped with npspeech: fine-tuning (default: fresh weights)",
    )
    flags.add_argument(
        "--reinit-layers",
        type=int,
        help="with --init-from, re-initialise this many top layers "
        f"(default: {_default('reinit_layers')})",
    )
    flags.add_argument(
        "--backend",
        choices=("numpy", "numba", "cupy"),
        help=f"kernel backend (default: {_default('backend')})",
    )
    run_group = parser.add_argument_group("run control")
    run_group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its last "
        "checkpoint (default: start afresh)",
    )
    run_group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --output-dir; its files go only once the new "
        "run writes its own (default: refuse such a folder)",
    )
    run_group.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many optimizer steps, checkpointed "
        "for --resume (default: no limit)",
    )
    run_group.add_argument(
        "--distributed",
        choices=("auto", "mpi", "none"),
        default="auto",
        help="data-parallel training over MPI: auto uses it when an MPI launcher "
        "started several processes (mpirun -n N), mpi always, none never "
        "(default: auto)",
    )
    run_group.add_argument(
        "--collective-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with MPI, end the job when a rank waits this long for the others "
        "(default: 600)",
    )
    run_group.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: show it)"
    )
    run_group.add_argument(
        "--plot-only",
        metavar="RUN_DIR",
        help="only redraw RUN_DIR/curves.png from its log and exit (default: train)",
    )
    run_group.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings as JSON and exit (default: train)",
    )
    parser.set_defaults(run=run)


def available_presets() -> list[str]:
    """Names of the presets shipped in ``npspeech/presets``."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML when it parses, else the bare string."""
    from ..config import tomllib

    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(base: dict[str, Any], layer: dict[str, Any], where: str) -> None:
    for section, values in layer.items():
        if section == "preset":
            continue
        if section not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown table [{section}]; known: "
                f"{', '.join(SECTIONS)} (and a top-level preset)"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        base.setdefault(section, {}).update(values)


def resolve_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The layered settings as ``{"train": ..., "model": ..., ...}`` dicts."""
    from ..config import read_toml

    recipe: dict[str, Any] = read_toml(args.config) if args.config else {}
    preset = args.preset or recipe.get("preset") or "deepspeech"
    preset_path = PRESETS_DIR / f"{preset}.toml"
    if not preset_path.is_file():
        raise ConfigError(
            f"unknown preset {preset!r}; choose one of {', '.join(available_presets())}"
        )
    settings: dict[str, dict[str, Any]] = {}
    _merge(settings, read_toml(preset_path), str(preset_path))
    _merge(settings, recipe, str(args.config))
    for override in args.overrides:
        key, equals, value = override.partition("=")
        section, dot, name = key.strip().partition(".")
        if not equals or not dot or section not in SECTIONS or not name:
            raise ConfigError(
                f"--set {override!r}: expected SECTION.KEY=VALUE with "
                f"SECTION one of {', '.join(SECTIONS)}"
            )
        settings.setdefault(section, {})[name] = _parse_value(value.strip())
    train = settings.setdefault("train", {})
    flag_map = {
        "train_csv": args.train_csv,
        "dev_csv": args.dev_csv,
        "alphabet": args.alphabet,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_frames": args.batch_frames,
        "max_batch_size": args.max_batch_size,
        "output_dir": args.output_dir,
        "seed": args.seed,
        "skip_bad_rows": args.skip_bad_rows,
        "target_dev_wer": args.target_dev_wer,
        "early_stop_patience": args.early_stop_patience,
        "checkpoint_minutes": args.checkpoint_minutes,
        "init_from": args.init_from,
        "reinit_layers": args.reinit_layers,
        "backend": args.backend,
    }
    train.update({key: value for key, value in flag_map.items() if value is not None})
    if args.no_progress:
        train["progress"] = False
    model = settings.setdefault("model", {})
    if args.n_hidden is not None:
        model["n_hidden"] = args.n_hidden
    if args.dropout is not None:
        model["dropout"] = args.dropout
    for key in _PATH_KEYS:
        if key in train:
            train[key] = _expand(train[key])
    if train.get("init_from"):
        from ..bundled import resolve_model

        train["init_from"], _ = resolve_model(train["init_from"])
    return settings


def _expand(value: Any) -> Any:
    """Environment variables and ``~`` in path settings (strings or lists of them)."""
    if isinstance(value, str):
        return os.path.expanduser(os.path.expandvars(value))
    if isinstance(value, (list, tuple)):
        return [_expand(item) for item in value]
    return value


def build_config(settings: dict[str, dict[str, Any]]) -> tuple[Any, Any]:
    """``(TrainConfig, AugmentConfig or None)`` from resolved settings."""
    from ..config import TrainConfig, from_dict

    values = dict(settings.get("train", {}))
    for key in ("train_csv", "dev_csv"):
        if isinstance(values.get(key), str):
            values[key] = [values[key]]
    values["model"] = settings.get("model", {})
    values["features"] = settings.get("features", {})
    config = from_dict(TrainConfig, values, where="train")
    augmentation = None
    if settings.get("augment"):
        from ..augment import AugmentConfig

        augmentation = from_dict(AugmentConfig, settings["augment"], where="augment")
    return config, augmentation


def format_epoch(entry: dict[str, Any], epochs: int) -> str:
    """The line printed for a finished epoch (an ``epoch`` entry of the log)."""
    parts = [
        f"epoch {entry['epoch'] + 1}/{epochs}",
        f"step {entry['step']}",
        f"train loss {entry['train_loss']:.3f}",
    ]
    if "dev_wer" in entry:
        parts += [
            f"dev loss {entry['dev_loss']:.3f}",
            f"WER {entry['dev_wer']:.4f}",
            f"CER {entry['dev_cer']:.4f}",
        ]
    parts.append(f"lr {entry['lr']:.3g}")
    return "  ".join(parts)


def _print_epoch(entry: dict[str, Any], epochs: int) -> None:
    from tqdm import tqdm

    # tqdm.write keeps a progress bar on the terminal intact below the line.
    tqdm.write(format_epoch(entry, epochs), file=sys.stdout)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    """Run ``npspeech train``."""
    import json

    from .. import train
    from ..config import to_dict

    if args.plot_only:
        path = train.plot_run(args.plot_only)
        print(f"wrote {path}")
        return 0
    settings = resolve_settings(args)
    config, augmentation = build_config(settings)
    if args.print_config:
        print(
            json.dumps(
                {
                    "train": to_dict(config),
                    "augment": to_dict(augmentation) if augmentation else {},
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    from ..distributed import get_collective

    collective = get_collective(args.distributed, timeout=args.collective_timeout)
    if collective.size > 1:
        started = collective.describe()  # every rank takes part
        if collective.is_root:
            print(f"npspeech train: {started}", file=sys.stderr, flush=True)
    try:
        result = train.train(
            config,
            resume=args.resume,
            augmentation=augmentation,
            max_steps=args.max_steps,
            overwrite=args.overwrite,
            collective=collective,
            on_epoch=lambda entry: _print_epoch(entry, config.epochs),
        )
    except NpspeechError as error:
        # An error every rank raised alike (a folder holding a run, an unreadable
        # checkpoint) is reported once, by rank 0.
        if not collective.is_root and getattr(error, "raised_on_every_rank", False):
            return 1
        raise
    if not collective.is_root:
        return 0
    best = "n/a" if result.best_dev_wer is None else f"{result.best_dev_wer:.4f}"
    print(
        f"stopped ({result.stopped}) after {result.epochs} epochs, "
        f"{result.steps} steps; "
        f"best dev WER {best}; skipped batches {result.skipped_batches}"
    )
    print(f"model: {result.model_path}")
    return 0
