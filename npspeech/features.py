"""The acoustic front end: audio samples to ``(T, F)`` float32 model inputs.

Shape legend: N samples, W window length, K = n_fft // 2 + 1 spectrum bins, T frames,
C mel channels, D cepstral coefficients, F features per frame.

Three kinds of features, chosen by ``FeatureConfig.kind``:

- ``"mfcc"``: DeepSpeech 0.9's front end, TensorFlow's ``AudioSpectrogram`` + ``Mfcc``
  ops: 512-sample frames every 320 (no padding), periodic Hann window, 512-point power
  spectrum, 40 mel channels between 20 Hz and 8 kHz weighing the *magnitude* (TF's
  filterbank, :func:`tf_mel_bank`), ``log(max(x, 1e-12))``, DCT-II with the uniform
  scale ``sqrt(2 / 40)`` (:func:`dct_matrix`), 26 coefficients.
- ``"spectrogram"``: DeepSpeech2's log-spectrogram, 20 ms windows every 10 ms, 161 bins
  at 16 kHz, ``log1p`` of the magnitude or log of the power with a floor.
- ``"fbank"``: log-mel filterbank energies, triangular filters on the power spectrum,
  linear in Hz between centres equally spaced in mel (:func:`triangular_mel_bank`; the
  same filters as ``librosa.filters.mel(htk=True, norm=None)``).

Then optional normalisation (per utterance, or global with :class:`FeatureStats`
gathered over a corpus) and optional context windows (:func:`context_windows`,
DeepSpeech's 9 frames each side). :class:`FeatureStream` computes the same features
chunk by chunk.

The numeric kernels come from the backend (``npspeech.backends``, default ``numba``);
this module validates, builds the filterbank and DCT once per configuration, and
dispatches.
"""

from __future__ import annotations

import dataclasses
import functools
from types import ModuleType

import numpy as np

from . import audio
from . import constants as C
from .backends import get_backend
from .config import FeatureConfig, from_dict
from .errors import AudioError, ConfigError

KINDS = ("mfcc", "spectrogram", "fbank")
WINDOWS = ("hann_periodic", "hann_symmetric", "hamming")
LOG_MODES = ("log1p", "log")
NORMALIZATIONS = ("none", "utterance", "global")


# --- building blocks -----------------------------------------------------------------


def hz_to_mel(frequency):
    """Mel of ``frequency`` Hz: ``1127 ln(1 + f / 700)`` (TensorFlow's, HTK's scale)."""
    return C.MEL_HIGH_FREQUENCY_Q * np.log1p(
        np.asarray(frequency) / C.MEL_BREAK_FREQUENCY_HZ
    )


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    return C.MEL_BREAK_FREQUENCY_HZ * np.expm1(np.asarray(mel) / C.MEL_HIGH_FREQUENCY_Q)


