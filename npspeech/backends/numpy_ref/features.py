"""features kernels of the numpy_ref backend: the readable spec of the front end.

Shape legend: N samples, W window length, K = n_fft // 2 + 1 spectrum bins, T frames,
C mel channels, D cepstral coefficients, F features per frame.

Every kernel frames the signal the same way: ``T = 1 + (N - W) // step`` frames of ``W``
samples (no padding, nothing for ``N < W``), frame ``t`` starting at sample ``t *
step``, multiplied by the window and zero-padded to ``n_fft`` before the FFT. This is
TensorFlow's ``AudioSpectrogram`` framing, which DeepSpeech uses.

A mel filterbank arrives as a ``bank`` object (``npspeech.features.MelBank``) that
describes, for every spectrum bin ``k``, the channel on its left (``lower_channel[k]``,
-1 for none) and the weights it gives to that channel and to the next one
(``lower_weight[k]``, ``upper_weight[k]``); ``bank.magnitude`` says whether the filters
weigh the magnitude (TensorFlow's Mfcc) or the power (the usual log-mel). Here it is
expanded into a dense ``(K, C)`` matrix, the plainest way to apply it.

The kernels trust their inputs: a C-contiguous 1-D float signal, ``N >= W``; they keep
the input's float dtype (float32 in, float32 out), so the reference also runs in
float64. The window, the FFT and the power spectrum are float64 whatever the input,
as in TensorFlow's ``AudioSpectrogram``: a float32 FFT's rounding error is relative to
the frame's strongest bin and swamps bins far below it (a pure tone's or a chirp's
MFCC then differs from TensorFlow's by up to 5.7e-3).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "power_spectrum",
    "log_spectrogram",
    "log_mel_spectrum",
    "mfcc_frames",
    "context_windows",
]


def _frames(signal: np.ndarray, window: np.ndarray, step: int) -> np.ndarray:
    """(T, W) float64 windowed frames: frame t is ``signal[t*step : t*step + W] *
    window``."""
    W = window.shape[0]
    strided = np.lib.stride_tricks.sliding_window_view(signal, W)[::step]  # (T, W) view
    return strided * np.asarray(window, dtype=np.float64)  # float64 products


def power_spectrum(
    signal: np.ndarray, window: np.ndarray, step: int, n_fft: int
) -> np.ndarray:
    """Squared magnitude of the FFT of each windowed frame.

    Parameters
    ----------
    signal : array, shape (N,), float32 or float64
    window : array, shape (W,), float
        The analysis window (``W <= n_fft``); frames are zero-padded to ``n_fft``.
    step : int
        Hop between frame starts, in samples.
    n_fft : int
        FFT size.

    Returns
    -------
    array, shape (T, n_fft // 2 + 1), the signal's dtype
        ``|X_t[k]|^2``, unscaled (TensorFlow's ``magnitude_squared=True``), computed in
        float64 and then cast.
    """
    # numpy.fft (pocketfft, float64 like scipy.fft): importing scipy.fft takes longer
    # than a short decode's whole front end
    spectrum = np.fft.rfft(_frames(signal, window, step), n=n_fft, axis=1)  # (T, K)
    return (spectrum.real**2 + spectrum.imag**2).astype(signal.dtype)  # float64 power


def log_spectrogram(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    log_mode: str,
    log_floor: float,
) -> np.ndarray:
    """DeepSpeech2's log-spectrogram.

    Parameters
    ----------
    signal, window, step, n_fft
        As for :func:`power_spectrum`.
    log_mode : {"log1p", "log"}
        ``"log1p"``: ``log(1 + |X|)`` of the magnitude (deepspeech.pytorch's
        convention); ``"log"``: ``log(max(|X|^2, log_floor))`` of the power
        (PaddlePaddle DS2's).
    log_floor : float

    Returns
    -------
    array, shape (T, n_fft // 2 + 1), the signal's dtype
    """
    power = power_spectrum(signal, window, step, n_fft)
    if log_mode == "log1p":
        return np.log1p(np.sqrt(power))
    return np.log(np.maximum(power, signal.dtype.type(log_floor)))


def _dense_bank(bank, n_bins: int, dtype: np.dtype) -> np.ndarray:
    """(K, C) matrix of the sparse ``bank``: column c is channel c's filter."""
    dense = np.zeros((n_bins, bank.n_channels), dtype=np.float64)
    for k in range(n_bins):
        channel = int(bank.lower_channel[k])
        if channel >= 0:
            dense[k, channel] += bank.lower_weight[k]
        if channel + 1 < bank.n_channels:
            dense[k, channel + 1] += bank.upper_weight[k]
    return dense.astype(dtype)


def log_mel_spectrum(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    bank,
    log_floor: float,
) -> np.ndarray:
    """Log mel filterbank energies: ``log(max(spectrum @ filters, log_floor))``.

    Parameters
    ----------
    signal, window, step, n_fft
        As for :func:`power_spectrum`.
    bank : npspeech.features.MelBank
        The filters; ``bank.magnitude`` chooses ``sqrt(power)`` (TensorFlow's Mfcc) or
        the power itself as what they weigh.
    log_floor : float

    Returns
    -------
    array, shape (T, C), the signal's dtype
    """
    power = power_spectrum(signal, window, step, n_fft)  # (T, K)
    spectrum = np.sqrt(power) if bank.magnitude else power
    energies = spectrum @ _dense_bank(bank, power.shape[1], signal.dtype)  # (T, C)
    return np.log(np.maximum(energies, signal.dtype.type(log_floor)))


def mfcc_frames(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    bank,
    dct: np.ndarray,
    log_floor: float,
) -> np.ndarray:
    """MFCC: the DCT of the log mel energies, as TensorFlow's ``Mfcc`` op computes it.

    Parameters
    ----------
    signal, window, step, n_fft, bank, log_floor
        As for :func:`log_mel_spectrum`.
    dct : array, shape (C, D), float
        DCT-II matrix (``npspeech.features.dct_matrix``); column d gives coefficient d.

    Returns
    -------
    array, shape (T, D), the signal's dtype
    """
    log_mel = log_mel_spectrum(signal, window, step, n_fft, bank, log_floor)  # (T, C)
    # In float64, as TensorFlow's MfccDct: coefficient 0 sums C logarithms of up to ~28
    # each (log 1e-12 in silence), where float32's rounding alone reaches 7e-5.
    return (log_mel @ np.asarray(dct, dtype=np.float64)).astype(signal.dtype)  # (T, D)


def context_windows(features: np.ndarray, n_context: int) -> np.ndarray:
    """Stack each frame with ``n_context`` frames on each side, zero beyond the ends.

    Row ``t`` is frames ``t - n_context .. t + n_context`` concatenated in time order,
    DeepSpeech's ``create_overlapping_windows`` layout.

    Parameters
    ----------
    features : array, shape (T, F)
    n_context : int

    Returns
    -------
    array, shape (T, (2 * n_context + 1) * F), the input's dtype
    """
    T, F = features.shape
    width = 2 * n_context + 1
    padded = np.zeros((T + 2 * n_context, F), dtype=features.dtype)  # (T + 2c, F)
    padded[n_context : n_context + T] = features
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, width, axis=0
    )  # (T, F, 2c+1)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)).reshape(T, width * F)
