"""Put a trained model and its scorer into ``npspeech/bundled/`` with their record.

Scores the model on every test set (greedy, and beam search with the scorer at the
scorer's own alpha/beta), copies both files in under the model's name, and writes the
entry of ``npspeech/bundled/manifest.json`` that ``npspeech models`` prints and the
tests check the bundled model against. Files are written atomically; an entry of the
same name is replaced, others are kept.

    python tools/build_bundle.py --name en-kathleen-stream \\
        --model runs/bundle/stage2/model.npz --scorer runs/bundle/scorer.npscorer \\
        --description "..." --recipe recipes/kathleen_fsdd_aug.toml \\
        --command "recipes/bundled_model.sh"

Test sets are read from ``$NPSPEECH_DATA`` (default ``../shared/data``); their paths
are recorded relative to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

TEST_SETS = ("kathleen_arctic/test.csv", "fsdd/test.csv", "an4_mini/test.csv")
BUNDLE = Path(__file__).resolve().parents[1] / "npspeech" / "bundled"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the bundled model's name")
    parser.add_argument("--model", required=True, help="trained model file")
    parser.add_argument("--scorer", help="scorer package (npspeech lm package/tune)")
    parser.add_argument("--description", required=True, help="one line")
    parser.add_argument("--recipe", required=True, help="recipe file(s) it came from")
    parser.add_argument("--command", required=True, help="command that rebuilds it")
    parser.add_argument(
        "--scorer-summary", default="", help="one line on the scorer's text and size"
    )
    parser.add_argument("--default", action="store_true", help="make it the default")
    parser.add_argument("--beam-width", type=int, default=None)
    parser.add_argument("--output-dir", type=Path, default=BUNDLE)
    args = parser.parse_args(argv)

    import numpy as np  # noqa: F401  (fail here, not halfway, without the package)

    from npspeech.config import DecodeConfig
    from npspeech.fileio import write_text_atomically
    from npspeech.inference import Model
    from npspeech.quantize import QuantizedNetwork

    root = Path(os.environ.get("NPSPEECH_DATA", "../shared/data")).resolve()
    model = Model.load(args.model)
    decoders = {"greedy": DecodeConfig(decoder="greedy")}
    if args.scorer:
        beam = {"beam_width": args.beam_width} if args.beam_width else {}
        decoders["beam+scorer"] = DecodeConfig(
            decoder="beam", scorer=str(args.scorer), **beam
        )
    results = []
    for test in TEST_SETS:
        for decoder, config in decoders.items():
            scored = model.evaluate_csvs([root / test], config)
            results.append(
                {
                    "test_csv": test,
                    "decoder": decoder,
                    "wer": round(scored.wer, 4),
                    "cer": round(scored.cer, 4),
                    "utterances": len(scored.utterances),
                }
            )
            print(f"{test:<28} {decoder:<12} WER {scored.wer:.4f} CER {scored.cer:.4f}")

    training = model.training
    recipe = training.get("recipe", {})
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_name = f"{args.name}.npz"
    _copy(Path(args.model), args.output_dir / model_name)
    scorer_name = None
    if args.scorer:
        scorer_name = f"{args.name}.npscorer"
        _copy(Path(args.scorer), args.output_dir / scorer_name)
    architecture = model.network.config.architecture
    weights = "int8" if isinstance(model.network, QuantizedNetwork) else "float32"
    entry = {
        "name": args.name,
        "description": args.description,
        "model": model_name,
        "scorer": scorer_name,
        "architecture": architecture,
        "streaming": architecture != "ds2",
        "weights": weights,
        "training": {
            "recipe": args.recipe,
            "command": args.command,
            "data": [_relative(path, root) for path in recipe.get("train_csv", [])],
            "dev": [_relative(path, root) for path in recipe.get("dev_csv", [])],
            "epochs": training.get("epochs"),
            # the 1-based epoch (as `npspeech train` prints it) whose weights these are
            "selected_epoch": _one_based(training.get("best_epoch")),
            "seed": recipe.get("seed"),
            "n_hidden": model.network.config.n_hidden,
        },
        "scorer_training": {"summary": args.scorer_summary},
        "results": results,
    }
    manifest_path = args.output_dir / "manifest.json"
    manifest = {"format": 1, "default": args.name, "models": []}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["models"] = [m for m in manifest["models"] if m["name"] != args.name]
    manifest["models"].append(entry)
    listed = {m["name"] for m in manifest["models"]}
    if args.default or manifest["default"] not in listed:
        manifest["default"] = args.name
    write_text_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {manifest_path}")
    return 0


def _copy(source: Path, target: Path) -> None:
    """Copy through a temporary name, so a reader never sees half a file."""
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _one_based(epoch: int | None) -> int | None:
    """The training record counts epochs from 0; people (and the log lines) from 1."""
    return None if epoch is None else int(epoch) + 1


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
