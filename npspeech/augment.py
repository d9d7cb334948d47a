"""Data augmentation for training: audio-domain perturbations and SpecAugment.

Each augmentation has a probability and a range in :class:`AugmentConfig`; all are off
by default. Every function takes an explicit ``numpy.random.Generator`` and returns new
arrays, so a batch seeded the same way is augmented the same way (a resumed run sees
exactly the batches it would have seen).

The audio-domain ones act on the signal before features are computed, in this order:
speed (resampling, as Kaldi's speed perturbation: tempo and pitch change together),
volume (a gain in dB), additive noise at a random signal-to-noise ratio. SpecAugment
(Park et al. 2019, time and frequency masks) acts on the ``(T, F)`` features.

Shapes: ``N`` samples, ``T`` frames, ``F`` features.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from .errors import ConfigError, DataError

# Speed factors are rounded to multiples of 1 / this, so the polyphase resampler's
# up / down ratio stays below 1000 (its filter design and run take ~20 ms for 10 s of
# audio) while a factor moves by at most 5e-4. Rounding is monotone, so a factor drawn
# inside the range stays inside the rounded range.
_SPEED_GRID = 1000


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, how often and how strongly. All off by default.

    Probabilities are per utterance and independent of each other. Ranges are inclusive
    ``(low, high)`` pairs from which a value is drawn uniformly.
    """

    # SpecAugment on the (T, F) features: with this probability, the masks below.
    spec_augment_probability: float = 0.0
    time_masks: int = 2  # masks along time, each of width uniform in [0, max] frames
    time_mask_max_width: int = 10  # frames; 200 ms at DeepSpeech's 20 ms step
    frequency_masks: int = 2  # masks along features, each of width uniform in [0, max]
    frequency_mask_max_width: int = 4  # features (coefficients or channels)
    # Additive noise at an SNR drawn from noise_snr_db (dB: signal over noise power).
    noise_probability: float = 0.0
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    # Noise recordings; empty means white Gaussian noise. An entry ending in .csv is a
    # DeepSpeech CSV (its wav_filename column), one ending in .txt lists one path per
    # line; paths in either are relative to the list's folder.
    noise_files: tuple[str, ...] = ()
    # Speed perturbation by resampling: factor > 1 is faster and shorter (N / factor).
    speed_probability: float = 0.0
    speed_range: tuple[float, float] = (0.9, 1.1)
    # Volume: a gain in dB drawn from volume_gain_db.
    volume_probability: float = 0.0
    volume_gain_db: tuple[float, float] = (-6.0, 6.0)

    def __post_init__(self) -> None:
        for name in (
            "spec_augment_probability",
            "noise_probability",
            "speed_probability",
            "volume_probability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augmentation.{name} = {value} is not in [0, 1]")
        for name in (
            "time_masks",
            "time_mask_max_width",
            "frequency_masks",
            "frequency_mask_max_width",
        ):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ConfigError(
                    f"augmentation.{name} = {value} is not an integer >= 0"
                )
        for name in ("noise_snr_db", "speed_range", "volume_gain_db"):
            value = getattr(self, name)
            value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(
                    f"augmentation.{name} = {value} is not a (low, high) pair with "
                    "low <= high"
                )
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if self.speed_range[0] < 1.0 / _SPEED_GRID:
            raise ConfigError(
                f"augmentation.speed_range = {self.speed_range} must be >= 0.001"
            )
        object.__setattr__(self, "noise_files", tuple(str(p) for p in self.noise_files))

    @property
    def changes_audio(self) -> bool:
        """Whether an audio augmentation can run (then features aren't cached)."""
        return (
            self.noise_probability > 0
            or self.speed_probability > 0
            or self.volume_probability > 0
        )

    @property
    def max_length_factor(self) -> float:
        """How much an utterance can lengthen: ``1 / slowest speed`` if speed runs."""
        if self.speed_probability > 0:
            return max(1.0, 1.0 / snap_speed(self.speed_range[0]))
        return 1.0


@dataclasses.dataclass(frozen=True)
class SignalPlan:
    """The audio-domain augmentations drawn for one utterance; None = not applied."""

    speed: float | None = None  # speed factor, already rounded by snap_speed
    gain_db: float | None = None
    snr_db: float | None = None

    @property
    def is_identity(self) -> bool:
        """True when nothing is applied, so cached clean features can be used."""
        return self.speed is None and self.gain_db is None and self.snr_db is None


