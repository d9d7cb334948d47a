"""What every importer shares: audio conversion, the parallel map, CSVs and the report.

An importer (one module per corpus layout) only finds the corpus's rows: it returns
:class:`Item` records (an utterance: its source audio, raw transcript and split) and the
:class:`Problem` records of what it could not pair up. :func:`run_import` does the rest:

1. normalises each transcript to the alphabet (:mod:`.normalize`); a row whose text
   cannot be spelled, or is empty, is reported;
2. converts the audio to 16 kHz mono 16-bit WAV under ``DEST/wav/`` in a process pool
   with a progress bar, skipping outputs that are already complete (so a re-run
   converts nothing and an interrupted import resumes); a source that cannot be decoded
   is reported with its path and the rest continue;
3. reports rows whose transcript needs more CTC frames than their audio gives (npspeech
   would refuse them at training time);
4. writes one DeepSpeech CSV per split (``wav_filename,wav_filesize,transcript``, paths
   relative to ``DEST``) and ``DEST/import_report.csv`` listing every unusable row,
   each file atomically (temporary file + rename).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile
from tqdm.auto import tqdm

from npspeech import audio
from npspeech.alphabet import Alphabet
from npspeech.config import FeatureConfig
from npspeech.corpus import CSV_COLUMNS, ctc_min_frames, feature_frames
from npspeech.errors import AlphabetError, AudioError, DataError
from npspeech.fileio import write_atomically, write_text_atomically

from .normalize import normalize_transcript

SAMPLE_RATE = 16_000  # Hz; what DeepSpeech-style English models expect
REPORT_NAME = "import_report.csv"
REPORT_COLUMNS = ("split", "source", "kind", "message")
WAV_FOLDER = "wav"
# Suffixes libsndfile reads only from some version on (MP3 from 1.1), with the
# soundfile format name that says it can; where it cannot, PyAV (``av``) decodes them.
_PYAV_FORMATS = {".mp3": "MP3"}
# Bytes of the canonical PCM WAV header soundfile writes: RIFF + fmt (16) + data.
_WAV_HEADER_BYTES = 44


@dataclasses.dataclass(frozen=True)
class Item:
    """One utterance an importer found."""

    key: str  # output name without suffix, "/"-separated, unique in the corpus
    split: str  # the CSV it goes to: "train", "dev-clean", ...
    audio: Path  # the source audio file
    transcript: str  # as the corpus writes it (normalised later)
    source: str  # where the row comes from, for the report: "train.tsv:12", a path


@dataclasses.dataclass(frozen=True)
class Problem:
    """A row that cannot be used, and why."""

    split: str
    source: str  # the file (and line) at fault
    # missing_audio, missing_transcript, unreadable_audio, unreadable_transcript,
    # unknown_characters, empty_transcript, transcript_too_long, duplicate
    kind: str
    message: str


@dataclasses.dataclass
class Found:
    """What an importer found in a corpus folder."""

    items: list[Item]
    problems: list[Problem]
    splits: list[str]  # the splits the corpus defines, each gets a CSV


@dataclasses.dataclass
class ImportResult:
    """What an import did, for the summary line and for tests."""

    destination: Path
    rows: dict[str, int]  # usable rows per split (the CSVs written)
    problems: list[Problem]
    converted: int = 0  # audio files converted in this run
    reused: int = 0  # complete outputs from an earlier run, left as they were

    def summary(self) -> str:
        """One line: rows per split, files converted and reused, problems by kind."""
        splits = ", ".join(f"{split} {count}" for split, count in self.rows.items())
        line = (
            f"imported {sum(self.rows.values())} rows ({splits or 'none'}) into "
            f"{self.destination}; converted {self.converted} audio files, reused "
            f"{self.reused}"
        )
        if not self.problems:
            return line + "; no unusable rows"
        kinds = Counter(problem.kind for problem in self.problems)
        listed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        report = self.destination / REPORT_NAME
        return f"{line}; skipped {len(self.problems)} rows ({listed}), see {report}"


# -- seeded splits ---------------------------------------------------------------------
def seeded_split(
    keys: Iterable[str], seed: int, dev_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Assign each key to ``train``, ``dev`` or ``test``, reproducibly.

    Keys are ordered by a SHA-256 hash of ``"{seed}:{key}"`` (the same on every machine
    and Python version, unlike ``hash``); the first ``round(n * test_fraction)`` go to
    test, the next ``round(n * dev_fraction)`` to dev, the rest to train. With at least
    three keys a non-zero fraction gets at least one. A key keeps its split when others
    are added unless the cut points move past it.
    """
    for name, value in (
        ("dev_fraction", dev_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise DataError(f"{name} must be in [0, 1), got {value}")
    if dev_fraction + test_fraction >= 1.0:
        raise DataError(
            f"dev_fraction + test_fraction must leave rows for training, got "
            f"{dev_fraction} + {test_fraction}"
        )
    ordered = sorted(
        set(keys), key=lambda key: hashlib.sha256(f"{seed}:{key}".encode()).digest()
    )
    n = len(ordered)

    def count(fraction: float) -> int:
        wanted = round(n * fraction)
        return max(wanted, 1) if fraction > 0 and n >= 3 else wanted

    n_test, n_dev = count(test_fraction), count(dev_fraction)
    splits = {}
    for index, key in enumerate(ordered):
        if index < n_test:
            splits[key] = "test"
        elif index < n_test + n_dev:
            splits[key] = "dev"
        else:
            splits[key] = "train"
    return splits


# -- audio conversion ------------------------------------------------------------------
def load_source(path: Path) -> np.ndarray:
    """Decode ``path`` to float32 mono at 16 kHz, shape ``(N,)``.

    libsndfile (through :func:`npspeech.audio.load`) reads WAV, FLAC, OGG and, from
    version 1.1, MP3. Where it lacks the file's format, PyAV (``pip install av``)
    decodes it.

    Raises
    ------
    AudioError
        Naming the file when it cannot be decoded.
    """
    needed = _PYAV_FORMATS.get(path.suffix.lower(), "")
    if needed == "" or needed in soundfile.available_formats():
        return audio.load(path, sample_rate=SAMPLE_RATE)
    return _load_with_pyav(path)


def _load_with_pyav(path: Path) -> np.ndarray:
    try:
        import av  # only for formats this libsndfile cannot read
    except ImportError:
        raise AudioError(
            f"{path}: libsndfile {soundfile.__libsndfile_version__} cannot read "
            f"{path.suffix} files; install PyAV (pip install av) to decode them"
        ) from None
    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's buffer
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise AudioError(f"{path}: unreadable or corrupt audio ({error})") from None
    if not chunks:
        raise AudioError(f"{path}: holds no samples")
    signal = np.concatenate(chunks).astype(np.float32, copy=False)  # (N,)
    audio.check_finite_samples(signal, str(path))
    return signal


def to_int16(signal: np.ndarray) -> np.ndarray:
    """float32 samples in [-1, 1) to int16 (times 32768, rounded, clipped), ``(N,)``."""
    scaled = np.rint(np.asarray(signal, dtype=np.float32) * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def wav_is_complete(path: Path) -> bool:
    """Whether ``path`` is a whole 16 kHz mono 16-bit PCM WAV file.

    Reads the RIFF header only: the RIFF size must match the file's length, the format
    must be PCM 16-bit mono at 16 kHz, and the data chunk must fit the file. A file cut
    short by an interruption (or written by something else) fails, and is converted
    again.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(4096)
    except OSError:
        return False
    if size < _WAV_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return False
    if struct.unpack_from("<I", header, 4)[0] + 8 != size:
        return False
    position, format_ok = 12, False
    while position + 8 <= len(header):
        chunk = header[position : position + 4]
        (length,) = struct.unpack_from("<I", header, position + 4)
        body = position + 8
        if chunk == b"fmt ":
            if body + 16 > len(header):
                return False
            tag, channels, rate = struct.unpack_from("<HHI", header, body)
            bits = struct.unpack_from("<H", header, body + 14)[0]
            format_ok = (tag, channels, rate, bits) == (1, 1, SAMPLE_RATE, 16)
        elif chunk == b"data":
            return format_ok and length % 2 == 0 and body + length <= size
        position = body + length + (length % 2)  # chunks are padded to even sizes
    return False


def convert_one(task: tuple[str, str]) -> tuple[str, int, int, str]:
    """Convert one source file to a 16 kHz mono int16 WAV, unless already done.

    Runs in a worker process, so it takes and returns plain values.

    Parameters
    ----------
    task
        ``(source path, output path)``.

    Returns
    -------
    status, n_samples, size, error
        ``status`` is ``"converted"``, ``"reused"`` (a complete output was there) or
        ``"failed"`` (``error`` says why, naming the source); ``n_samples`` at 16 kHz
        and ``size`` in bytes describe the output.
    """
    source, output = Path(task[0]), Path(task[1])
    if wav_is_complete(output):
        frames = soundfile.info(str(output)).frames
        return "reused", int(frames), output.stat().st_size, ""
    try:
        samples = to_int16(load_source(source))  # (N,) int16
    except AudioError as error:
        return "failed", 0, 0, str(error)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    write_atomically(output, lambda handle: handle.write(data))
    return "converted", int(samples.size), len(data), ""


def parallel_map(
    function: Callable, tasks: Sequence, jobs: int, progress: bool, what: str
) -> list:
    """``[function(task) for task in tasks]`` over ``jobs`` processes, in order.

    ``jobs == 1`` runs in this process (no pool to start, easier to debug). A tqdm bar
    counts finished tasks.
    """
    bar = tqdm(total=len(tasks), desc=what, unit="file", disable=not progress)
    try:
        if jobs <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(function(task))
                bar.update()
            return results
        # Chunks amortise the inter-process round trip over several short files while
        # keeping the bar moving; every worker gets about four chunks.
        chunksize = max(1, min(64, len(tasks) // (jobs * 4)))
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            results = []
            for result in pool.map(function, tasks, chunksize=chunksize):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()


# -- the import ------------------------------------------------------------------------
def output_path(destination: Path, key: str) -> Path:
    """Where the WAV of ``key`` goes: ``DEST/wav/<key>.wav``."""
    return destination / WAV_FOLDER / (key + ".wav")


def run_import(
    items: Sequence[Item],
    problems: Sequence[Problem],
    destination: str | os.PathLike,
    alphabet: Alphabet,
    *,
    jobs: int = 1,
    progress: bool = True,
    splits: Sequence[str] = (),
) -> ImportResult:
    """Normalise, convert and write the CSVs and report for what an importer found.

    Parameters
    ----------
    items
        The utterances, in the order the CSVs list them.
    problems
        Rows the importer already found unusable (unpaired files, bad lines).
    destination
        The output folder; created if needed.
    alphabet
        Transcripts are normalised to it; rows it cannot spell are reported.
    jobs
        Worker processes for the audio conversion.
    progress
        Show a progress bar.
    splits
        Splits to write a CSV for even when no usable row is left in them (so a CSV of
        an earlier run is never left stale).
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(destination)
    problems = list(problems)
    wanted: list[tuple[Item, str]] = []
    seen: dict[tuple[str, str], str] = {}
    for item in items:
        if (item.split, item.key) in seen:
            message = f"same utterance as {seen[item.split, item.key]}"
            problems.append(Problem(item.split, item.source, "duplicate", message))
            continue
        seen[item.split, item.key] = item.source
        try:
            text = normalize_transcript(item.transcript, alphabet)
        except AlphabetError as error:
            problems.append(
                Problem(item.split, item.source, "unknown_characters", str(error))
            )
            continue
        if not text:
            message = f"no words left in transcript {item.transcript!r}"
            problems.append(
                Problem(item.split, item.source, "empty_transcript", message)
            )
            continue
        wanted.append((item, text))

    # One conversion per output file: Common Voice lists a clip in train.tsv and in
    # validated.tsv, and both rows point at the same WAV.
    outputs = list(
        dict.fromkeys(str(output_path(destination, i.key)) for i, _ in wanted)
    )
    sources = {str(output_path(destination, i.key)): str(i.audio) for i, _ in wanted}
    results = parallel_map(
        convert_one,
        [(sources[output], output) for output in outputs],
        jobs,
        progress,
        "converting audio",
    )
    by_output = {output: results[i] for i, output in enumerate(outputs)}
    statuses = Counter(status for status, *_ in results)

    feature_config = FeatureConfig()
    rows: dict[str, list[tuple[str, int, str]]] = {split: [] for split in splits}
    for item, text in wanted:
        output = output_path(destination, item.key)
        status, n_samples, size, error = by_output[str(output)]
        if status == "failed":
            problems.append(Problem(item.split, item.source, "unreadable_audio", error))
            continue
        needed = ctc_min_frames(alphabet.encode(text))
        frames = feature_frames(n_samples, SAMPLE_RATE, feature_config)
        if needed > frames:
            message = (
                f"{n_samples / SAMPLE_RATE:.2f} s of audio gives {frames} feature "
                f"frames, the transcript {text!r} needs {needed} under CTC"
            )
            problems.append(
                Problem(item.split, item.source, "transcript_too_long", message)
            )
            continue
        relative = output.relative_to(destination).as_posix()
        rows.setdefault(item.split, []).append((relative, size, text))

    for split, split_rows in rows.items():
        write_csv(destination / f"{split}.csv", split_rows)
    write_report(destination / REPORT_NAME, problems)
    return ImportResult(
        destination,
        {split: len(split_rows) for split, split_rows in rows.items()},
        problems,
        converted=statuses["converted"],
        reused=statuses["reused"],
    )


def write_csv(path: Path, rows: Iterable[tuple[str, int, str]]) -> None:
    """A DeepSpeech CSV of ``(wav_filename, wav_filesize, transcript)`` rows,
    atomically.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())


def write_report(path: Path, problems: Sequence[Problem]) -> None:
    """``split,source,kind,message`` for every unusable row, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for problem in problems:
        writer.writerow(dataclasses.astuple(problem))
    write_text_atomically(path, buffer.getvalue())


def _remove_stale_temporaries(destination: Path) -> None:
    """Delete temporary files an interrupted run left (``write_atomically`` names them
    ``.NAME.XXXX.tmp``); the outputs they were for are written again.
    """
    for temporary in destination.rglob(".*.tmp"):
        if temporary.is_file():
            temporary.unlink(missing_ok=True)


def read_text(path: Path) -> str:
    """A transcript file's text (UTF-8, a byte-order mark allowed), stripped.

    Raises
    ------
    DataError
        Naming the file when it is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None


def require_folder(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a :class:`DataError` naming what was
    expected.
    """
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; expected {what}")
    return path
