"""The models shipped inside the package, so that a fresh install transcribes at once.

Each bundled model is an ordinary npspeech model file and scorer package in this
folder, described by ``manifest.json``: its name, files, how it was trained (recipe,
data, epochs, seed) and the word and character error rates measured on every test set
of the project's corpora. ``npspeech models`` prints that record; ``npspeech decode``
and ``npspeech eval`` without ``--model``, and ``npspeech.Model()`` without a path, use
the default model with its scorer. ``recipes/bundled_model.sh`` rebuilds the files
from the same data and seed.

Nothing here imports NumPy: the manifest is JSON, and the files are paths until a
caller loads them.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFileError

__all__ = [
    "BundledModel",
    "Result",
    "FOLDER",
    "MANIFEST",
    "names",
    "get",
    "resolve_model",
    "resolve_scorer",
]

#: where the bundled files live (inside the installed package)
FOLDER = Path(__file__).resolve().parent
#: the record of every bundled model
MANIFEST = FOLDER / "manifest.json"
#: what ``--model``/``--init-from`` may say to name a bundled model instead of a path
PREFIX = "bundled"


@dataclasses.dataclass(frozen=True)
class Result:
    """One measured figure: a model decoded on one test set one way.

    ``decoder`` is ``"greedy"`` or ``"beam+scorer"``; ``wer``/``cer`` are corpus rates
    (errors over reference words/characters) over ``utterances`` utterances.
    """

    test_csv: str  # relative to the data folder, e.g. "kathleen_arctic/test.csv"
    decoder: str
    wer: float
    cer: float
    utterances: int


@dataclasses.dataclass(frozen=True)
class BundledModel:
    """A bundled model's files and record."""

    name: str
    description: str
    model_path: Path
    scorer_path: Path | None
    architecture: str
    streaming: bool
    weights: str  # "float32" or "int8"
    training: dict[str, Any]  # recipe, data, epochs, seed, command
    scorer_training: dict[str, Any]  # text sources, order, size, alpha, beta
    results: tuple[Result, ...]

    def result(self, test_csv: str, decoder: str) -> Result | None:
        """The recorded figure for one test set and decoder, if measured."""
        for entry in self.results:
            if entry.test_csv == test_csv and entry.decoder == decoder:
                return entry
        return None

    @property
    def size_bytes(self) -> int:
        """Bytes of the model file and its scorer together."""
        paths = [self.model_path, *([self.scorer_path] if self.scorer_path else [])]
        return sum(path.stat().st_size for path in paths)


@cache
def _manifest() -> dict[str, Any]:
    try:
        text = MANIFEST.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(
            f"{MANIFEST}: no bundled models in this installation"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{MANIFEST}: not valid JSON ({error})") from None


def _entry(record: dict[str, Any]) -> BundledModel:
    def path(name: str | None) -> Path | None:
        if not name:
            return None
        resolved = FOLDER / name
        if not resolved.is_file():
            raise ModelFileError(
                f"{resolved}: bundled file of model {record['name']!r} is missing "
                "(a damaged installation: reinstall npspeech)"
            )
        return resolved

    return BundledModel(
        name=record["name"],
        description=record["description"],
        model_path=path(record["model"]),
        scorer_path=path(record.get("scorer")),
        architecture=record["architecture"],
        streaming=bool(record["streaming"]),
        weights=record["weights"],
        training=dict(record["training"]),
        scorer_training=dict(record.get("scorer_training", {})),
        results=tuple(Result(**result) for result in record["results"]),
    )


def names() -> list[str]:
    """Names of the bundled models, the default first."""
    manifest = _manifest()
    listed = [record["name"] for record in manifest["models"]]
    default = manifest["default"]
    return [default, *(name for name in listed if name != default)]


def get(name: str | None = None) -> BundledModel:
    """The bundled model called ``name`` (None: the default one).

    Raises
    ------
    ConfigError
        For a name no bundled model has (the message lists them).
    ModelFileError
        When the manifest or one of the model's files is missing.
    """
    manifest = _manifest()
    wanted = name or manifest["default"]
    for record in manifest["models"]:
        if record["name"] == wanted:
            return _entry(record)
    raise ConfigError(
        f"no bundled model is called {wanted!r}; bundled: {', '.join(names())}"
    )


def resolve_model(value: str | None) -> tuple[str, BundledModel | None]:
    """A ``--model`` or ``--init-from`` value as a file path, and the bundled model
    it names, if any.

    None (the option not given) and ``"bundled"`` mean the default bundled model;
    ``"bundled:NAME"`` a named one. Anything else is a path, returned unchanged, even
    when a file of that name exists nowhere (loading it reports that).
    """
    if value is None or value == PREFIX:
        bundled = get()
    elif value.startswith(PREFIX + ":") and not Path(value).exists():
        bundled = get(value[len(PREFIX) + 1 :])
    else:
        return value, None
    return str(bundled.model_path), bundled


def resolve_scorer(value: str) -> str:
    """A ``--scorer`` value as a file path: ``"bundled"`` (``"bundled:NAME"``) is the
    scorer of the default (named) bundled model; anything else is returned unchanged.

    Raises
    ------
    ConfigError
        When that bundled model has no scorer, or no bundled model has the name.
    """
    if value != PREFIX and not (
        value.startswith(PREFIX + ":") and not Path(value).exists()
    ):
        return value
    model = get(value[len(PREFIX) + 1 :] or None)
    if model.scorer_path is None:
        raise ConfigError(f"bundled model {model.name!r} has no scorer")
    return str(model.scorer_path)
