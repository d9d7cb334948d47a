"""Model files: one self-describing, pickle-free file per trained model.

Container
---------
A ZIP archive written by :func:`numpy.savez` (the ``.npz`` format), so any NumPy can
list and read it. Entries:

- ``__npspeech__``: UTF-8 JSON as a ``uint8`` array: ``format`` (``"npspeech-model"``),
  ``format_version``, ``model`` (:class:`~npspeech.config.ModelConfig`), ``features``
  (:class:`~npspeech.config.FeatureConfig`), ``alphabet`` (the labels), ``sample_rate``,
  ``n_input``, ``n_classes``, ``training`` (recipe, data, epochs, dev WER, ...), and the
  names, dtypes and shapes of the arrays below;
- ``params/LAYER/NAME`` and ``state/LAYER/NAME``: the weights and batch-norm statistics;
- ``scales/LAYER/NAME`` (int8 models only): float32, one scale per output channel of
  the int8 ``params/LAYER/NAME``;
- ``__sha256__``: hex SHA-256 (as ``uint8``) of the metadata JSON and of every array's
  name, dtype, shape and bytes, in sorted order: a file whose contents changed after
  writing fails :func:`load` with :class:`ModelFileError`.

Format versions
---------------
- 1: every array float (float32 as written by training). Still read.
- 2 (written now): as 1, plus int8 models (``npspeech quantize``,
  :mod:`npspeech.quantize`): their metadata adds ``weights``: ``{"scheme":
  "int8-symmetric-per-output-channel", "quantized": [NAME, ...]}``, and each named
  param is stored int8 with its ``scales/NAME``. A float model has no ``weights``
  entry. A version-1 reader refuses every version-2 file ("written by a newer
  npspeech; upgrade") rather than reading int8 codes as weights; this reader loads
  both versions, an int8 file as a :class:`npspeech.quantize.QuantizedNetwork`.

Files are loaded with ``allow_pickle=False`` and written atomically (a temporary file in
the same folder, flushed and fsynced, then renamed over the target), so a crash leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .alphabet import Alphabet
from .config import FeatureConfig, ModelConfig, from_dict, to_dict
from .errors import ConfigError, ModelFileError
from .fileio import write_atomically
from .models import Network

FORMAT_NAME = "npspeech-model"
FORMAT_VERSION = 2  # bump on any change an older reader would misread
META_KEY = "__npspeech__"
HASH_KEY = "__sha256__"


@dataclasses.dataclass
class ModelFile:
    """What a model file holds.

    Attributes
    ----------
    network : Network
        Architecture, weights and batch-norm state.
    features : FeatureConfig
        The front end the network was trained on (context stacking is the network's).
    alphabet : Alphabet
    training : dict
        How it was trained: free-form JSON-able record (recipe, data, epochs, dev WER).
    """

    network: Network
    features: FeatureConfig
    alphabet: Alphabet
    training: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        """Hz the audio is resampled to before features."""
        return self.features.sample_rate


# -- array archives with metadata (shared by model files and checkpoints) --------------


def _digest(meta_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata and each array's name, dtype, shape and bytes."""
    hasher = hashlib.sha256()
    hasher.update(meta_bytes)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        hasher.update(name.encode("utf-8"))
        hasher.update(array.dtype.str.encode("ascii"))
        hasher.update(repr(array.shape).encode("ascii"))
        hasher.update(array.tobytes())
    return hasher.hexdigest()


def save_archive(
    path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Atomically write ``arrays`` plus JSON ``meta`` and their hash as an ``.npz``."""
    for name in arrays:
        if name in (META_KEY, HASH_KEY):
            raise ValueError(f"array name {name!r} is reserved")
    meta = dict(meta)
    meta["arrays"] = {
        name: {"dtype": np.asarray(a).dtype.str, "shape": list(np.shape(a))}
        for name, a in sorted(arrays.items())
    }
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    digest = _digest(meta_bytes, arrays)
    entries = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    entries[META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)
    entries[HASH_KEY] = np.frombuffer(digest.encode("ascii"), dtype=np.uint8)
    return write_atomically(path, lambda handle: np.savez(handle, **entries))


def load_archive(
    path: str | os.PathLike, *, format_name: str, format_version: int, what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify what :func:`save_archive` wrote.

    Raises
    ------
    ModelFileError
        Missing, truncated or corrupt, foreign (not ``format_name``), written by a newer
        format version, or failing its integrity hash; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: {what} not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{path}: truncated or corrupt {what} ({error})") from None
    except (ValueError, OSError) as error:
        raise ModelFileError(f"{path}: not an npspeech {what} ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path}: not an npspeech {what} (a bare .npy array)")
    with archive:
        names = set(archive.files)
        if META_KEY not in names or HASH_KEY not in names:
            raise ModelFileError(
                f"{path}: not an npspeech {what} (no {META_KEY} entry)"
            )
        try:
            meta_bytes = archive[META_KEY].tobytes()
            stored_digest = archive[HASH_KEY].tobytes().decode("ascii")
            meta = json.loads(meta_bytes.decode("utf-8"))
            arrays = {name: archive[name] for name in names - {META_KEY, HASH_KEY}}
        except (
            zipfile.BadZipFile,
            EOFError,
            ValueError,
            OSError,
            UnicodeDecodeError,
            KeyError,
        ) as error:
            raise ModelFileError(
                f"{path}: truncated or corrupt {what} ({error})"
            ) from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise ModelFileError(
            f"{path}: not an npspeech {what} (format {meta.get('format')!r}, "
            f"expected {format_name!r})"
            if isinstance(meta, dict)
            else f"{path}: not an npspeech {what}"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"{path}: {what} has an invalid format_version {version!r}"
        )
    if version > format_version:
        raise ModelFileError(
            f"{path}: {what} format version {version} was written by a newer npspeech; "
            f"this one reads up to version {format_version}; upgrade npspeech"
        )
    if _digest(meta_bytes, arrays) != stored_digest:
        raise ModelFileError(
            f"{path}: {what} failed its integrity check (SHA-256 mismatch): "
            "the file was modified or damaged after it was written"
        )
    return meta, arrays


# -- model files -----------------------------------------------------------------------


def save(path: str | os.PathLike, model: ModelFile) -> Path:
    """Write ``model`` to ``path`` atomically; returns the path."""
    network = model.network
    if network.n_classes != model.alphabet.n_classes:
        raise ConfigError(
            f"the network has {network.n_classes} outputs but the alphabet needs "
            f"{model.alphabet.n_classes} (labels + blank)"
        )
    from .quantize import SCHEME, QuantizedNetwork

    quantized = (
        tuple(network.quantized) if isinstance(network, QuantizedNetwork) else ()
    )
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": to_dict(network.config),
        "features": to_dict(model.features),
        "alphabet": list(model.alphabet.labels),
        "sample_rate": model.features.sample_rate,
        "n_input": network.n_input,
        "n_classes": network.n_classes,
        "training": model.training,
    }
    arrays = {f"params/{name}": value for name, value in network.params.items()}
    arrays.update({f"state/{name}": value for name, value in network.state.items()})
    if quantized:
        from .quantize import output_axis, quantize_columns

        meta["weights"] = {"scheme": SCHEME, "quantized": list(quantized)}
        for name in quantized:
            # the params hold q * scale, from which q and scale come back exactly
            q, scale = quantize_columns(network.params[name], output_axis(name))
            arrays[f"params/{name}"] = q
            arrays[f"scales/{name}"] = scale
    return save_archive(path, meta, arrays)


def load(path: str | os.PathLike) -> ModelFile:
    """Read a model file written by :func:`save`.

    Raises
    ------
    ModelFileError
        For a missing, truncated, foreign, newer or modified file, or one whose contents
        do not describe a consistent model (the message says which).
    """
    path = Path(path)
    meta, arrays = load_archive(
        path, format_name=FORMAT_NAME, format_version=FORMAT_VERSION, what="model file"
    )
    try:
        config = from_dict(ModelConfig, meta["model"], where="model")
        features = from_dict(FeatureConfig, meta["features"], where="features")
        alphabet = Alphabet(meta["alphabet"])
        n_input, n_classes = int(meta["n_input"]), int(meta["n_classes"])
        training = dict(meta.get("training") or {})
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise ModelFileError(
            f"{path}: model file metadata is incomplete ({error})"
        ) from None
    except Exception as error:  # AlphabetError and friends: still a broken file
        raise ModelFileError(
            f"{path}: model file metadata is invalid ({error})"
        ) from None
    params = {
        name[len("params/") :]: a
        for name, a in arrays.items()
        if name.startswith("params/")
    }
    state = {
        name[len("state/") :]: a
        for name, a in arrays.items()
        if name.startswith("state/")
    }
    network = Network(config, n_input, n_classes, params, state)
    if meta["format_version"] >= 2 and meta.get("weights") is not None:
        network = _dequantized(path, meta["weights"], network, arrays)
    else:
        for name, array in params.items():
            if not np.issubdtype(array.dtype, np.floating):
                raise ModelFileError(
                    f"{path}: parameter {name} is {array.dtype}, not a float array, "
                    "and the file records no quantisation"
                )
    _check_shapes(path, network)
    return ModelFile(network, features, alphabet, training)


def _dequantized(path: Path, weights: Any, network: Network, arrays: dict):
    """The :class:`~npspeech.quantize.QuantizedNetwork` of an int8 file: each
    quantised param ``q * scale`` in float32 (see :mod:`npspeech.quantize`)."""
    from .quantize import SCHEME, QuantizedNetwork, dequantize, output_axis

    if not isinstance(weights, dict) or weights.get("scheme") != SCHEME:
        scheme = weights.get("scheme") if isinstance(weights, dict) else weights
        raise ModelFileError(
            f"{path}: unknown weight quantisation {scheme!r} (this npspeech reads "
            f"{SCHEME!r})"
        )
    names = weights.get("quantized")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{path}: weights.quantized must be a list of names")
    params = dict(network.params)
    for name in names:
        q, scale = params.get(name), arrays.get(f"scales/{name}")
        if q is None or scale is None:
            raise ModelFileError(
                f"{path}: int8 parameter {name} or its scales/{name} is missing"
            )
        axis = output_axis(name)
        if (
            q.dtype != np.int8
            or scale.dtype != np.float32
            or scale.shape != (q.shape[axis],)
        ):
            raise ModelFileError(
                f"{path}: int8 parameter {name} ({q.dtype} {q.shape}) does not match "
                f"its scales ({scale.dtype} {scale.shape})"
            )
        params[name] = dequantize(q, scale, axis)
    return QuantizedNetwork(
        network.config,
        network.n_input,
        network.n_classes,
        params,
        network.state,
        quantized=tuple(sorted(names)),
    )


def _check_shapes(path: Path, network: Network) -> None:
    """The stored arrays must be exactly those the architecture defines."""
    from .models import init

    try:
        # Shapes only: a float64 init of the same config would cost as much as float32.
        reference = init(
            network.config,
            network.n_input,
            network.n_classes,
            np.random.default_rng(0),
            dtype=np.float32,
        )
    except ConfigError as error:
        raise ModelFileError(
            f"{path}: model file describes an invalid model ({error})"
        ) from None
    for kind, stored, expected in (
        ("parameter", network.params, reference.params),
        ("state", network.state, reference.state),
    ):
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        if missing or extra:
            raise ModelFileError(
                f"{path}: {kind} arrays do not match the architecture "
                f"(missing {missing[:5]}, unexpected {extra[:5]})"
            )
        for name, array in stored.items():
            if array.shape != expected[name].shape:
                raise ModelFileError(
                    f"{path}: {kind} {name} has shape {array.shape}, "
                    f"the architecture needs {expected[name].shape}"
                )