def draw_signal_plan(config: AugmentConfig, rng: np.random.Generator) -> SignalPlan:
    """Draw which audio augmentations apply to one utterance, and their strengths.

    The generator is advanced the same amount whatever is drawn, so the draws for later
    utterances don't depend on the outcomes for earlier ones.
    """
    coins = rng.random(3)  # speed, volume, noise
    values = rng.random(3)
    speed = gain = snr = None
    if coins[0] < config.speed_probability:
        low, high = config.speed_range
        speed = snap_speed(low + values[0] * (high - low))
    if coins[1] < config.volume_probability:
        low, high = config.volume_gain_db
        gain = float(low + values[1] * (high - low))
    if coins[2] < config.noise_probability:
        low, high = config.noise_snr_db
        snr = float(low + values[2] * (high - low))
    return SignalPlan(speed=speed, gain_db=gain, snr_db=snr)


def snap_speed(factor: float) -> float:
    """``factor`` rounded to the multiple of 1/1000 :func:`change_speed` applies."""
    return float(_speed_ratio(factor))


def _speed_ratio(factor: float) -> Fraction:
    ratio = Fraction(round(float(factor) * _SPEED_GRID), _SPEED_GRID)
    if ratio <= 0:
        raise ConfigError(f"speed factor {factor} rounds to 0; it must be >= 0.0005")
    return ratio