def window_function(name: str, length: int) -> np.ndarray:
    """The analysis window, float64 array of shape (length,).

    ``hann_periodic`` is TensorFlow's ``0.5 - 0.5 cos(2 pi n / W)``; ``hann_symmetric``
    divides by ``W - 1`` instead (``numpy.hanning``); ``hamming`` is the periodic
    ``0.54 - 0.46 cos(2 pi n / W)``.
    """
    n = np.arange(length, dtype=np.float64)
    if name == "hann_periodic":
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)
    if name == "hann_symmetric":
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / max(length - 1, 1))
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / length)
    raise ConfigError(
        f"window: unknown window {name!r}; choose one of {', '.join(WINDOWS)}"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class MelBank:
    """A mel filterbank in sparse form: each spectrum bin feeds at most two channels.

    Bin ``k`` gives ``lower_weight[k]`` of its value to channel ``lower_channel[k]``
    (when that is >= 0) and ``upper_weight[k]`` to channel ``lower_channel[k] + 1``
    (when that is < ``n_channels``). Only bins ``first_bin <= k < stop_bin`` carry
    weight.

    Attributes
    ----------
    lower_channel : int32 array, shape (K,)
    lower_weight, upper_weight : float64 array, shape (K,)
    n_channels : int
        C.
    first_bin, stop_bin : int
        The half-open range of bins that carry weight.
    magnitude : bool
        True: the filters weigh ``sqrt(power)`` (TensorFlow's Mfcc); False: the power.
    """

    lower_channel: np.ndarray
    lower_weight: np.ndarray
    upper_weight: np.ndarray
    n_channels: int
    first_bin: int
    stop_bin: int
    magnitude: bool

    def dense(self) -> np.ndarray:
        """The filters as a float64 matrix of shape (K, C): column c is channel c."""
        K = self.lower_channel.shape[0]
        matrix = np.zeros((K, self.n_channels + 2), dtype=np.float64)  # spare 2 columns
        bins = np.arange(K)
        # Columns shifted by one so channel -1 and channel C land in the spare columns.
        np.add.at(matrix, (bins, self.lower_channel + 1), self.lower_weight)
        np.add.at(matrix, (bins, self.lower_channel + 2), self.upper_weight)
        return matrix[:, 1 : self.n_channels + 1]


def _frozen(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


def tf_mel_bank(
    n_fft: int,
    sample_rate: int,
    n_channels: int = C.DS_N_MEL_CHANNELS,
    lower_frequency: float = C.DS_LOWER_FREQUENCY,
    upper_frequency: float = C.DS_UPPER_FREQUENCY,
) -> MelBank:
    """TensorFlow's ``MfccMelFilterbank``, which weighs the magnitude spectrum.

    Bins are ``hz = (sample_rate / 2) / (K - 1)`` apart; bins ``int(1.5 + lower / hz)``
    to ``int(upper / hz)`` inclusive are used (DC is always excluded). ``C + 1`` centres
    lie at ``mel(lower) + (i + 1) * (mel(upper) - mel(lower)) / (C + 1)``. A used bin at
    mel ``m`` between centres ``c[j]`` and ``c[j + 1]`` gives ``(c[j+1] - m) / (c[j+1] -
    c[j])`` of its magnitude to channel ``j`` and the rest to channel ``j + 1``; below
    the first centre the left neighbour is ``mel(lower)`` and only channel 0 receives.

    Returns
    -------
    MelBank with ``magnitude=True`` over K = n_fft // 2 + 1 bins.
    """
    K = n_fft // 2 + 1
    hz_per_bin = 0.5 * sample_rate / (K - 1)
    first = int(1.5 + lower_frequency / hz_per_bin)
    last = min(int(upper_frequency / hz_per_bin), K - 1)  # inclusive, as TF's loop
    mel_low = float(hz_to_mel(lower_frequency))
    spacing = (float(hz_to_mel(upper_frequency)) - mel_low) / (n_channels + 1)
    centres = mel_low + spacing * np.arange(1, n_channels + 2)  # (C + 1,)

    bins = np.arange(first, last + 1)
    mel = hz_to_mel(bins * hz_per_bin)  # (used bins,)
    # TF walks the channel index up while centre[channel] < mel, stopping at C.
    channel = np.searchsorted(centres[:n_channels], mel, side="left") - 1  # -1 .. C-1
    right = centres[channel + 1]
    left = np.where(channel >= 0, centres[np.maximum(channel, 0)], mel_low)
    weight = (right - mel) / (right - left)

    lower_channel = np.full(K, -1, dtype=np.int32)
    lower_weight = np.zeros(K, dtype=np.float64)
    upper_weight = np.zeros(K, dtype=np.float64)
    lower_channel[bins] = channel
    lower_weight[bins] = np.where(channel >= 0, weight, 0.0)  # channel -1 is dropped
    upper_weight[bins] = 1.0 - weight
    _frozen(lower_channel, lower_weight, upper_weight)
    return MelBank(
        lower_channel, lower_weight, upper_weight, n_channels, first, last + 1, True
    )


def triangular_mel_bank(
    n_fft: int,
    sample_rate: int,
    n_channels: int,
    lower_frequency: float,
    upper_frequency: float,
) -> MelBank:
    """Triangular mel filters on the power spectrum, unnormalised (peak weight 1).

    ``C + 2`` edges equally spaced in mel from ``lower`` to ``upper`` Hz; filter ``j``
    rises linearly in Hz from edge ``j`` to edge ``j + 1`` and falls to edge ``j + 2``.
    These are ``librosa.filters.mel(sr, n_fft, n_mels=C, fmin, fmax, htk=True,
    norm=None)``.

    Returns
    -------
    MelBank with ``magnitude=False`` over K = n_fft // 2 + 1 bins.
    """
    K = n_fft // 2 + 1
    edges = mel_to_hz(
        np.linspace(
            hz_to_mel(lower_frequency), hz_to_mel(upper_frequency), n_channels + 2
        )
    )  # (C + 2,) Hz
    frequency = np.arange(K) * (sample_rate / n_fft)  # (K,) Hz
    inside = (frequency > edges[0]) & (frequency < edges[-1])
    # Interval j holds edges[j] <= f < edges[j + 1]: channel j - 1 falls, channel j
    # rises.
    interval = np.clip(
        np.searchsorted(edges, frequency, side="right") - 1, 0, n_channels
    )
    rise = (frequency - edges[interval]) / (edges[interval + 1] - edges[interval])

    lower_channel = np.where(inside, interval - 1, -1).astype(np.int32)
    lower_weight = np.where(inside & (interval >= 1), 1.0 - rise, 0.0)
    upper_weight = np.where(inside & (interval < n_channels), rise, 0.0)
    used = np.flatnonzero(inside)
    first, stop = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    _frozen(lower_channel, lower_weight, upper_weight)
    return MelBank(
        lower_channel, lower_weight, upper_weight, n_channels, first, stop, False
    )


def dct_matrix(n_inputs: int, n_outputs: int) -> np.ndarray:
    """TensorFlow Mfcc's DCT-II: ``sqrt(2 / n) cos(pi / n * k * (j + 0.5))``.

    Unlike the orthonormal DCT-II, coefficient 0 has the same scale as the others.

    Returns
    -------
    float64 array, shape (n_inputs, n_outputs): ``log_mel @ matrix`` gives the MFCC.
    """
    j = np.arange(n_inputs)[:, None]
    k = np.arange(n_outputs)[None, :]
    return np.sqrt(2.0 / n_inputs) * np.cos(np.pi / n_inputs * k * (j + 0.5))


# --- configuration --------------------------------------------------------------------


def check_config(config: FeatureConfig) -> None:
    """Raise ConfigError naming the first setting of ``config`` that cannot work."""

    def fail(field: str, message: str) -> None:
        raise ConfigError(
            f"features.{field}: {message} (got {getattr(config, field)!r})"
        )

    if config.kind not in KINDS:
        fail("kind", f"choose one of {', '.join(KINDS)}")
    if not isinstance(config.sample_rate, (int, np.integer)) or config.sample_rate <= 0:
        fail("sample_rate", "must be a positive whole number of Hz")
    if config.window_samples < 2:
        fail("window_ms", "the window must span at least 2 samples")
    if config.step_samples < 1:
        fail("step_ms", "the step must span at least 1 sample")
    if config.fft_size < config.window_samples or config.fft_size % 2:
        fail("n_fft", f"must be even and at least the window ({config.window_samples})")
    if config.window not in WINDOWS:
        fail("window", f"choose one of {', '.join(WINDOWS)}")
    if not config.log_floor > 0:
        fail("log_floor", "must be positive")
    if config.log_mode not in LOG_MODES:
        fail("log_mode", f"choose one of {', '.join(LOG_MODES)}")
    if config.normalize not in NORMALIZATIONS:
        fail("normalize", f"choose one of {', '.join(NORMALIZATIONS)}")
    if not isinstance(config.n_context, (int, np.integer)) or config.n_context < 0:
        fail("n_context", "must be a whole number >= 0")
    if config.kind == "spectrogram":
        return
    if config.n_mels < 1:
        fail("n_mels", "must be at least 1")
    if config.kind == "mfcc" and not 1 <= config.n_mfcc <= config.n_mels:
        fail("n_mfcc", f"must be between 1 and n_mels ({config.n_mels})")
    nyquist = config.sample_rate / 2
    if not 0 <= config.lower_frequency < config.upper_frequency:
        fail("lower_frequency", "must be >= 0 and below upper_frequency")
    if config.upper_frequency > nyquist:
        fail(
            "upper_frequency", f"must not exceed half the sample rate ({nyquist:g} Hz)"
        )


def default_config(kind: str = "mfcc", **settings) -> FeatureConfig:
    """The standard settings of ``kind``, with ``settings`` overriding fields.

    ``"mfcc"`` and ``"fbank"``: DeepSpeech's 32 ms / 20 ms framing. ``"spectrogram"``:
    DeepSpeech2's 20 ms window every 10 ms, ``log1p``, per-utterance normalisation.
    """
    values: dict = {"kind": kind}
    if kind == "spectrogram":
        values.update(
            window_ms=C.DS2_WINDOW_SECONDS * 1000.0,
            step_ms=C.DS2_STEP_SECONDS * 1000.0,
            normalize="utterance",
        )
    values.update(settings)
    config = from_dict(FeatureConfig, values, where="features")
    check_config(config)
    return config


def n_frames(n_samples: int, config: FeatureConfig) -> int:
    """Frames of ``n_samples`` samples: ``1 + (N - W) // step``, or 0 when ``N < W``."""
    W, step = config.window_samples, config.step_samples
    return 0 if n_samples < W else 1 + (int(n_samples) - W) // step


def n_features(config: FeatureConfig) -> int:
    """F, the width of a feature frame, context included (494 for DeepSpeech)."""
    if config.kind == "mfcc":
        width = config.n_mfcc
    elif config.kind == "fbank":
        width = config.n_mels
    else:
        width = config.fft_size // 2 + 1
    return width * (2 * config.n_context + 1)


@dataclasses.dataclass(frozen=True, eq=False)
class _Plan:
    """What one configuration needs, built once: window, filterbank, DCT."""

    window: np.ndarray  # (W,) float64
    bank: MelBank | None
    dct: np.ndarray | None  # (C, D) float64


@functools.lru_cache(maxsize=32)
def _plan(config: FeatureConfig) -> _Plan:
    check_config(config)
    window = window_function(config.window, config.window_samples)
    bank = dct = None
    if config.kind == "mfcc":
        bank = tf_mel_bank(
            config.fft_size,
            config.sample_rate,
            config.n_mels,
            config.lower_frequency,
            config.upper_frequency,
        )
        dct = dct_matrix(config.n_mels, config.n_mfcc)
        _frozen(dct)
    elif config.kind == "fbank":
        bank = triangular_mel_bank(
            config.fft_size,
            config.sample_rate,
            config.n_mels,
            config.lower_frequency,
            config.upper_frequency,
        )
    _frozen(window)
    return _Plan(window, bank, dct)


def _frames(
    kernels: ModuleType, signal: np.ndarray, config: FeatureConfig
) -> np.ndarray:
    """Un-normalised features without context of a signal of >= 1 frame: (T, F)."""
    plan = _plan(config)
    step, n_fft = config.step_samples, config.fft_size
    if config.kind == "mfcc":
        return kernels.mfcc_frames(
            signal, plan.window, step, n_fft, plan.bank, plan.dct, config.log_floor
        )
    if config.kind == "fbank":
        return kernels.log_mel_spectrum(
            signal, plan.window, step, n_fft, plan.bank, config.log_floor
        )
    return kernels.log_spectrogram(
        signal, plan.window, step, n_fft, config.log_mode, config.log_floor
    )


# --- public entry points
# ------------------------------------------------------------------


def compute(
    signal,
    config: FeatureConfig | None = None,
    *,
    stats: FeatureStats | None = None,
    backend: str | ModuleType | None = None,
    where: str = "signal",
) -> np.ndarray:
    """Features of one utterance.

    Parameters
    ----------
    signal : float array in [-1, 1), int16 array, or int16 PCM bytes, shape (N,)
        Samples at ``config.sample_rate``; int16 is divided by 32768.
    config : FeatureConfig, optional
        Defaults to DeepSpeech's MFCC without context.
    stats : FeatureStats, optional
        Corpus statistics; required when ``config.normalize == "global"``.
    backend : str or module, optional
        ``"numpy"`` or ``"numba"`` (default, or ``$NPSPEECH_BACKEND``).
    where : str
        Names the audio in error messages.

    Returns
    -------
    float32 array, shape (T, F): ``T = n_frames(N, config)``, ``F =
    n_features(config)``.

    Raises
    ------
    AudioError
        Non-finite samples, or fewer samples than one window.
    ConfigError
        A setting out of range, or global normalisation without ``stats``.
    """
    config = FeatureConfig() if config is None else config
    check_config(config)
    samples = audio.to_float32(signal, where=where, check_finite=False)  # (N,)
    audio.check_min_length(samples, config, where)
    features = _frames(get_backend(backend), samples, config)  # (T, F)
    _check_finite_features(features, samples, where)
    features = _normalize_for(features, config, stats)
    if config.n_context:
        features = context_windows(features, config.n_context, backend=backend)
    return np.ascontiguousarray(features, dtype=np.float32)


def _check_finite_features(
    features: np.ndarray, samples: np.ndarray, where: str
) -> None:
    """NaN or infinite input makes non-finite features; only then scan the input."""
    if np.isfinite(features).all():
        return
    audio.check_finite_samples(samples, where)
    raise AudioError(
        f"{where}: features are not finite although every sample is; samples far "
        f"outside [-1, 1) (largest magnitude {float(np.abs(samples).max()):g})?"
    )


def mfcc(
    signal,
    sample_rate: int = C.SAMPLE_RATE,
    *,
    backend: str | ModuleType | None = None,
    **settings,
) -> np.ndarray:
    """DeepSpeech 0.9's MFCC (TensorFlow's AudioSpectrogram + Mfcc) of ``signal``.

    Parameters
    ----------
    signal : float array in [-1, 1), int16 array, or int16 PCM bytes, shape (N,)
    sample_rate : int
        Rate of ``signal`` in Hz. ``upper_frequency`` defaults to half of it, as
        DeepSpeech sets it.
    backend : str or module, optional
    **settings
        Any :class:`~npspeech.config.FeatureConfig` field: ``window_ms``, ``step_ms``,
        ``n_fft``, ``window``, ``n_mfcc``, ``n_mels``, ``lower_frequency``,
        ``upper_frequency``, ``log_floor``, ``n_context``, ...

    Returns
    -------
    float32 array, shape (1 + (N - 512) // 320, 26) with the defaults.
    """
    settings.setdefault("upper_frequency", sample_rate / 2)
    config = default_config("mfcc", sample_rate=sample_rate, **settings)
    return compute(signal, config, backend=backend)


def fbank(
    signal,
    sample_rate: int = C.SAMPLE_RATE,
    *,
    backend: str | ModuleType | None = None,
    **settings,
) -> np.ndarray:
    """Log-mel filterbank energies (``kind="fbank"``), float32 (T, n_mels).

    ``upper_frequency`` defaults to half of ``sample_rate``; other settings as
    :func:`mfcc`.
    """
    settings.setdefault("upper_frequency", sample_rate / 2)
    config = default_config("fbank", sample_rate=sample_rate, **settings)
    return compute(signal, config, backend=backend)


def log_spectrogram(
    signal,
    sample_rate: int = C.SAMPLE_RATE,
    *,
    stats: FeatureStats | None = None,
    backend: str | ModuleType | None = None,
    **settings,
) -> np.ndarray:
    """DeepSpeech2's normalised log-spectrogram, float32 (T, n_fft // 2 + 1).

    Defaults: 20 ms Hann window, 10 ms step, ``log1p`` of the magnitude, per-utterance
    normalisation (161 bins at 16 kHz). Settings as :func:`mfcc`.
    """
    config = default_config("spectrogram", sample_rate=sample_rate, **settings)
    return compute(signal, config, stats=stats, backend=backend)


def context_windows(
    features: np.ndarray, n_context: int, *, backend: str | ModuleType | None = None
) -> np.ndarray:
    """Each frame with ``n_context`` frames on either side, zero beyond the ends.

    Row ``t`` is frames ``t - n_context, ..., t + n_context`` concatenated in time
    order, the layout of DeepSpeech's ``create_overlapping_windows`` (with ``n_context =
    9`` and 26 MFCC, 19 x 26 = 494 values).

    Parameters
    ----------
    features : array, shape (T, F)
    n_context : int

    Returns
    -------
    array, shape (T, (2 * n_context + 1) * F), the input's dtype
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ConfigError(
            f"context_windows: expected features (T, F), got {features.shape}"
        )
    if int(n_context) != n_context or n_context < 0:
        raise ConfigError(f"context_windows: n_context must be >= 0, got {n_context!r}")
    kernels = get_backend(backend)
    return kernels.context_windows(np.ascontiguousarray(features), int(n_context))


# --- normalisation --------------------------------------------------------------------


def normalize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(features - mean) / max(std, floor)`` per feature dimension.

    Parameters
    ----------
    features : float array, shape (T, F)
    mean, std : float arrays, shape (F,)

    Returns
    -------
    array, shape (T, F), the features' dtype
    """
    features = np.asarray(features)
    mean, std = np.asarray(mean), np.asarray(std)
    if (
        features.ndim != 2
        or mean.shape != (features.shape[1],)
        or std.shape != mean.shape
    ):
        raise ConfigError(
            f"normalize: features {features.shape} need mean and std of shape "
            f"({features.shape[-1]},), got {mean.shape} and {std.shape}"
        )
    scale = 1.0 / np.maximum(std, C.NORMALIZE_STD_FLOOR)
    return ((features - mean) * scale).astype(features.dtype, copy=False)


def normalize_utterance(features: np.ndarray) -> np.ndarray:
    """Per-utterance mean/variance normalisation over time: (T, F) -> (T, F)."""
    return normalize(features, features.mean(axis=0), features.std(axis=0))


def _normalize_for(
    features: np.ndarray, config: FeatureConfig, stats: FeatureStats | None
) -> np.ndarray:
    if config.normalize == "utterance":
        return normalize_utterance(features)
    if config.normalize == "global":
        if stats is None or stats.count == 0:
            raise ConfigError(
                "features.normalize: 'global' needs FeatureStats gathered over a corpus"
            )
        return normalize(features, stats.mean, stats.std)
    return features


class FeatureStats:
    """Running mean and standard deviation of feature frames over a corpus.

    Accumulates in float64 with Chan et al.'s pairwise update, so a long corpus neither
    overflows nor loses the variance to cancellation. ``update`` takes one utterance's
    ``(T, F)`` features (before normalisation and context windows); ``merge`` combines
    statistics gathered in parallel.

    Attributes
    ----------
    count : int
        Frames seen.
    mean : float64 array, shape (F,)
    std : float64 array, shape (F,)
    """

    def __init__(self, n_features: int | None = None):
        self.count = 0
        self._mean = None if n_features is None else np.zeros(n_features)
        self._m2 = (
            None if n_features is None else np.zeros(n_features)
        )  # sum of sq. dev.

    def update(self, features: np.ndarray) -> FeatureStats:
        """Add the frames of ``features`` (T, F); returns self."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise ConfigError(
                f"FeatureStats.update: expected (T, F), got {features.shape}"
            )
        if features.shape[0] == 0:
            return self
        batch_mean = features.mean(axis=0)
        batch_m2 = ((features - batch_mean) ** 2).sum(axis=0)
        self._combine(features.shape[0], batch_mean, batch_m2)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold ``other``'s frames into these statistics; returns self."""
        if other.count:
            self._combine(other.count, other._mean, other._m2)
        return self

    def _combine(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if self._mean is not None and self._mean.shape != mean.shape:
            raise ConfigError(
                f"FeatureStats: frames of {mean.shape[0]} features added to statistics "
                f"of {self._mean.shape[0]}"
            )
        if self.count == 0:
            self.count, self._mean, self._m2 = count, mean.copy(), m2.copy()
            return
        total = self.count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The statistics as arrays (to store beside a model, e.g. with ``np.savez``).

        Returns
        -------
        dict with ``count`` (int64, shape ()), ``mean`` and ``m2`` (float64, (F,);
        ``m2`` is the sum of squared deviations from the mean).
        """
        return {
            "count": np.asarray(self.count, dtype=np.int64),
            "mean": self.mean,
            "m2": np.zeros(0) if self._m2 is None else self._m2.copy(),
        }

    @classmethod
    def from_arrays(cls, arrays, where: str = "feature statistics") -> FeatureStats:
        """Inverse of :meth:`to_arrays`; ``where`` names the source in errors."""
        try:
            count = int(np.asarray(arrays["count"]))
            mean = np.asarray(arrays["mean"], dtype=np.float64).copy()
            m2 = np.asarray(arrays["m2"], dtype=np.float64).copy()
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(
                f"{where}: expected count, mean and m2 ({error})"
            ) from None
        if mean.ndim != 1 or m2.shape != mean.shape or count < 0:
            raise ConfigError(
                f"{where}: count {count}, mean {mean.shape} and m2 {m2.shape} "
                "do not fit together"
            )
        if not (np.isfinite(mean).all() and np.isfinite(m2).all() and (m2 >= 0).all()):
            raise ConfigError(f"{where}: mean or m2 not finite, or m2 negative")
        stats = cls()
        if count:
            stats.count, stats._mean, stats._m2 = count, mean, m2
        return stats

    @property
    def mean(self) -> np.ndarray:
        """float64 (F,) mean of every frame seen (empty before the first update)."""
        return np.zeros(0) if self._mean is None else self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        """float64 (F,) population standard deviation of every frame seen."""
        if self._m2 is None or self.count == 0:
            return np.zeros(0) if self._m2 is None else np.zeros_like(self._m2)
        return np.sqrt(self._m2 / self.count)


# --- streaming ------------------------------------------------------------------------


class FeatureStream:
    """Features of audio that arrives in chunks, equal to :func:`compute` on the whole.

    ``feed`` takes a chunk of any length (even shorter than a frame) and returns the
    frames it completed; ``finish`` returns what is left and resets the stream. The
    frames returned over a stream, concatenated, equal ``compute`` of the concatenated
    audio (``finish`` of a stream that never filled one window returns no frames, where
    ``compute`` would raise).

    Samples are kept until no later frame needs them (at most ``W - 1`` plus a chunk).
    With ``n_context > 0`` a frame's window needs the ``n_context`` frames after it, so
    frame ``t`` is returned once frame ``t + n_context`` exists; ``finish`` returns the
    held-back frames with zeros as their right context, as :func:`context_windows` pads
    the end of an utterance. Per-utterance normalisation needs the whole utterance and
    is refused; ``"global"`` normalisation with ``stats`` streams.

    Parameters
    ----------
    config : FeatureConfig, optional
    stats : FeatureStats, optional
        For ``normalize="global"``.
    backend : str or module, optional
        The kernels; default ``$NPSPEECH_BACKEND`` or numba, imported at the first
        frame rather than here (a stream whose frames all run on an explicit
        backend never imports the default one).

    Attributes
    ----------
    backend : str, module or None
        The kernels of the next ``feed`` or ``finish``. It may change between calls:
        what the stream keeps is plain float32 arrays, and every backend computes
        the same frames to float tolerance (:class:`npspeech.stream.Stream` runs a
        short stream on the NumPy reference this way, then on the compiled kernels).
    """

    def __init__(
        self,
        config: FeatureConfig | None = None,
        *,
        stats: FeatureStats | None = None,
        backend: str | ModuleType | None = None,
    ):
        self.config = FeatureConfig() if config is None else config
        check_config(self.config)
        if self.config.normalize == "utterance":
            raise ConfigError(
                "features.normalize: 'utterance' needs the whole utterance and cannot "
                "stream; use 'global' with FeatureStats"
            )
        if self.config.normalize == "global" and (stats is None or stats.count == 0):
            raise ConfigError(
                "features.normalize: 'global' needs FeatureStats gathered over a corpus"
            )
        self.stats = stats
        if backend is not None:
            get_backend(backend)  # a bad name fails here, not at the first frame
        self.backend = backend
        self._base = dataclasses.replace(self.config, n_context=0)  # frames, no context
        self._base_width = n_features(self._base)
        self.reset()

    def reset(self) -> None:
        """Forget all audio and frames: the next ``feed`` starts a new utterance."""
        n = self.config.n_context
        self._samples = np.zeros(0, dtype=np.float32)  # not yet consumed by a frame
        self._history = np.zeros(
            (n, self._base_width), dtype=np.float32
        )  # left context
        self._pending = np.zeros(
            (0, self._base_width), dtype=np.float32
        )  # awaiting right

    def n_new_frames(self, n_samples: int) -> int:
        """How many frames ``feed`` of ``n_samples`` more samples would return (a
        caller that picks the kernels per chunk asks this first)."""
        T = n_frames(self._samples.shape[0] + int(n_samples), self.config)
        n = self.config.n_context
        return T if n == 0 else max(self._pending.shape[0] + T - n, 0)

    def feed(self, chunk) -> np.ndarray:
        """Add samples (float, int16 or PCM bytes); returns the completed frames.

        Returns
        -------
        float32 array, shape (T_new, F)
        """
        chunk = audio.to_float32(chunk, where="stream chunk")
        self._samples = np.concatenate([self._samples, chunk])
        T = n_frames(self._samples.shape[0], self.config)
        if T == 0:
            return self._emit(np.zeros((0, self._base_width), dtype=np.float32), False)
        kernels = get_backend(self.backend)  # may differ from the last feed's
        frames = _frames(kernels, self._samples, self._base)  # (T, F0)
        frames = _normalize_for(frames, self._base, self.stats)
        self._samples = self._samples[T * self.config.step_samples :].copy()
        return self._emit(frames, False)

    def finish(self) -> np.ndarray:
        """The frames still held back, float32 (T_rest, F); then the stream is reset."""
        out = self._emit(np.zeros((0, self._base_width), dtype=np.float32), True)
        self.reset()
        return out

    def _emit(self, frames: np.ndarray, final: bool) -> np.ndarray:
        n = self.config.n_context
        frames = np.asarray(frames, dtype=np.float32)
        if n == 0:
            return np.ascontiguousarray(frames)
        pending = np.concatenate([self._pending, frames])  # (P, F0)
        ready = pending.shape[0] if final else max(pending.shape[0] - n, 0)
        if ready == 0:
            self._pending = pending
            return np.zeros((0, n_features(self.config)), dtype=np.float32)
        right = np.zeros((n, self._base_width), dtype=np.float32) if final else None
        parts = [self._history, pending] + ([right] if final else [])
        padded = np.concatenate(parts)  # (n + P [+ n], F0): row j is frame j - n
        # The windows of frames 0..ready-1 of ``pending`` only read rows < ready + 2n.
        windows = context_windows(padded[: ready + 2 * n], n, backend=self.backend)
        out = windows[n : n + ready]  # (ready, (2n+1) F0)
        self._history = padded[ready : ready + n].copy()
        self._pending = pending[ready:].copy()
        return np.ascontiguousarray(out, dtype=np.float32)


__all__ = [
    "KINDS",
    "FeatureStats",
    "FeatureStream",
    "MelBank",
    "check_config",
    "compute",
    "context_windows",
    "dct_matrix",
    "default_config",
    "fbank",
    "hz_to_mel",
    "log_spectrogram",
    "mel_to_hz",
    "mfcc",
    "n_features",
    "n_frames",
    "normalize",
    "normalize_utterance",
    "tf_mel_bank",
    "triangular_mel_bank",
    "window_function",
]
