"""Batch transcription: find the inputs, decode them once each, and keep going past
bad ones.

``npspeech decode`` is a shell over this module:

- :func:`discover` turns command-line inputs into :class:`Source` items: audio files,
  folders (searched recursively for :data:`AUDIO_EXTENSIONS`), glob patterns, the rows
  of corpus CSVs, and ``-`` for 16-bit PCM on stdin (:func:`read_pcm`: a WAV file,
  recognised by its RIFF header, or raw little-endian samples at a given rate).
- :func:`transcribe_all` loads the model and its decoder once (once per worker process
  with ``jobs > 1``) and yields one :class:`Result` per source in input order. A file
  that cannot be decoded gives a Result holding the reason; the others still decode.
- :func:`output_paths` names one output file per input under a folder, refusing name
  clashes and (unless asked) existing files.
- :class:`Summary` counts files, failures, audio seconds and wall time.

Every call into the model goes through :func:`load_model` and
:func:`transcribe_source`, so the model class behind them changes in one line.
"""

from __future__ import annotations

import glob
import io
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import AudioError, ConfigError, NpspeechError, OutputError

#: File extensions a folder is searched for (lower case): what libsndfile reads.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
    | {".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"}
)
#: Characters that make a command-line input a glob pattern (when no such file exists).
GLOB_CHARACTERS = frozenset("*?[")
#: Audio sampled this much below the model's rate lacks the band the model was trained
#: on (8 kHz telephone audio holds nothing above 4 kHz): warn, as DeepSpeech's client
#: does for any rate other than the model's. Downsampling loses nothing the model uses.
LOW_RATE_RATIO = 0.9
#: The name stdin goes by in messages and under --output-dir.
STDIN_NAME = "-"
STDIN_OUTPUT_STEM = "stdin"
#: Thread counts of OpenMP, OpenBLAS/MKL and Numba, set in a worker process before they
#: load so that the workers of one machine share its cores instead of oversubscribing.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


@dataclass(frozen=True)
class Source:
    """One input to transcribe.

    Attributes
    ----------
    name
        How messages and multi-input outputs call it: the path as found, or ``-``.
    path
        The audio file; None for audio already read (stdin).
    output_stem
        Relative output name without extension (``--output-dir``): the file's stem, or
        its path under the folder or CSV it came from.
    samples
        float32 array, shape (N,): stdin's audio at ``sample_rate``.
    sample_rate
        Hz of ``samples``; 0 for the model's rate.
    problem
        Why the input gives no audio (a pattern that matches nothing, a folder without
        audio); reported as this input's failure.
    """

    name: str
    path: str | None = None
    output_stem: str = ""
    samples: Any = None
    sample_rate: int = 0
    problem: str = ""


@dataclass
class Result:
    """What decoding one source gave.

    Attributes
    ----------
    source : Source
    candidates : list of CandidateTranscript
        Best first; empty when the source failed.
    seconds : float
        Audio duration.
    warnings : list of str
        Messages for the user that do not stop the decode (an unusual sample rate).
    error : str
        Why the source failed ("" when it did not); names the file.
    """

    source: Source
    candidates: list = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str = ""


# -- inputs ----------------------------------------------------------------------------


def discover(
    inputs: Sequence[str],
    csvs: Sequence[str] = (),
    *,
    stdin: IO[bytes] | None = None,
    raw_rate: int | None = None,
) -> list[Source]:
    """Sources from command-line inputs, in the order given.

    Parameters
    ----------
    inputs
        Paths of audio files, folders (searched recursively, files sorted), glob
        patterns (``**`` spans folders) or ``-`` for stdin.
    csvs
        Corpus CSVs: every row's audio file, in row order (after ``inputs``).
    stdin
        Where ``-`` reads from (binary).
    raw_rate
        Hz of raw PCM on stdin (a WAV header gives its own rate); None for the
        model's rate.

    Raises
    ------
    DataError
        A corpus CSV that is missing or malformed.
    AudioError
        ``-`` given twice, or stdin holding no audio.
    """
    from .corpus import read_csvs

    sources: list[Source] = []
    if list(inputs).count(STDIN_NAME) > 1:
        raise AudioError("-: stdin can be read once only")
    for item in inputs:
        if item == STDIN_NAME:
            if stdin is None:
                raise AudioError("-: no stdin to read")
            samples, rate = read_pcm(stdin.read(), raw_rate, where="stdin")
            sources.append(Source(STDIN_NAME, None, STDIN_OUTPUT_STEM, samples, rate))
        elif os.path.isdir(item):
            sources.extend(_folder(item))
        elif GLOB_CHARACTERS & set(item) and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True), key=_path_order)
            files = [m for m in matches if not os.path.isdir(m)]
            if not files:
                sources.append(Source(item, problem=f"{item}: no file matches"))
            sources.extend(Source(m, m, Path(m).stem) for m in files)
        else:
            sources.append(Source(item, item, Path(item).stem))
    for csv in csvs:
        folder = Path(csv).resolve().parent
        for utterance in read_csvs([csv]):
            path = Path(utterance.audio_path)
            try:
                stem = path.relative_to(folder).with_suffix("").as_posix()
            except ValueError:  # an absolute path outside the CSV's folder
                stem = path.stem
            sources.append(Source(str(path), str(path), stem))
    return sources


