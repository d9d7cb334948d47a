"""Corpus CSVs and their validation, before any training starts.

- :func:`read_csvs` reads DeepSpeech corpus CSVs
  (``wav_filename,wav_filesize,transcript``, paths relative to each CSV's folder) into
  :class:`Utterance` rows.
- :func:`check_corpus` / :func:`validate_corpus` find every problem in the data (missing
  or unreadable audio, characters outside the alphabet, empty transcripts, transcripts
  too long for their audio under CTC) and report them at once, reading only audio
  headers so that thousands of files take seconds.

:mod:`npspeech.data` re-exports all of this beside the feature cache and batches.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile
from tqdm.auto import tqdm

from . import audio
from . import constants as C
from . import features as frontend
from .alphabet import Alphabet
from .config import FeatureConfig
from .errors import AlphabetError, AudioError, DataError

#: Columns every DeepSpeech corpus CSV has; others are ignored.
CSV_COLUMNS = ("wav_filename", "wav_filesize", "transcript")


# -- corpus CSVs -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Utterance:
    """One corpus CSV row."""

    audio_path: Path  # absolute, resolved relative to the CSV's folder
    transcript: str
    # "path/to/file.csv:LINE" for messages; LINE is the row's line in the file, the
    # header being line 1 (so the first data row is line 2).
    source: str
    size_bytes: int  # the wav_filesize column (DeepSpeech sorts by it)


def read_csvs(paths: Sequence[str | os.PathLike]) -> list[Utterance]:
    """Read DeepSpeech corpus CSVs, in order, into one list.

    Parameters
    ----------
    paths
        One or more CSVs with the columns ``wav_filename,wav_filesize,transcript``
        (extra columns are ignored). Relative audio paths are relative to the CSV's
        folder. An empty ``wav_filesize`` is taken from the file itself (0 when it is
        missing).

    Raises
    ------
    DataError
        For a missing or unreadable CSV, a header without the columns, or malformed
        rows; every malformed row of a file is listed with its line.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DataError("no corpus CSV given")
    utterances: list[Utterance] = []
    for path in paths:
        utterances.extend(_read_csv(Path(path)))
    return utterances


def _read_csv(path: Path) -> list[Utterance]:
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            rows = list(_numbered_rows(csv.reader(handle)))
    except FileNotFoundError:
        raise DataError(f"{path}: corpus CSV not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a corpus CSV") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from None
    if not rows:
        raise DataError(
            f"{path}: empty file, expected the header {','.join(CSV_COLUMNS)}"
        )
    header_line, header = rows[0]
    header = [name.strip() for name in header]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise DataError(
            f"{path}:{header_line}: header lacks column(s) {', '.join(missing)} "
            f"(found {','.join(header)}; DeepSpeech CSVs have {','.join(CSV_COLUMNS)})"
        )
    column = {name: header.index(name) for name in CSV_COLUMNS}
    folder = path.resolve().parent
    utterances, errors = [], []
    for line, row in rows[1:]:
        if not any(field.strip() for field in row):
            continue  # blank lines carry no row
        source = f"{path}:{line}"
        if len(row) != len(header):
            errors.append(
                f"{source}: {len(row)} fields where the header has {len(header)} "
                "(a transcript with a comma must be quoted)"
            )
            continue
        name = row[column["wav_filename"]].strip()
        if not name:
            errors.append(f"{source}: empty wav_filename")
            continue
        audio_path = (folder / name).resolve()
        size_text = row[column["wav_filesize"]].strip()
        if size_text == "":
            size = audio_path.stat().st_size if audio_path.is_file() else 0
        else:
            try:
                size = int(size_text)
            except ValueError:
                size = -1
            if size < 0:
                errors.append(
                    f"{source}: wav_filesize {size_text!r} is not a whole number "
                    "of bytes"
                )
                continue
        utterances.append(
            Utterance(audio_path, row[column["transcript"]], source, size)
        )
    if errors:
        raise DataError(_listing(f"{path}: {len(errors)} malformed row(s)", errors))
    return utterances


