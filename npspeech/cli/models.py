"""`npspeech models`: the models shipped with npspeech, with how each was trained and
the error rates measured on every test set.

`npspeech decode` and `npspeech eval` use the default one (listed first) when no
`--model` is given, with its scorer; `--model bundled:NAME` picks another, and
`npspeech train --init-from bundled` fine-tunes the default one on your data.
`--path NAME` prints a model's file path, `--json` the whole record.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``models`` subcommand."""
    parser = subparsers.add_parser(
        "models", help="list the bundled models and their accuracy", description=__doc__
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--json",
        action="store_true",
        help="print the bundled models' records as JSON (default: a table)",
    )
    choice.add_argument(
        "--path",
        metavar="NAME",
        nargs="?",
        const="",
        default=None,
        help="print the model file's path of NAME (default one when NAME is left "
        "out) and exit",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import bundled

    if args.path is not None:
        print(bundled.get(args.path or None).model_path)
        return 0
    models = [bundled.get(name) for name in bundled.names()]
    if args.json:
        print(json.dumps([_as_json(model) for model in models], indent=2))
        return 0
    for index, model in enumerate(models):
        if index:
            print()
        print(_describe(model, default=index == 0))
    return 0


def _as_json(model: Any) -> dict[str, Any]:
    import dataclasses

    record = dataclasses.asdict(model)
    for key in ("model_path", "scorer_path"):
        record[key] = None if record[key] is None else str(record[key])
    record["size_bytes"] = model.size_bytes
    return record


def _describe(model: Any, default: bool) -> str:
    """A model's record as a few aligned lines and a table of results."""
    training = model.training
    lines = [
        f"{model.name}{'  (default)' if default else ''}",
        f"  {model.description}",
        f"  architecture   {model.architecture}, {model.weights} weights, "
        f"{'streaming' if model.streaming else 'offline only'}",
        f"  size           {model.size_bytes / 1e6:.1f} MB with its scorer",
        f"  trained on     {', '.join(training.get('data', []))}",
        f"  training       {training.get('recipe', '?')}",
        f"  last run       {training.get('epochs', '?')} epochs, the model from epoch "
        f"{training.get('selected_epoch', '?')}, seed {training.get('seed', '?')}",
        f"  rebuilt by     {training.get('command', '?')}",
        f"  model file     {model.model_path}",
    ]
    if model.scorer_path is not None:
        scorer = model.scorer_training
        lines.append(
            f"  scorer         {model.scorer_path.name}: {scorer.get('summary', '')}"
        )
    header = f"{'test set':<28} {'decoder':<12} {'WER':>6} {'CER':>6} {'utts':>5}"
    lines.append(f"  {header}")
    for result in model.results:
        lines.append(
            f"  {result.test_csv:<28} {result.decoder:<12} {result.wer:>6.3f} "
            f"{result.cer:>6.3f} {result.utterances:>5}"
        )
    return "\n".join(lines)
