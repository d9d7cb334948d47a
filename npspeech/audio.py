"""Audio in: any file libsndfile reads, as float32 mono at the model's sample rate.

Shape legend: N samples, S channels.

- :func:`load` decodes a file with ``soundfile`` (WAV of any PCM or float subtype, FLAC,
  OGG, MP3 where libsndfile has it), averages the channels, resamples with a polyphase
  filter and returns float32 in [-1, 1).
- :func:`to_float32` turns int16 samples, raw int16 PCM bytes (what a streaming client
  sends) or float samples into that same form; int16 is divided by 32768, DeepSpeech's
  convention, so int16 audio and its WAV file give identical features.
- Every problem a user can cause is an :class:`~npspeech.errors.AudioError` that names
  the file (or the argument) and what is wrong with it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile

from . import constants as C
from .config import FeatureConfig
from .errors import AudioError

# The largest float32 below 1.0: the top of the [-1, 1) range int16 / 32768 spans.
MAX_SAMPLE = np.float32(np.nextafter(np.float32(1.0), np.float32(0.0)))


def _check_file(path: Path) -> None:
    """Raise AudioError for a path that is missing, not a file, or zero bytes long."""
    if not path.exists():
        raise AudioError(f"{path}: audio file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _open_error(path: Path, error: Exception) -> AudioError:
    return AudioError(f"{path}: unreadable or corrupt audio ({error})")


def duration(path: str | os.PathLike) -> float:
    """Seconds of audio in ``path``, read from its header without decoding the samples.

    Raises
    ------
    AudioError
        When the file is missing, a directory, empty or not audio libsndfile reads.
    """
    path = Path(path)
    _check_file(path)
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise _open_error(path, error) from None
    if info.samplerate <= 0:
        raise AudioError(f"{path}: header gives a sample rate of {info.samplerate} Hz")
    return info.frames / info.samplerate


def load(path: str | os.PathLike, sample_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to float32 mono at ``sample_rate`` Hz.

    Channels are averaged. Audio at another rate is resampled with
    ``scipy.signal.resample_poly`` at the reduced ratio (44.1 kHz -> 16 kHz is up 160,
    down 441). Integer PCM is scaled by libsndfile to [-1, 1) (int16 / 32768).

    Parameters
    ----------
    path : str or path-like
    sample_rate : int
        The rate the caller needs, in Hz.

    Returns
    -------
    float32 array, shape (N,), values in [-1, 1)

    Raises
    ------
    AudioError
        Missing file, a directory, a zero-length file, unreadable or corrupt data, no
        samples, or samples that are NaN or infinite.
    """
    path = Path(path)
    _check_file(path)
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise _open_error(path, error) from None
    # data: (N, S) float32
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{path}: holds no samples")
    check_finite_samples(data, str(path))
    signal = (
        data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    )  # (N,)
    if file_rate != sample_rate:
        signal = resample(signal, file_rate, sample_rate)
    return _clip(signal)


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from ``from_rate`` to ``to_rate`` Hz.

    Uses ``scipy.signal.resample_poly`` with ``up / down = to_rate / from_rate`` reduced
    by their gcd and scipy's default Kaiser-windowed anti-aliasing filter.

    Parameters
    ----------
    signal : float array, shape (N,)
    from_rate, to_rate : int
        Sample rates in Hz.

    Returns
    -------
    float32 array, shape (ceil(N * to_rate / from_rate),)
    """
    for name, rate in (("from_rate", from_rate), ("to_rate", to_rate)):
        if int(rate) != rate or rate <= 0:
            raise AudioError(
                f"resample: {name} must be a positive whole number of Hz, got {rate}"
            )
    from_rate, to_rate = int(from_rate), int(to_rate)
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise AudioError(f"resample: expected a 1-D signal, got shape {signal.shape}")
    if from_rate == to_rate:
        return signal.copy()
    # Imported here: scipy.signal costs a second or more of start-up, and only
    # resampling needs it.
    import scipy.signal

    common = math.gcd(from_rate, to_rate)
    resampled = scipy.signal.resample_poly(
        signal, to_rate // common, from_rate // common
    )
    return resampled.astype(np.float32, copy=False)


def to_float32(
    samples, where: str = "samples", *, check_finite: bool = True
) -> np.ndarray:
    """Samples as float32: int16 / 32768, raw int16 PCM bytes, or float as it is.

    Parameters
    ----------
    samples : int16 array, float array, or bytes
        ``bytes`` (or ``bytearray``/``memoryview``) are little-endian int16 PCM, as a
        streaming client sends them. Float input is expected in [-1, 1) and is not
        rescaled (a float32 array is returned as it is, without a copy).
    where : str
        Names the input in error messages (a file, a stream, an argument).
    check_finite : bool
        Scan float input for NaN and infinity. ``features.compute`` turns this off and
        checks its (much smaller) output instead, scanning the input only when that
        output is not finite.

    Returns
    -------
    float32 array, shape (N,)

    Raises
    ------
    AudioError
        Bytes of odd length, an array that is not 1-D, an integer type other than int16,
        or non-finite float samples.
    """
    if isinstance(samples, (bytes, bytearray, memoryview)):
        raw = bytes(samples)
        if len(raw) % 2:
            raise AudioError(
                f"{where}: {len(raw)} bytes is not a whole number of int16 samples"
            )
        samples = np.frombuffer(raw, dtype="<i2")
    array = np.asarray(samples)
    if array.ndim != 1:
        raise AudioError(f"{where}: expected a 1-D signal, got shape {array.shape}")
    if array.dtype.kind == "i" and array.dtype.itemsize == 2:  # int16, any byte order
        return array.astype(np.float32) / np.float32(C.INT16_SCALE)
    if array.dtype.kind == "f":
        if check_finite:
            check_finite_samples(array, where)
        return array.astype(np.float32, copy=False)
    raise AudioError(
        f"{where}: unsupported sample type {array.dtype}; "
        "give int16 PCM or float in [-1, 1)"
    )


def check_min_length(
    signal: np.ndarray, config: FeatureConfig, where: str = "signal"
) -> None:
    """Raise AudioError when ``signal`` is too short for one feature frame.

    Parameters
    ----------
    signal : array, shape (N,)
        Samples at ``config.sample_rate``.
    config : FeatureConfig
    where : str
        Names the audio (file, CSV row) in the message.
    """
    n_samples = int(np.shape(signal)[0]) if np.ndim(signal) else 0
    if n_samples == 0:
        raise AudioError(f"{where}: holds no samples")
    if n_samples < config.window_samples:
        raise AudioError(
            f"{where}: {n_samples} samples "
            f"({n_samples / config.sample_rate * 1000:.1f} ms) "
            f"is shorter than one feature window of {config.window_samples} samples "
            f"({config.window_ms:g} ms)"
        )


def check_finite_samples(samples: np.ndarray, where: str = "samples") -> None:
    """Raise AudioError naming the first NaN or infinite sample of ``samples``."""
    finite = np.isfinite(samples)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        index = int(bad[0])
        raise AudioError(
            f"{where}: non-finite sample ({samples[tuple(bad)]}) at index {index}"
        )


def _clip(signal: np.ndarray) -> np.ndarray:
    # Resampling overshoots a little near full scale, and float files may exceed it;
    # the rest of the pipeline assumes int16-like range [-1, 1).
    return np.clip(signal, np.float32(-1.0), MAX_SAMPLE).astype(np.float32, copy=False)