def speed_output_length(n_samples: int, factor: float) -> int:
    """Samples :func:`change_speed` returns for ``n_samples`` at speed ``factor``."""
    ratio = _speed_ratio(factor)
    if ratio == 1 or n_samples == 0:
        return n_samples
    return -(-n_samples * ratio.denominator // ratio.numerator)


def change_speed(signal: np.ndarray, factor: float) -> np.ndarray:
    """Play ``signal`` ``factor`` times faster by resampling (pitch changes too).

    Parameters
    ----------
    signal
        ``(N,)`` float32 samples.
    factor
        Speed factor > 0, rounded to a multiple of 1/1000 (see :func:`snap_speed`).

    Returns
    -------
    numpy.ndarray
        ``(ceil(N / factor'),)`` float32, where ``factor'`` is the snapped factor.
    """
    ratio = _speed_ratio(factor)
    if ratio == 1 or signal.size == 0:
        return np.array(signal, dtype=np.float32, copy=True)
    # Faster playback = fewer samples: resample by q / p (polyphase, anti-aliased FIR).
    out = resample_poly(signal.astype(np.float64), ratio.denominator, ratio.numerator)
    return out.astype(np.float32)


def change_volume(signal: np.ndarray, gain_db: float) -> np.ndarray:
    """``signal`` times ``10 ** (gain_db / 20)``; ``(N,)`` float32 in and out.

    Samples are not clipped: the features take any float, and clipping would make the
    gain differ from the one asked for.
    """
    return (signal * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def add_noise(
    signal: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Add noise scaled to a signal-to-noise ratio of ``snr_db`` over the utterance.

    Parameters
    ----------
    signal
        ``(N,)`` float32 samples.
    snr_db
        ``10 log10(mean(signal**2) / mean(noise**2))`` after scaling.
    rng
        Draws white noise, or the offset into ``noise``.
    noise
        ``(M,)`` float32 noise recording, or None for white Gaussian noise. A random
        stretch of length ``N`` is taken (the recording is repeated when ``M < N``).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float32. A silent signal (or silent noise) is returned unchanged: no
        finite scale gives the asked-for ratio.
    """
    n_samples = signal.size
    if noise is None:
        segment = rng.standard_normal(n_samples)
    else:
        if noise.size == 0:
            raise DataError("noise recording is empty")
        repeats = -(-n_samples // noise.size) + 1
        looped = np.tile(noise.astype(np.float64), repeats)
        offset = int(rng.integers(0, noise.size))
        segment = looped[offset : offset + n_samples]
    signal_power = (
        float(np.mean(np.square(signal, dtype=np.float64))) if n_samples else 0.0
    )
    noise_power = float(np.mean(np.square(segment))) if n_samples else 0.0
    if signal_power == 0.0 or noise_power == 0.0:
        return np.array(signal, dtype=np.float32, copy=True)
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (signal + scale * segment).astype(np.float32)


def apply_signal_plan(
    signal: np.ndarray,
    plan: SignalPlan,
    rng: np.random.Generator,
    noise_bank: NoiseBank | None = None,
) -> np.ndarray:
    """Apply speed, then volume, then noise as drawn in ``plan``; ``(N,)`` float32 in,
    ``(N',)`` float32 out (``N' = ceil(N / speed)`` when speed applies)."""
    out = signal
    if plan.speed is not None:
        out = change_speed(out, plan.speed)
    if plan.gain_db is not None:
        out = change_volume(out, plan.gain_db)
    if plan.snr_db is not None:
        noise = noise_bank.draw(rng) if noise_bank is not None else None
        out = add_noise(out, plan.snr_db, rng, noise)
    return np.asarray(out, dtype=np.float32)


def draw_masks(
    n_frames: int,
    n_features: int,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """SpecAugment masks for a ``(T, F)`` feature matrix, as ``(start, width)`` pairs.

    With probability ``config.spec_augment_probability`` draws ``time_masks`` time masks
    of width uniform in ``[0, min(time_mask_max_width, T)]`` and ``frequency_masks``
    feature masks likewise, each at a uniform start that keeps it inside the matrix;
    otherwise returns two empty lists.
    """
    if rng.random() >= config.spec_augment_probability:
        return [], []
    time = _draw_intervals(n_frames, config.time_masks, config.time_mask_max_width, rng)
    frequency = _draw_intervals(
        n_features, config.frequency_masks, config.frequency_mask_max_width, rng
    )
    return time, frequency


def _draw_intervals(
    size: int, count: int, max_width: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    intervals = []
    for _ in range(count):
        width = int(rng.integers(0, min(max_width, size) + 1))
        start = int(rng.integers(0, size - width + 1))
        intervals.append((start, width))
    return intervals


def apply_masks(
    features: np.ndarray,
    time_masks: Sequence[tuple[int, int]],
    frequency_masks: Sequence[tuple[int, int]],
) -> np.ndarray:
    """A copy of ``(T, F)`` ``features`` with the masked frames and features set to 0.

    Zero, as in DeepSpeech's SpecAugment, is the mean of normalised features; for raw
    MFCCs it reads as a flat, silent-looking stretch.
    """
    out = np.array(features, copy=True)
    for start, width in time_masks:
        out[start : start + width, :] = 0.0
    for start, width in frequency_masks:
        out[:, start : start + width] = 0.0
    return out


def spec_augment(
    features: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """SpecAugment time and frequency masks on ``(T, F)`` features.

    Returns a masked copy, or ``features`` itself when no mask is drawn.
    """
    time, frequency = draw_masks(features.shape[0], features.shape[1], config, rng)
    if not time and not frequency:
        return features
    return apply_masks(features, time, frequency)


class NoiseBank:
    """Noise recordings listed by ``AugmentConfig.noise_files``, loaded on first use.

    Parameters
    ----------
    paths
        Audio files, ``.csv`` DeepSpeech CSVs or ``.txt`` path lists (see
        :class:`AugmentConfig`).
    sample_rate
        Rate the recordings are loaded at (the feature rate).
    """

    def __init__(self, paths: Sequence[str | Path], sample_rate: int):
        self.paths = expand_noise_files(paths)
        if not self.paths:
            raise DataError("noise_files lists no recordings")
        self.sample_rate = sample_rate
        self._loaded: dict[int, np.ndarray] = {}

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One recording chosen uniformly, ``(M,)`` float32."""
        index = int(rng.integers(0, len(self.paths)))
        if index not in self._loaded:
            from . import audio

            self._loaded[index] = audio.load(
                self.paths[index], sample_rate=self.sample_rate
            )
        return self._loaded[index]


def expand_noise_files(entries: Sequence[str | Path]) -> list[Path]:
    """Audio paths named by ``entries``, reading ``.csv`` and ``.txt`` lists.

    Raises
    ------
    DataError
        For a list that is missing or a CSV without a ``wav_filename`` column.
    """
    paths: list[Path] = []
    for entry in entries:
        entry = Path(entry)
        suffix = entry.suffix.lower()
        if suffix not in (".csv", ".txt"):
            paths.append(entry.resolve())
            continue
        try:
            text = entry.read_text(encoding="utf-8-sig")
        except OSError as error:
            raise DataError(f"{entry}: cannot read noise list ({error})") from None
        if suffix == ".txt":
            names = [line.strip() for line in text.splitlines()]
            names = [name for name in names if name and not name.startswith("#")]
        else:
            reader = csv.DictReader(text.splitlines())
            if "wav_filename" not in (reader.fieldnames or []):
                raise DataError(f"{entry}:1: noise CSV has no wav_filename column")
            names = [row["wav_filename"] for row in reader if row["wav_filename"]]
        paths.extend((entry.parent / name).resolve() for name in names)
    return paths
