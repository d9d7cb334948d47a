"""Scorer files: recognise every kind of language-model file; npspeech's own package.

:func:`open_scorer` recognises four kinds of file by their first bytes:

- ``"arpa"``: an ARPA text model (optionally gzip-compressed); its vocabulary is read
  from the 1-grams, less ``<s>``, ``</s>`` and ``<unk>``;
- ``"kenlm_binary"``: a KenLM binary without a scorer header after the model (its
  vocabulary is read when a trie model stores its word strings);
- ``"deepspeech"``: a DeepSpeech v6 ``.scorer`` (see :mod:`npspeech.decoder.ds_scorer`);
- ``"npspeech"``: npspeech's scorer package, below.

npspeech scorer package (``.npscorer``), all integers little-endian:

======  ===========  ================================================================
offset  type         field
======  ===========  ================================================================
0       8 bytes      magic ``NPSCORER``
8       uint32       format version (1)
12      uint32       reserved, 0
16      uint64       ``M``: length of the JSON metadata in bytes
24      uint64       ``N``: length of the language model in bytes
32      M bytes      metadata, UTF-8 JSON (below)
...     0-7 bytes    zero padding to a multiple of 8
32+M+p  N bytes      the language model, an ARPA text or a KenLM binary, byte for byte
======  ===========  ================================================================

Metadata keys: ``lm_format`` (``"arpa"`` or ``"kenlm_binary"``), ``order``, ``alpha``,
``beta`` (null when not tuned), ``vocabulary`` (list of words or null), ``is_utf8``,
``lm_sha256`` (hex digest of the LM bytes) and ``created_by``. Nothing is unpickled.

KenLM opens models by file name, so the LM of a package is copied once into a cache
folder (``$NPSPEECH_CACHE_DIR``, else ``$XDG_CACHE_HOME/npspeech``, else
``~/.cache/npspeech``) under its SHA-256 and ``ScorerFile.language_model_path`` points
there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .. import __version__
from ..alphabet import Alphabet
from ..decoder import ds_scorer
from ..errors import ScorerError
from ..fileio import write_atomically

PACKAGE_MAGIC = b"NPSCORER"
PACKAGE_VERSION = 1
PACKAGE_SUFFIX = ".npscorer"
_PACKAGE_HEADER = struct.Struct("<8sIIQQ")  # magic, version, reserved, M, N: 32 bytes
_GZIP_MAGIC = b"\x1f\x8b"
_ARPA_SPECIAL_WORDS = frozenset({"<s>", "</s>", "<unk>"})
_COPY_CHUNK = 1 << 22
SCORER_KINDS = ("arpa", "kenlm_binary", "deepspeech", "npspeech")


@dataclass(frozen=True)
class ScorerFile:
    """What a language-model file holds, as :func:`open_scorer` found it.

    Attributes
    ----------
    path : Path
        The file that was opened.
    kind : str
        ``"arpa"``, ``"kenlm_binary"``, ``"deepspeech"`` or ``"npspeech"``.
    language_model_path : Path
        A file ``kenlm.Model`` can load: ``path`` itself except for npspeech packages,
        whose LM is copied to the cache.
    alpha, beta : float or None
        Language-model weight and word bonus stored in the file (None where the kind
        cannot hold them or they were never tuned).
    vocabulary : tuple of str or None
        The words of the model (sorted), None when the file does not list them.
    is_utf8 : bool
        True for DeepSpeech scorers built in UTF-8 byte mode.
    order : int or None
        Highest n-gram order of the language model, where the header says it.
    """

    path: Path
    kind: str
    language_model_path: Path
    alpha: float | None
    beta: float | None
    vocabulary: tuple[str, ...] | None
    is_utf8: bool
    order: int | None = None

    @property
    def vocabulary_is_the_lms(self) -> bool:
        """Whether ``vocabulary`` was read from the language model itself (ARPA 1-grams,
        a KenLM binary's word strings), so that it lists every word the LM knows."""
        return self.vocabulary is not None and self.kind in ("arpa", "kenlm_binary")


# --- recognising files ----------------------------------------------------------------
def open_scorer(
    path: str | os.PathLike, alphabet: Alphabet | None = None
) -> ScorerFile:
    """Recognise and read a language-model file of any supported kind.

    Parameters
    ----------
    path
        An ARPA file (plain or ``.gz``), a KenLM binary, a DeepSpeech ``.scorer`` or an
        npspeech scorer package.
    alphabet
        Spells a DeepSpeech scorer's lexicon labels; DeepSpeech's English alphabet when
        None. Ignored by the other kinds.

    Raises
    ------
    ScorerError
        Naming the file and the problem: missing, unrecognised, wrong magic or version,
        truncated or corrupt.
    """
    path = Path(path)
    prefix = _read_prefix(path, 64)
    if prefix.startswith(PACKAGE_MAGIC):
        return _open_package(path)
    if ds_scorer.is_kenlm_binary(prefix):
        with open(path, "rb") as handle:
            header = ds_scorer.read_kenlm_header(handle, path)
            size = os.fstat(handle.fileno()).st_size
            trie_offset = ds_scorer.find_scorer_header(handle, header, size, path)
            words = None
            if trie_offset is None:
                words = ds_scorer.read_kenlm_vocabulary(handle, header, path)
        if trie_offset is None:
            return ScorerFile(
                path, "kenlm_binary", path, None, None, words, False, header.order
            )
        scorer = ds_scorer.read_deepspeech_scorer(path, alphabet)
        return ScorerFile(
            path=path,
            kind="deepspeech",
            language_model_path=path,
            alpha=scorer.alpha,
            beta=scorer.beta,
            vocabulary=scorer.vocabulary,
            is_utf8=scorer.is_utf8,
            order=header.order,
        )
    if prefix.startswith(_GZIP_MAGIC) or prefix.lstrip().startswith(b"\\data\\"):
        order, vocabulary = read_arpa_vocabulary(path)
        return ScorerFile(path, "arpa", path, None, None, vocabulary, False, order)
    raise ScorerError(
        f"{path}: not a language model: expected an ARPA file, a KenLM binary, a "
        f"DeepSpeech .scorer or an npspeech package, found bytes {prefix[:16]!r}"
    )


def _read_prefix(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except FileNotFoundError:
        raise ScorerError(f"{path}: language model file not found") from None
    except IsADirectoryError:
        raise ScorerError(
            f"{path}: is a directory, not a language model file"
        ) from None
    except OSError as error:
        raise ScorerError(f"{path}: cannot read ({error.strerror})") from None


# --- ARPA -----------------------------------------------------------------------------
def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_arpa_vocabulary(path: str | os.PathLike) -> tuple[int, tuple[str, ...]]:
    """Order and sorted vocabulary (no ``<s>``, ``</s>``, ``<unk>``) of an ARPA file.

    Reads the ``\\data\\`` counts and the ``\\1-grams:`` section only.

    Raises
    ------
    ScorerError
        Naming the file and line when the header or a 1-gram line is malformed, or the
        number of 1-grams differs from the header's count.
    """
    path = Path(path)
    counts: dict[int, int] = {}
    words: list[str] = []
    state = "start"
    try:
        with _open_text(path) as text:
            for line_number, line in enumerate(text, start=1):
                line = line.strip()
                if state == "start":
                    if line == "\\data\\":
                        state = "counts"
                    elif line:
                        raise ScorerError(f"{path}:{line_number}: expected '\\data\\'")
                elif state == "counts":
                    if line.startswith("ngram "):
                        order_text, _, count_text = line[6:].partition("=")
                        try:
                            counts[int(order_text)] = int(count_text)
                        except ValueError:
                            raise ScorerError(
                                f"{path}:{line_number}: malformed count line {line!r}"
                            ) from None
                    elif line == "\\1-grams:":
                        state = "unigrams"
                    elif line:
                        raise ScorerError(
                            f"{path}:{line_number}: unexpected {line[:40]!r}"
                        )
                elif state == "unigrams":
                    if not line:
                        continue
                    if line.startswith("\\"):
                        break
                    fields = line.split()
                    if len(fields) not in (2, 3):
                        raise ScorerError(
                            f"{path}:{line_number}: malformed 1-gram line {line[:60]!r}"
                        )
                    words.append(fields[1])
    except UnicodeDecodeError as error:
        raise ScorerError(f"{path}: not UTF-8 text ({error})") from None
    except (OSError, EOFError) as error:
        raise ScorerError(f"{path}: cannot read ARPA file ({error})") from None
    if not counts:
        raise ScorerError(f"{path}: no '\\data\\' section with ngram counts")
    if sorted(counts) != list(range(1, len(counts) + 1)):
        raise ScorerError(f"{path}: ngram orders {sorted(counts)} are not 1..N")
    if len(words) != counts[1]:
        raise ScorerError(
            f"{path}: header announces {counts[1]} 1-grams, "
            f"the section holds {len(words)}"
        )
    vocabulary = tuple(sorted(set(words) - _ARPA_SPECIAL_WORDS))
    return len(counts), vocabulary


# --- npspeech packages ----------------------------------------------------------------
@dataclass(frozen=True)
class PackageLayout:
    """Where the parts of an npspeech package lie.

    Attributes
    ----------
    metadata : dict
        The decoded JSON metadata.
    lm_offset : int
        Byte offset of the language model.
    lm_length : int
        Its length in bytes.
    """

    metadata: dict[str, Any]
    lm_offset: int
    lm_length: int


def read_package(path: str | os.PathLike) -> PackageLayout:
    """Read and check the header and metadata of an npspeech scorer package.

    Raises
    ------
    ScorerError
        Wrong magic, a newer format version, malformed metadata, or a file shorter than
        its header says.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ScorerError(f"{path}: scorer package not found") from None
    except OSError as error:
        raise ScorerError(f"{path}: cannot read ({error.strerror})") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        raw = handle.read(_PACKAGE_HEADER.size)
        if len(raw) < _PACKAGE_HEADER.size:
            raise ScorerError(
                f"{path}: truncated npspeech scorer header ({len(raw)} bytes)"
            )
        magic, version, _reserved, metadata_length, lm_length = _PACKAGE_HEADER.unpack(
            raw
        )
        if magic != PACKAGE_MAGIC:
            raise ScorerError(
                f"{path}: wrong magic {magic!r}, expected {PACKAGE_MAGIC!r}"
            )
        if version != PACKAGE_VERSION:
            raise ScorerError(
                f"{path}: npspeech scorer format version {version}; "
                f"this npspeech reads version {PACKAGE_VERSION}"
            )
        lm_offset = _align8(_PACKAGE_HEADER.size + metadata_length)
        if lm_offset + lm_length > size:
            raise ScorerError(
                f"{path}: truncated: header announces {lm_offset + lm_length} bytes, "
                f"the file has {size}"
            )
        raw_metadata = handle.read(metadata_length)
    try:
        metadata = json.loads(raw_metadata.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ScorerError(f"{path}: corrupt metadata ({error})") from None
    if not isinstance(metadata, dict):
        raise ScorerError(f"{path}: corrupt metadata (not a JSON object)")
    _check_metadata(metadata, path)
    return PackageLayout(metadata=metadata, lm_offset=lm_offset, lm_length=lm_length)


def _check_metadata(metadata: dict[str, Any], path) -> None:
    if metadata.get("lm_format") not in ("arpa", "kenlm_binary"):
        raise ScorerError(
            f"{path}: metadata lm_format {metadata.get('lm_format')!r} unknown"
        )
    for key in ("alpha", "beta"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, (int, float)):
            raise ScorerError(f"{path}: metadata {key} is {value!r}, not a number")
    vocabulary = metadata.get("vocabulary")
    if vocabulary is not None and not (
        isinstance(vocabulary, list) and all(isinstance(w, str) for w in vocabulary)
    ):
        raise ScorerError(f"{path}: metadata vocabulary is not a list of words")
    if not isinstance(metadata.get("lm_sha256"), str):
        raise ScorerError(f"{path}: metadata lacks lm_sha256")


def _align8(value: int) -> int:
    return (value + 7) // 8 * 8


def cache_dir() -> Path:
    """Folder where package LMs are unpacked for KenLM (created on demand)."""
    override = os.environ.get("NPSPEECH_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "npspeech"


def _open_package(path: Path) -> ScorerFile:
    layout = read_package(path)
    metadata = layout.metadata
    lm_path = _unpacked_language_model(path, layout)
    vocabulary = metadata.get("vocabulary")
    alpha, beta = metadata.get("alpha"), metadata.get("beta")
    return ScorerFile(
        path=path,
        kind="npspeech",
        language_model_path=lm_path,
        alpha=None if alpha is None else float(alpha),
        beta=None if beta is None else float(beta),
        vocabulary=None if vocabulary is None else tuple(vocabulary),
        is_utf8=bool(metadata.get("is_utf8", False)),
        order=metadata.get("order"),
    )


def _unpacked_language_model(path: Path, layout: PackageLayout) -> Path:
    """The package's LM as a file of its own in the cache, its SHA-256 checked once."""
    digest = layout.metadata["lm_sha256"]
    suffix = ".arpa" if layout.metadata["lm_format"] == "arpa" else ".klm"
    folder = cache_dir() / "lm"
    target = folder / f"{digest}{suffix}"
    if target.is_file() and target.stat().st_size == layout.lm_length:
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScorerError(
            f"{path}: cannot create the cache folder {folder} ({error.strerror}); "
            "set NPSPEECH_CACHE_DIR"
        ) from None
    hasher = hashlib.sha256()

    def write(handle: BinaryIO) -> None:
        with open(path, "rb") as source:
            source.seek(layout.lm_offset)
            remaining = layout.lm_length
            while remaining:
                block = source.read(min(_COPY_CHUNK, remaining))
                if not block:
                    raise ScorerError(f"{path}: truncated language model")
                hasher.update(block)
                handle.write(block)
                remaining -= len(block)
        if hasher.hexdigest() != digest:
            raise ScorerError(
                f"{path}: corrupt: the language model's SHA-256 does not match "
                "its metadata"
            )

    write_atomically(target, write)
    return target


def write_package(
    destination: str | os.PathLike,
    language_model: str | os.PathLike,
    alpha: float | None = None,
    beta: float | None = None,
    vocabulary: Iterable[str] | None = None,
    alphabet: Alphabet | None = None,
) -> Path:
    """Write an npspeech scorer package around an ARPA file or a KenLM binary.

    Parameters
    ----------
    destination
        The package to write (atomically: a temporary file renamed into place).
    language_model
        An ARPA file (plain text) or a KenLM binary; a DeepSpeech ``.scorer`` is
        accepted too (KenLM reads its model and ignores the lexicon), and lends its
        vocabulary and its alpha/beta where these arguments are None.
    alpha, beta
        Language-model weight and word bonus, or None when not tuned yet.
    vocabulary
        The words; by default the ARPA 1-grams or the DeepSpeech lexicon, else None.
    alphabet
        Spells a DeepSpeech scorer's lexicon (English by default).

    Returns
    -------
    Path
        ``destination``.
    """
    destination = Path(destination)
    source = open_scorer(language_model, alphabet)
    if source.kind == "npspeech":
        raise ScorerError(
            f"{source.path}: already an npspeech package; use set_scorer_parameters"
        )
    if source.kind == "arpa" and _read_prefix(source.path, 2) == _GZIP_MAGIC:
        raise ScorerError(
            f"{source.path}: decompress a gzip ARPA file before packaging it"
        )
    if vocabulary is None:
        vocabulary = source.vocabulary
    if alpha is None and beta is None:
        alpha, beta = source.alpha, source.beta
    metadata = {
        "lm_format": "arpa" if source.kind == "arpa" else "kenlm_binary",
        "order": source.order,
        "alpha": None if alpha is None else float(alpha),
        "beta": None if beta is None else float(beta),
        "vocabulary": None if vocabulary is None else sorted(set(vocabulary)),
        "is_utf8": source.is_utf8,
        "lm_sha256": _sha256_of(source.path),
        "created_by": f"npspeech {__version__}",
    }
    _write_package_file(
        destination, metadata, source.path, 0, source.path.stat().st_size
    )
    return destination


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_COPY_CHUNK), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _write_package_file(
    destination: Path,
    metadata: dict[str, Any],
    lm_source: Path,
    lm_offset: int,
    lm_length: int,
) -> None:
    encoded = json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")
    header = _PACKAGE_HEADER.pack(
        PACKAGE_MAGIC, PACKAGE_VERSION, 0, len(encoded), lm_length
    )
    padding = _align8(len(header) + len(encoded)) - len(header) - len(encoded)

    def write(handle: BinaryIO) -> None:
        handle.write(header)
        handle.write(encoded)
        handle.write(b"\0" * padding)
        with open(lm_source, "rb") as source:
            source.seek(lm_offset)
            remaining = lm_length
            while remaining:
                block = source.read(min(_COPY_CHUNK, remaining))
                if not block:
                    raise ScorerError(f"{lm_source}: truncated while copying")
                handle.write(block)
                remaining -= len(block)

    write_atomically(destination, write)


def set_scorer_parameters(
    path: str | os.PathLike,
    alpha: float,
    beta: float,
    output: str | os.PathLike | None = None,
    alphabet: Alphabet | None = None,
) -> Path:
    """Store tuned alpha and beta in a scorer file.

    - npspeech package: the metadata is rewritten (LM bytes copied unchanged);
    - DeepSpeech ``.scorer``: a copy with the header's alpha/beta replaced;
    - ARPA or KenLM binary: these cannot hold parameters, so an npspeech package is
      written to ``output``, which is then required.

    Every write goes to a temporary file renamed into place. ``output`` defaults to
    ``path`` (rewritten in place).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if (
            not isinstance(value, (int, float))
            or value != value
            or abs(value) == float("inf")
        ):
            raise ScorerError(f"{name} must be a finite number, got {value!r}")
    prefix = _read_prefix(path, 64)
    if prefix.startswith(PACKAGE_MAGIC):
        layout = read_package(path)
        metadata = dict(layout.metadata, alpha=float(alpha), beta=float(beta))
        destination = Path(output) if output is not None else path
        _write_package_file(
            destination, metadata, path, layout.lm_offset, layout.lm_length
        )
        return destination
    kind = open_scorer(path, alphabet).kind
    if kind == "deepspeech":
        destination = Path(output) if output is not None else path
        return ds_scorer.write_deepspeech_scorer(path, destination, alpha, beta)
    if output is None or Path(output).resolve() == path.resolve():
        raise ScorerError(
            f"{path}: a {kind} file cannot hold alpha/beta; give an output path for an "
            f"npspeech package (e.g. {path.with_suffix(PACKAGE_SUFFIX).name})"
        )
    return write_package(output, path, alpha, beta, alphabet=alphabet)


def describe(scorer: ScorerFile) -> dict[str, Any]:
    """A JSON-ready summary of a scorer file (what ``npspeech lm info`` prints)."""
    return {
        "path": str(scorer.path),
        "kind": scorer.kind,
        "order": scorer.order,
        "alpha": scorer.alpha,
        "beta": scorer.beta,
        "vocabulary_size": None
        if scorer.vocabulary is None
        else len(scorer.vocabulary),
        "is_utf8": scorer.is_utf8,
        "language_model_path": str(scorer.language_model_path),
    }
