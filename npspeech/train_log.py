"""The training run's ``log.jsonl``: one JSON object per step and per epoch.

Appended line by line as the run goes (a kill can cut only the last line short), and
trimmed on resume to what the resumed checkpoint had done, so that the steps redone
after it are not logged twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .curves import LOG_FILE
from .fileio import write_text_atomically


def append(output_dir: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` (with the time it was written) as one line of the run's log."""
    entry = {"time": time.time(), **entry}
    with (Path(output_dir) / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, allow_nan=True) + "\n")


def trim(output_dir: Path, step: int, epoch: int) -> None:
    """Drop the lines from after a checkpoint at optimizer step ``step`` of epoch
    ``epoch`` (to be redone by the resumed run), and lines cut short by a kill."""
    path = Path(output_dir) / LOG_FILE
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        event, at = entry.get("event"), entry.get("step", 0)
        if (event == "step" and at <= step) or (
            event == "epoch" and entry.get("epoch", 0) < epoch
        ):
            kept.append(line)
    write_text_atomically(path, "".join(line + "\n" for line in kept))