def _numbered_rows(reader) -> Iterator[tuple[int, list[str]]]:
    """Rows with the file line they end on (quoted fields may span lines)."""
    for row in reader:
        yield reader.line_num, row


def _listing(
    title: str, lines: Sequence[str], limit: int = C.MAX_LISTED_PROBLEMS
) -> str:
    """``title`` followed by up to ``limit`` indented lines and a count of the rest."""
    shown = [f"  {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join([title + ":"] + shown)


# -- corpus validation -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DataProblem:
    """One thing wrong with one corpus row."""

    source: str  # "file.csv:LINE" of the row
    # "missing_audio", "unreadable_audio", "empty_audio", "empty_transcript",
    # "unknown_characters" or "transcript_too_long"
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclasses.dataclass(frozen=True)
class _AudioInfo:
    """What an audio header says, or why it could not be read."""

    n_samples: int = 0
    sample_rate: int = 0
    problem: tuple[str, str] | None = None  # (kind, message)


def _probe(path: Path) -> _AudioInfo:
    """Read ``path``'s header only (no decoding)."""
    if not path.exists():
        return _AudioInfo(problem=("missing_audio", f"audio file {path} not found"))
    if not path.is_file():
        return _AudioInfo(problem=("unreadable_audio", f"{path} is not a file"))
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, TypeError) as error:
        # soundfile raises LibsndfileError (a RuntimeError) for unknown formats.
        message = f"audio file {path} cannot be read: {error}"
        return _AudioInfo(problem=("unreadable_audio", message))
    if info.frames <= 0 or info.samplerate <= 0:
        return _AudioInfo(
            problem=("empty_audio", f"audio file {path} holds no samples")
        )
    return _AudioInfo(n_samples=int(info.frames), sample_rate=int(info.samplerate))


def _probe_all(paths: Sequence[Path], progress: bool, what: str) -> list[_AudioInfo]:
    # One after another: libsndfile's open is cheap and the per-call Python overhead
    # holds the GIL, so threads measured slower here (benchmarks/bench_data.py).
    bar = tqdm(paths, desc=what, unit="file", disable=not progress)
    return [_probe(path) for path in bar]