def _path_order(path: str | os.PathLike) -> tuple[str, ...]:
    """Sort key: folder by folder, so that ``a/b/c`` comes before ``a/z``."""
    return Path(path).parts


def _folder(folder: str) -> list[Source]:
    """Audio files under ``folder``, recursively, in sorted path order."""
    relative = [
        Path(os.path.relpath(os.path.join(root, name), folder))
        for root, _, files in os.walk(folder)
        for name in files
        if Path(name).suffix.lower() in AUDIO_EXTENSIONS
    ]
    found = [
        Source(
            str(Path(folder) / rel),
            str(Path(folder) / rel),
            rel.with_suffix("").as_posix(),
        )
        for rel in sorted(relative, key=_path_order)
    ]
    if not found:
        extensions = " ".join(sorted(AUDIO_EXTENSIONS))
        return [Source(folder, problem=f"{folder}: no audio files ({extensions})")]
    return found


def read_pcm(data: bytes, raw_rate: int | None, where: str = "stdin") -> tuple:
    """Audio from bytes: a WAV file (RIFF header) or raw 16-bit little-endian PCM.

    Parameters
    ----------
    data : bytes
    raw_rate : int or None
        Hz of raw PCM; None for "the model's rate" (returned as 0).
    where : str
        Names the input in messages.

    Returns
    -------
    samples : float32 array, shape (N,)
        Mono (channels averaged), int16 / 32768.
    sample_rate : int
        The WAV header's rate, or ``raw_rate`` (0 for the model's).

    Raises
    ------
    AudioError
        No bytes, an unreadable WAV, or raw PCM of odd length.
    """
    import numpy as np
    import soundfile

    from .audio import check_finite_samples, to_float32

    if not data:
        raise AudioError(f"{where}: no audio (0 bytes)")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            samples, rate = soundfile.read(
                io.BytesIO(data), dtype="float32", always_2d=True
            )  # (N, S)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
            raise AudioError(f"{where}: unreadable WAV data ({error})") from None
        if samples.shape[0] == 0:
            raise AudioError(f"{where}: holds no samples")
        check_finite_samples(samples, where)
        return samples.mean(axis=1, dtype=np.float32), int(rate)
    return to_float32(data, where), int(raw_rate or 0)


# -- outputs ---------------------------------------------------------------------------


def output_paths(
    sources: Sequence[Source],
    folder: str | os.PathLike,
    extension: str,
    overwrite: bool,
) -> list[Path | None]:
    """One output path per source under ``folder`` (None for sources with a problem).

    Raises
    ------
    OutputError
        Two inputs that would write the same file, or files that exist already when
        ``overwrite`` is False (all of them listed).
    """
    paths: list[Path | None] = []
    owners: dict[Path, str] = {}
    clashes, existing = [], []
    for source in sources:
        if source.problem:
            paths.append(None)
            continue
        path = Path(folder) / (source.output_stem + extension)
        if path in owners:
            clashes.append(f"{owners[path]} and {source.name} -> {path}")
        owners[path] = source.name
        if path.exists() and not overwrite:
            existing.append(str(path))
        paths.append(path)
    if clashes:
        raise OutputError(
            "inputs with the same output name: " + "; ".join(clashes[:10])
        )
    if existing:
        listed = ", ".join(existing[:10])
        more = f" and {len(existing) - 10} more" if len(existing) > 10 else ""
        raise OutputError(
            f"output files exist already (--overwrite replaces them): {listed}{more}"
        )
    return paths


# -- the model -------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What a process needs to load the model and its decoder."""

    path: str
    backend: str | None
    decode_config: Any  # npspeech.config.DecodeConfig


def load_model(spec: ModelSpec) -> Any:
    """The model with its decoder set, loaded once per process.

    Raises
    ------
    ModelFileError, ScorerError, ConfigError
        An unusable model file, scorer or decoder setting.
    """
    from .api import Model

    model = Model.load(spec.path, backend=spec.backend)
    model.set_decoder(spec.decode_config)
    return model


