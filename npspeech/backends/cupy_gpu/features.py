"""features kernels of the cupy_gpu backend: the front end on the device.

The same names, signatures and results as :mod:`npspeech.backends.numpy_ref.features`
(read it for the framing and the filterbank). Frames are a strided view of the signal
multiplied by the window, the FFT is cuFFT (``cupy.fft.rfft``), the mel filterbank and
the DCT are GEMMs against dense matrices built once on the host per call. As in the
reference, the window, the FFT and the power are float64 whatever the input (a float32
FFT's rounding is relative to the frame's strongest bin), and so is the DCT.

Shape legend: N samples, W window length, K bins, T frames, C mel channels,
D coefficients, F features per frame.
"""

from __future__ import annotations

import numpy as np

from ..numpy_ref.features import _dense_bank
from ._runtime import cupy, follow_input

__all__ = [
    "power_spectrum",
    "log_spectrogram",
    "log_mel_spectrum",
    "mfcc_frames",
    "context_windows",
]


def _frames(signal, window, step: int):
    """(T, W) float64 windowed frames of a device signal."""
    xp = cupy()
    W = window.shape[0]
    T = 1 + (signal.shape[0] - W) // step
    (stride,) = signal.strides
    view = xp.lib.stride_tricks.as_strided(
        signal, shape=(T, W), strides=(stride * step, stride)
    )  # (T, W), frame t at sample t * step
    return view * xp.asarray(window, dtype=np.float64)


def _power(signal, window, step, n_fft):
    spectrum = cupy().fft.rfft(_frames(signal, window, step), n=n_fft, axis=1)
    return (spectrum.real**2 + spectrum.imag**2).astype(signal.dtype)  # (T, K)


@follow_input()
def power_spectrum(signal, window, step, n_fft):
    """``|X_t[k]|^2`` of each windowed frame: (T, n_fft // 2 + 1)."""
    return _power(signal, window, step, n_fft)


@follow_input()
def log_spectrogram(signal, window, step, n_fft, log_mode, log_floor):
    """DeepSpeech2's log-spectrogram (``log1p`` of the magnitude or ``log`` of the
    floored power): (T, n_fft // 2 + 1)."""
    xp = cupy()
    power = _power(signal, window, step, n_fft)
    if log_mode == "log1p":
        return xp.log1p(xp.sqrt(power))
    return xp.log(xp.maximum(power, signal.dtype.type(log_floor)))


def _log_mel(signal, window, step, n_fft, bank, log_floor):
    xp = cupy()
    power = _power(signal, window, step, n_fft)  # (T, K)
    spectrum = xp.sqrt(power) if bank.magnitude else power
    filters = xp.asarray(_dense_bank(bank, power.shape[1], signal.dtype))  # (K, C)
    energies = spectrum @ filters  # (T, C)
    return xp.log(xp.maximum(energies, signal.dtype.type(log_floor)))


@follow_input()
def log_mel_spectrum(signal, window, step, n_fft, bank, log_floor):
    """Log mel filterbank energies: (T, C)."""
    return _log_mel(signal, window, step, n_fft, bank, log_floor)


@follow_input()
def mfcc_frames(signal, window, step, n_fft, bank, dct, log_floor):
    """MFCC as TensorFlow's ``Mfcc`` op: the DCT of the log mel energies, (T, D)."""
    log_mel = _log_mel(signal, window, step, n_fft, bank, log_floor)  # (T, C)
    return (log_mel @ cupy().asarray(dct, dtype=np.float64)).astype(signal.dtype)


@follow_input()
def context_windows(features, n_context):
    """Each frame with ``n_context`` frames on each side, zero beyond the ends:
    (T, F) -> (T, (2 n_context + 1) F)."""
    xp = cupy()
    T, F = features.shape
    width = 2 * n_context + 1
    padded = xp.zeros((T + 2 * n_context, F), dtype=features.dtype)
    padded[n_context : n_context + T] = features
    s0, s1 = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(T, width, F), strides=(s0, s0, s1)
    )  # (T, 2c+1, F): row t starts at padded frame t
    return xp.ascontiguousarray(windows).reshape(T, width * F)