def resampled_length(n_samples: int, from_rate: int, to_rate: int) -> int:
    """Samples after resampling ``n_samples`` from ``from_rate`` to ``to_rate`` Hz.

    ``ceil(n * to / from)``: the length a polyphase resampler returns.
    """
    if from_rate == to_rate:
        return n_samples
    return -(-n_samples * to_rate // from_rate)


def feature_frames(
    n_samples: int, sample_rate: int, feature_config: FeatureConfig
) -> int:
    """Feature frames of audio of ``n_samples`` at ``sample_rate`` Hz once resampled."""
    n = resampled_length(n_samples, sample_rate, feature_config.sample_rate)
    return int(frontend.n_frames(n, feature_config))


def ctc_min_frames(labels: np.ndarray) -> int:
    """Fewest frames CTC needs for ``(L,)`` labels: ``L`` plus one blank per repeat."""
    labels = np.asarray(labels)
    repeats = int(np.count_nonzero(labels[1:] == labels[:-1])) if labels.size else 0
    return int(labels.size) + repeats


def check_corpus(
    utterances: Sequence[Utterance],
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    *,
    progress: bool = True,
) -> tuple[list[Utterance], list[DataProblem], list[float]]:
    """Find every problem in a corpus, reading audio headers only.

    Parameters
    ----------
    utterances
        Rows from :func:`read_csvs`.
    alphabet
        The model's labels; transcripts must be spelled in them.
    feature_config
        Gives the frame rate, to check each transcript fits its audio under CTC.
    progress
        Show a tqdm progress bar while reading headers.

    Returns
    -------
    good
        The rows without problems, in order.
    problems
        Every problem found; a row can have several.
    durations
        Seconds of audio of each good row (same order as ``good``).
    """
    infos = _probe_all([u.audio_path for u in utterances], progress, "checking audio")
    good: list[Utterance] = []
    problems: list[DataProblem] = []
    durations: list[float] = []
    for utterance, info in zip(utterances, infos):
        found = _row_problems(utterance, info, alphabet, feature_config)
        if found:
            problems.extend(found)
        else:
            good.append(utterance)
            durations.append(info.n_samples / info.sample_rate)
    return good, problems, durations


def _row_problems(
    utterance: Utterance,
    info: _AudioInfo,
    alphabet: Alphabet,
    feature_config: FeatureConfig,
) -> list[DataProblem]:
    source, transcript = utterance.source, utterance.transcript
    problems = []
    if info.problem is not None:
        problems.append(DataProblem(source, *info.problem))
    labels = None
    if not transcript.strip():
        problems.append(DataProblem(source, "empty_transcript", "empty transcript"))
    else:
        try:
            labels = alphabet.encode(transcript)
        except AlphabetError:
            problems.append(_unknown_characters(source, transcript, alphabet))
    if labels is not None and info.problem is None:
        needed = ctc_min_frames(labels)
        frames = feature_frames(info.n_samples, info.sample_rate, feature_config)
        if needed > frames:
            seconds = info.n_samples / info.sample_rate
            message = (
                f"transcript too long for its audio under CTC: it needs {needed} "
                "frames (labels plus a blank between repeats) but "
                f"{seconds:.2f} s of audio gives {frames}"
            )
            problems.append(DataProblem(source, "transcript_too_long", message))
    return problems


def _unknown_characters(
    source: str, transcript: str, alphabet: Alphabet
) -> DataProblem:
    unknown = alphabet.unknown_characters(transcript)
    named = ", ".join(
        f"{character!r} (U+{ord(character):04X}) at {position}"
        for position, character in unknown[:10]
    )
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    message = f"characters not in the alphabet: {named}{more} in {transcript!r}"
    return DataProblem(source, "unknown_characters", message)


def validate_corpus(
    utterances: Sequence[Utterance],
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    *,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[list[Utterance], list[float]]:
    """:func:`check_corpus`, then fail on any problem, or skip the bad rows.

    Returns
    -------
    good, durations
        The usable rows and their durations in seconds.

    Raises
    ------
    DataError
        Listing every problem (the first ``MAX_LISTED_PROBLEMS`` spelled out, a count by
        kind for all) unless ``skip_bad``; with ``skip_bad``, only when no row is left.

    Warns
    -----
    UserWarning
        With ``skip_bad``, how many rows were skipped and why.
    """
    good, problems, durations = check_corpus(
        utterances, alphabet, feature_config, progress=progress
    )
    if problems:
        bad_rows = len(utterances) - len(good)
        counts = Counter(problem.kind for problem in problems)
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
        if not skip_bad:
            title = (
                f"{bad_rows} of {len(utterances)} corpus rows have problems "
                f"({summary}); fix them or skip them (skip_bad)"
            )
            raise DataError(_listing(title, [str(problem) for problem in problems]))
        warnings.warn(
            f"skipped {bad_rows} of {len(utterances)} corpus rows with problems "
            f"({summary})",
            stacklevel=2,
        )
    if not good:
        raise DataError(f"no usable rows among the {len(utterances)} in the corpus")
    return good, durations


def load_audio(utterance: Utterance, sample_rate: int) -> np.ndarray:
    """The utterance's audio at ``sample_rate`` Hz, ``(N,)`` float32.

    Raises
    ------
    AudioError
        Naming the utterance's CSV row when the audio cannot be loaded.
    """
    try:
        return audio.load(utterance.audio_path, sample_rate=sample_rate)
    except AudioError as error:
        raise AudioError(f"{utterance.source}: {error}") from None