def transcribe_source(
    model: Any, source: Source, n_best: int, stream_chunk: int = 0
) -> Result:
    """Decode one source; a failure becomes ``Result.error`` instead of an exception.

    With ``stream_chunk`` the audio goes through the streaming API
    (``model.create_stream()``) in chunks of that many samples at the model's rate
    (the whole file is read first); otherwise through ``model.transcribe_full``, which
    reads long files in blocks. Only npspeech's own errors (bad audio, a decoder
    refusing its input) are caught: anything else is a bug and keeps its traceback.
    """
    from . import audio

    result = Result(source)
    try:
        if source.problem:
            raise AudioError(source.problem)
        if source.path is not None:
            result.seconds = audio.duration(source.path)
            rate = _file_rate(source.path)
            signal: Any = source.path
        else:
            rate = source.sample_rate or model.sample_rate
            result.seconds = len(source.samples) / rate
            signal = audio.resample(source.samples, rate, model.sample_rate)
        if rate < LOW_RATE_RATIO * model.sample_rate:
            result.warnings.append(
                f"{source.name}: warning: sample rate {rate} Hz is below the model's "
                f"{model.sample_rate} Hz; upsampling cannot restore what is missing "
                "above half of it, so recognition may be erratic"
            )
        if stream_chunk:
            result.candidates = _stream(model, signal, n_best, stream_chunk)
        else:
            result.candidates = list(model.transcribe_full(signal, n_best=n_best))
    except NpspeechError as error:
        message = str(error)
        result.error = (
            message if source.name in message else f"{source.name}: {message}"
        )
    return result


def _stream(model: Any, signal: Any, n_best: int, chunk: int) -> list:
    """Candidates of ``signal`` (a path or samples at the model's rate) fed to a
    stream ``chunk`` samples at a time."""
    from . import audio

    if isinstance(signal, str):
        signal = audio.load(signal, sample_rate=model.sample_rate)  # (N,) float32
    stream = model.create_stream()
    for start in range(0, signal.shape[0], chunk):
        stream.feed_audio_content(signal[start : start + chunk])
    return list(stream.finish_stream_full(n_best))


def _file_rate(path: str) -> int:
    import soundfile

    return int(soundfile.info(path).samplerate)  # the header read by audio.duration


# -- many sources ----------------------------------------------------------------------


def transcribe_all(
    sources: Sequence[Source],
    spec: ModelSpec,
    *,
    n_best: int = 1,
    jobs: int = 1,
    model: Any = None,
    stream_chunk: int = 0,
) -> Iterator[Result]:
    """Decode every source, yielding Results in input order.

    Parameters
    ----------
    sources
    spec
        The model to load (once in this process, or once in each worker).
    n_best
        Candidate transcripts per source.
    jobs
        Worker processes; 1 decodes here. Workers share the CPU cores: each runs its
        kernels on ``cpu_count // jobs`` threads.
    model
        An already loaded model for ``jobs == 1`` (it is loaded otherwise).
    stream_chunk
        Samples per chunk fed to the streaming API; 0 decodes each source whole.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give 1 or more worker processes")
    jobs = min(jobs, max(len(sources), 1))
    if jobs == 1:
        model = model if model is not None else load_model(spec)
        for source in sources:
            yield transcribe_source(model, source, n_best, stream_chunk)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = worker_threads(jobs)
    # spawn, not fork: a forked copy of a process whose OpenMP/Numba threads have
    # started can deadlock; every worker starts clean and loads the model itself.
    executor = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(spec, threads),
    )
    try:
        futures = [
            executor.submit(_worker_transcribe, s, n_best, stream_chunk)
            for s in sources
        ]
        for future in futures:
            yield future.result()
    finally:
        # a consumer that stops early (a closed pipe) cancels what has not started
        executor.shutdown(wait=True, cancel_futures=True)


def worker_threads(workers: int) -> int:
    """Kernel threads for each of ``workers`` processes on this machine: its cores
    shared out (at least one)."""
    return max(1, (os.cpu_count() or 1) // workers)


_WORKER_MODEL: Any = None
_WORKER_ERROR: str = ""


def _start_worker(spec: ModelSpec, threads: int) -> None:
    """Worker initializer: thread counts before NumPy and Numba load, then the model."""
    global _WORKER_MODEL, _WORKER_ERROR
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        _WORKER_MODEL = load_model(spec)
    except NpspeechError as error:  # reported with each source, not as a dead pool
        _WORKER_ERROR = str(error)


def _worker_transcribe(source: Source, n_best: int, stream_chunk: int) -> Result:
    if _WORKER_MODEL is None:
        return Result(source, error=f"{source.name}: {_WORKER_ERROR}")
    return transcribe_source(_WORKER_MODEL, source, n_best, stream_chunk)


# -- summary ---------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts of a batch and its wall time from creation to :meth:`line`."""

    files: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: Result) -> None:
        """Count one result."""
        self.files += 1
        self.failed += bool(result.error)
        self.audio_seconds += result.seconds if not result.error else 0.0

    def line(self) -> str:
        """``decoded 3 files (1 failed): 9.2 s of audio in 1.5 s, real-time factor
        0.163`` (wall time over audio time: below 1 is faster than real time)."""
        wall = time.perf_counter() - self.started
        files = f"{self.files} file" + ("s" if self.files != 1 else "")
        failed = f" ({self.failed} failed)" if self.failed else ""
        rtf = (
            f", real-time factor {wall / self.audio_seconds:.3f}"
            if self.audio_seconds > 0
            else ""
        )
        return (
            f"decoded {files}{failed}: {self.audio_seconds:.1f} s of audio "
            f"in {wall:.1f} s{rtf}"
        )
