"""The MFCC against TensorFlow's AudioSpectrogram + Mfcc on signals hard for it.

The expected values come from :func:`tf_mfcc`, a float64 re-statement of TensorFlow's
two ops written from their description (DESIGN.md, "Compatibility targets") without any
of npspeech's own filterbank or DCT code. TensorFlow computes the window, the FFT and
the power in double precision and hands the power to ``Mfcc`` as float32; ``Mfcc``
then works in double again. A float32 FFT loses the bins far below a frame's strongest
one, which is what a pure tone or a chirp has (5.7e-3 on a 2 s chirp when npspeech's
FFT was float32).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.tolerances import FEATURES_TF_ATOL_FLOAT32

from npspeech import audio, features

SAMPLE_RATE = 16_000


def _mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def tf_mfcc(signal: np.ndarray) -> np.ndarray:
    """(T, 26) float64 MFCC of a float signal as DeepSpeech's TensorFlow graph makes it.

    AudioSpectrogram(window_size=512, stride=320, magnitude_squared=True), then
    Mfcc(sample_rate=16000, lower 20 Hz, upper 8000 Hz, 40 channels, 26 coefficients).
    """
    signal = np.asarray(signal, dtype=np.float64)
    W, step, n_bins, channels = 512, 320, 257, 40
    T = 1 + (signal.shape[0] - W) // step
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(W) / W)  # periodic Hann
    frames = np.stack([signal[t * step : t * step + W] for t in range(T)]) * window
    spectrum = np.fft.rfft(frames, n=512, axis=1)  # (T, 257) complex128
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)  # the op's output
    power = power.astype(np.float64)  # Mfcc reads it into doubles

    # MfccMelFilterbank: 41 centres equally spaced in mel between the limits.
    hz_per_bin = 0.5 * SAMPLE_RATE / (n_bins - 1)
    low, high = _mel(20.0), _mel(8000.0)
    centres = low + (high - low) / (channels + 1) * np.arange(1, channels + 2)
    first, last = int(1.5 + 20.0 / hz_per_bin), int(8000.0 / hz_per_bin)
    energies = np.zeros((T, channels))
    for k in range(first, last + 1):
        m = _mel(k * hz_per_bin)
        right = int(np.searchsorted(centres, m))  # first centre >= m
        left = right - 1  # the channel on the bin's left; -1 below the first centre
        if left >= 0:
            weight = (centres[left + 1] - m) / (centres[left + 1] - centres[left])
        else:
            weight = (centres[0] - m) / (centres[0] - low)
        magnitude = np.sqrt(power[:, k])
        if left >= 0:
            energies[:, left] += weight * magnitude
        if left + 1 < channels:
            energies[:, left + 1] += magnitude - weight * magnitude
    log_energies = np.log(np.maximum(energies, 1e-12))

    # MfccDct: DCT-II with the uniform scale sqrt(2 / 40), the first 26 coefficients.
    j = np.arange(channels)
    cosines = np.stack(
        [math.sqrt(2.0 / channels) * np.cos(np.pi / channels * (j + 0.5) * i)
         for i in range(26)],
        axis=1,
    )  # fmt: skip  # (40, 26)
    return log_energies @ cosines


def as_wav(signal: np.ndarray) -> np.ndarray:
    """float32 samples as a 16-bit WAV file gives them (int16 / 32768)."""
    pcm = np.clip(np.round(signal * 32768.0), -32768, 32767).astype(np.int16)
    return pcm.astype(np.float32) / np.float32(32768.0)


def pure_tone(seconds=2.0, frequency=1000.0, amplitude=0.5):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return as_wav(amplitude * np.sin(2 * np.pi * frequency * t))


def chirp(seconds=2.0, start=100.0, stop=7900.0, amplitude=0.8):
    """A linear sweep: one strong bin per frame, tens of decibels above the rest."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * (start * t + (stop - start) / (2 * seconds) * t**2)
    return as_wav(amplitude * np.sin(phase))


def speech_like(seconds=2.0, seed=0):
    """Harmonics of a moving pitch, some noise, a stretch of digital silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t))
    signal = sum(np.sin(h * phase / SAMPLE_RATE) / h for h in range(1, 12)) * 0.1
    signal = signal + 0.01 * rng.standard_normal(n)
    signal[n // 3 : n // 3 + 4000] = 0.0
    return as_wav(signal)


SIGNALS = {
    "pure tone 1 kHz": pure_tone,
    "pure tone 187.5 Hz on a bin": lambda: pure_tone(frequency=187.5, amplitude=0.9),
    "low tone 50 Hz": lambda: pure_tone(frequency=50.0, amplitude=0.3),
    "chirp 2 s": chirp,
    "silence": lambda: np.zeros(2 * SAMPLE_RATE, dtype=np.float32),
    "one LSB square wave": lambda: as_wav(
        np.where(np.arange(SAMPLE_RATE) % 64 < 32, 1.0, -1.0) / 32768.0
    ),
    "speech-like": speech_like,
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_mfcc_equals_tensorflow_to_1e4(name, backend):
    signal = SIGNALS[name]()
    expected = tf_mfcc(signal)
    actual = features.mfcc(signal, backend=backend)
    assert actual.shape == expected.shape and actual.dtype == np.float32
    worst = float(np.abs(actual - expected).max())
    assert worst <= FEATURES_TF_ATOL_FLOAT32, f"{name}: {worst:.2e}"


def test_the_chirp_is_hard_for_a_float32_fft():
    """The test can fail: with a float32 FFT the chirp's MFCC misses by far more."""
    import scipy.fft

    signal = chirp()
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(512) / 512)
    frames = np.lib.stride_tricks.sliding_window_view(signal, 512)[::320]  # (T, 512)
    plan = features._plan(features.FeatureConfig())

    def mfcc_from(spectrum):  # (T, 257) complex -> (T, 26), the rest in float64
        power = (np.abs(spectrum) ** 2).astype(np.float32).astype(np.float64)
        return np.log(np.maximum(np.sqrt(power) @ plan.bank.dense(), 1e-12)) @ plan.dct

    single = scipy.fft.rfft((frames * window).astype(np.float32), axis=1)
    assert single.dtype == np.complex64
    double = scipy.fft.rfft(frames * window, axis=1)
    assert np.abs(mfcc_from(double) - tf_mfcc(signal)).max() <= 1e-5
    assert np.abs(mfcc_from(single) - tf_mfcc(signal)).max() > 1e-3


@pytest.mark.data
def test_ldc93s1_mfcc_equals_tensorflow_to_1e4(data_dir):
    signal = audio.load(data_dir / "deepspeech_smoke" / "wav" / "LDC93S1.wav")
    expected = tf_mfcc(signal)
    for backend in ("numba", "numpy"):
        actual = features.mfcc(signal, backend=backend)
        assert np.abs(actual - expected).max() <= FEATURES_TF_ATOL_FLOAT32


@pytest.mark.data
def test_reference_recomputes_the_recorded_tensorflow_frames(data_dir):
    """tf_mfcc itself against TensorFlow's own numbers, recorded in test_features."""
    from test_features import TF_LDC93S1_MFCC

    signal = audio.load(data_dir / "deepspeech_smoke" / "wav" / "LDC93S1.wav")
    expected = tf_mfcc(signal)
    for frame, values in TF_LDC93S1_MFCC.items():
        np.testing.assert_allclose(expected[frame], values, atol=1e-5)
