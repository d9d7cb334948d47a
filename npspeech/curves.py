"""Training curves: the run log (``log.jsonl``) read back and drawn as a PNG.

:mod:`npspeech.train` writes the log (one JSON object per step and per epoch);
:func:`plot_run` draws it, at the end of a run or from ``npspeech train --plot-only``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import DataError

LOG_FILE = "log.jsonl"
PLOT_FILE = "curves.png"


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of a run's ``log.jsonl`` (unreadable lines skipped)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise DataError(f"{path}: no training log here")
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw the loss (per step and per epoch) and dev WER curves of a run as a PNG.

    Returns the PNG's path (``run_dir/curves.png`` unless ``output`` is given).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    entries = read_log(run_dir)
    steps = [e for e in entries if e.get("event") == "step" and not e.get("skipped")]
    epochs = [e for e in entries if e.get("event") == "epoch"]
    figure, (loss_axes, wer_axes) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        loss_axes.plot(
            [e["step"] for e in steps],
            [e["loss"] for e in steps],
            alpha=0.35,
            label="train (step)",
        )
    if epochs:
        loss_axes.plot(
            [e["step"] for e in epochs],
            [e["train_loss"] for e in epochs],
            marker="o",
            label="train (epoch)",
        )
        dev = [e for e in epochs if "dev_loss" in e and math.isfinite(e["dev_loss"])]
        if dev:
            loss_axes.plot(
                [e["step"] for e in dev],
                [e["dev_loss"] for e in dev],
                marker="o",
                label="dev",
            )
        with_wer = [e for e in epochs if "dev_wer" in e]
        if with_wer:
            wer_axes.plot(
                [e["epoch"] for e in with_wer],
                [e["dev_wer"] for e in with_wer],
                marker="o",
                label="dev WER",
            )
            wer_axes.plot(
                [e["epoch"] for e in with_wer],
                [e["dev_cer"] for e in with_wer],
                marker="o",
                label="dev CER",
            )
    loss_axes.set(xlabel="step", ylabel="CTC loss (nats / utterance)", title="loss")
    loss_axes.set_yscale("log")
    wer_axes.set(xlabel="epoch", ylabel="error rate", title="dev error rates")
    for axes in (loss_axes, wer_axes):
        if axes.lines:
            axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(output) if output is not None else Path(run_dir) / PLOT_FILE
    from .fileio import write_atomically

    write_atomically(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
    return path


__all__ = ["LOG_FILE", "PLOT_FILE", "plot_run", "read_log"]
