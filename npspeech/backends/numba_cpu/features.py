"""features kernels of the numba_cpu backend: the numpy_ref kernels, fast.

Shape legend: N samples, W window length, K = n_fft // 2 + 1 spectrum bins,
M = n_fft // 2, T frames, C mel channels, D cepstral coefficients, F features per frame.

Where the time goes, and what is done about it (60 s of 16 kHz audio with DeepSpeech's
settings is 3000 frames of 512 samples; see ``benchmarks/bench_features.py``):

- The FFT is the largest part. Numba cannot do FFTs, so ``scipy.fft`` does them, one
  call over all frames. A real FFT of size ``n_fft`` is computed as a complex FFT of
  size ``M = n_fft / 2`` of the frame's even samples (real part) and odd samples
  (imaginary part), in place: the windowed frames are written straight into that packed
  layout (a float64 ``(T, n_fft)`` buffer *is* a complex128 ``(T, M)`` array of (even,
  odd) pairs), and an in-place complex transform allocates nothing. This is about 30 %
  faster than ``scipy.fft.rfft`` on the same frames here.
- The window, the FFT and the power are float64, as in TensorFlow's
  ``AudioSpectrogram`` (DeepSpeech's front end): a float32 FFT's rounding error is
  relative to the frame's strongest bin, so it swamps the bins tens of decibels below
  it, and on a pure 2 s chirp the MFCC then differed from TensorFlow's by up to 5.7e-3.
  In float64 they agree to 1e-5. It costs about 1 ms per 60 s of audio here (complex128
  against complex64 transforms); the spectrum is cast to float32 once it is a power or
  a magnitude, where float32's relative precision is all the rest needs.
- Unpacking the real FFT's bins, ``X[k] = E[k] + w^k O[k]`` with ``w = exp(-2 pi i /
  n_fft)``, ``E[k] = (Z[k] + conj Z[M - k]) / 2`` and ``O[k] = (Z[k] - conj Z[M - k]) /
  2i`` (the FFTs of the even and odd samples), is fused with the power and the square
  root: bins ``k`` and ``M - k`` come from the same pair ``Z[k], Z[M - k]``, since
  ``X[M - k] = conj(E[k] - w^k O[k])``.
- Framing, FFT and unpacking run block by block (512 KiB of frames, kept per thread
  between calls), so each block stays in cache through all three. The framing reads
  each sample once per frame it belongs to; inner loops run over 1-D row views (2.5
  times faster here than indexing the 2-D arrays in the loop).
- The mel filterbank: each channel's filter is nonzero on a run of ~13 of the 257
  bins, so a dense product multiplies mostly zeros, and a scalar loop per frame (at
  most two channels per bin) is bound by the latency of its running sums. So for the
  filterbank each block's spectrum is unpacked with frames in columns (``(K, n)``,
  still in cache) and every channel sums its own bins with the frames as the inner,
  vectorised loop: 0.4 ms for 3000 frames here (root included), against 1.1 ms for
  a loop over each channel's bins frame by frame and ~3 ms for one BLAS product over
  the whole (T, K) spectrum (measured at a load of 3).
  The DCT is a BLAS product; ``log`` runs on whole arrays with NumPy's SIMD float32
  ``log``.

The spectrum and filterbank kernels use fast-math (minus the no-NaN/no-inf
assumptions): they square, add (the filterbank's sums reassociated, as a BLAS product
sums) and take square roots, with no log-space quantity in them. Everything is
single-threaded (BLAS follows its own thread setting).

The kernels have numpy_ref's names and signatures and trust their inputs; whatever
float dtype the signal has, they compute the spectrum in float64 and the rest in
float32 (the DCT in float64: its coefficient 0 sums forty logarithms near -28), and
return float32.
"""

from __future__ import annotations

import functools
import math
import threading

import numba
import numpy as np
import scipy.fft

__all__ = [
    "power_spectrum",
    "log_spectrogram",
    "log_mel_spectrum",
    "mfcc_frames",
    "context_windows",
]

_SCRATCH = threading.local()
#: Bytes of float64 frames per block of the spectrum (a quarter of a 2 MiB L2 cache).
BLOCK_BYTES = 1 << 19


def _scratch(n_values: int) -> np.ndarray:
    """A per-thread float64 buffer of at least ``n_values``, reused between calls."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.shape[0] < n_values:
        buffer = np.empty(n_values, dtype=np.float64)
        _SCRATCH.buffer = buffer
    return buffer[:n_values]


@functools.lru_cache(maxsize=16)
def _twiddles(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 cos and sin of ``2 pi k / n_fft`` for k = 0..M, each shaped (M + 1,)."""
    angles = 2.0 * np.pi * np.arange(n_fft // 2 + 1) / n_fft
    cosines, sines = np.cos(angles), np.sin(angles)
    cosines.setflags(write=False)
    sines.setflags(write=False)
    return cosines, sines


@functools.lru_cache(maxsize=16)
def _channel_filters(bank) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each channel's filter as a run of bins: ``starts``, ``stops`` (C,) int64 and
    ``filters`` (C, K) float32, zero outside ``starts[c] <= k < stops[c]`` (a mel
    filter spans the bins between its neighbours' centres: 2 to 26, 13 on average, of
    257 with DeepSpeech's 40 channels)."""
    filters = np.ascontiguousarray(bank.dense().T, dtype=np.float32)  # (C, K)
    starts = np.zeros(bank.n_channels, dtype=np.int64)
    stops = np.zeros(bank.n_channels, dtype=np.int64)
    for c, row in enumerate(filters):
        used = np.flatnonzero(row)
        if used.size:
            starts[c], stops[c] = used[0], used[-1] + 1
    for array in (starts, stops, filters):
        array.setflags(write=False)
    return starts, stops, filters


@numba.njit(cache=True)
def _frame_packed(signal, window, step, out):  # pragma: no cover - compiled
    """Write windowed frames into ``out`` (T, n_fft) float64, zero-padded past W."""
    T, n_fft = out.shape
    W = window.shape[0]
    for t in range(T):
        source = signal[t * step : t * step + W]  # 1-D views: the loops vectorise
        target = out[t]
        for n in range(W):
            target[n] = source[n] * window[n]
        for n in range(W, n_fft):
            target[n] = 0.0


# Fast-math without "nnan"/"ninf": NaN or infinite input must stay NaN/inf, so that
# features.compute can notice it and name the bad sample.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@numba.njit(cache=True, fastmath=_FASTMATH)
def _spectrum_from_packed(z, cosines, sines, magnitude, out):  # pragma: no cover
    """Fill ``out`` (T, K) float32 with ``|X[k]|^2`` (or ``|X[k]|`` when
    ``magnitude``); the power is computed in float64 from ``z`` (T, 2M) float64, row t
    interleaving re, im of frame t's packed M-point FFT."""
    T, K = out.shape
    M = K - 1
    half = 0.5
    for t in range(T):
        row = z[t]
        spectrum = out[t]
        # k = 0 and k = M: E = Re Z[0], O = Im Z[0], w^0 = 1, w^M = -1.
        spectrum[0] = (row[0] + row[1]) ** 2
        spectrum[M] = (row[0] - row[1]) ** 2
        for k in range(1, M // 2 + 1):
            j = M - k
            a_r, a_i = row[2 * k], row[2 * k + 1]  # Z[k]
            b_r, b_i = row[2 * j], -row[2 * j + 1]  # conj Z[M - k]
            even_r, even_i = half * (a_r + b_r), half * (a_i + b_i)
            odd_r, odd_i = half * (a_i - b_i), -half * (a_r - b_r)
            c, s = cosines[k], sines[k]  # w^k = c - i s
            turned_r = c * odd_r + s * odd_i
            turned_i = c * odd_i - s * odd_r
            spectrum[k] = (even_r + turned_r) ** 2 + (even_i + turned_i) ** 2
            spectrum[j] = (even_r - turned_r) ** 2 + (even_i - turned_i) ** 2
        if magnitude:
            # The root of the float32 power, as TensorFlow's Mfcc takes the root of
            # AudioSpectrogram's float32 output; a separate pass vectorises (a float64
            # root per bin inside the loop above took 4 times as long).
            for k in range(K):
                spectrum[k] = math.sqrt(spectrum[k])


@numba.njit(cache=True, fastmath=_FASTMATH)
def _power_columns(z, cosines, sines, out):  # pragma: no cover
    """Fill ``out`` (K, n) float32 with the power ``|X[k]|^2`` of n frames, frame t in
    column t (the unpacking of :func:`_spectrum_from_packed`), from ``z`` (n, 2M)
    float64, row t the packed FFT of frame t. The loop over frames is innermost, so
    that each bin's arithmetic runs on vectors of frames."""
    K, n = out.shape
    M = K - 1
    half = 0.5
    for t in range(n):
        out[0, t] = (z[t, 0] + z[t, 1]) ** 2
        out[M, t] = (z[t, 0] - z[t, 1]) ** 2
    for k in range(1, M // 2 + 1):
        j = M - k
        c, s = cosines[k], sines[k]  # w^k = c - i s
        power_k, power_j = out[k], out[j]
        for t in range(n):
            a_r, a_i = z[t, 2 * k], z[t, 2 * k + 1]  # Z[k]
            b_r, b_i = z[t, 2 * j], -z[t, 2 * j + 1]  # conj Z[M - k]
            even_r, even_i = half * (a_r + b_r), half * (a_i + b_i)
            odd_r, odd_i = half * (a_i - b_i), -half * (a_r - b_r)
            turned_r = c * odd_r + s * odd_i
            turned_i = c * odd_i - s * odd_r
            power_k[t] = (even_r + turned_r) ** 2 + (even_i + turned_i) ** 2
            power_j[t] = (even_r - turned_r) ** 2 + (even_i - turned_i) ** 2


@numba.njit(cache=True, fastmath=_FASTMATH)
def _mel_columns(spectrum, magnitude, starts, stops, filters, out):  # pragma: no cover
    """Fill ``out`` (C, n) float32 with the filterbank energies of the n frames whose
    power spectra are the columns of ``spectrum`` (K, n) float32: each channel's
    ``filters[c]`` (C, K) over its run of bins ``starts[c] <= k < stops[c]``, applied
    to the power or, when ``magnitude``, to its root (taken here, in place, on the
    bins some channel reads; the root of the float32 power, as TensorFlow's Mfcc
    takes it of AudioSpectrogram's float32 output). A filter touches ~13 bins where
    a dense product would multiply all 257; every inner loop runs over frames."""
    C, n = out.shape
    if magnitude:
        first, stop = starts.min(), stops.max()
        for k in range(first, stop):
            row = spectrum[k]
            for t in range(n):
                row[t] = math.sqrt(row[t])
    for c in range(C):
        energies = out[c]
        energies[:] = 0.0
        weights = filters[c]
        for k in range(starts[c], stops[c]):
            weight, row = weights[k], spectrum[k]
            for t in range(n):
                energies[t] += weight * row[t]


def _packed_blocks(signal, window, step, n_fft):
    """Yield ``(first, z)`` block by block: ``z`` (n, 2M) float64, the packed FFTs of
    frames ``first .. first + n``, interleaved re, im (valid until the next block).

    Frames go through in blocks of about 512 KiB of float64 (:data:`BLOCK_BYTES`):
    framing, the in-place FFT and the unpacking then work on data still in the
    processor's cache rather than streaming all frames through memory three times.
    """
    # float32 and float64 signals are read as they are (the products are float64);
    # any other dtype is converted once, to float64.
    if signal.dtype != np.float32:
        signal = np.ascontiguousarray(signal, dtype=np.float64)
    window = np.ascontiguousarray(window, dtype=np.float64)
    T = _n_frames(signal, window, step)
    block = max(1, min(T, BLOCK_BYTES // (8 * n_fft)))
    frames = _scratch(block * n_fft).reshape(block, n_fft)  # = complex128 (block, M)
    for first in range(0, T, block):
        n = min(block, T - first)
        _frame_packed(signal[first * step :], window, step, frames[:n])
        packed = scipy.fft.fft(
            frames[:n].view(np.complex128), axis=1, workers=1, overwrite_x=True
        )  # (n, M) complex128, in place
        yield first, np.ascontiguousarray(packed).view(np.float64)  # (n, 2M)


def _n_frames(signal, window, step) -> int:
    return 1 + (signal.shape[0] - window.shape[0]) // step


def _spectrum(signal, window, step, n_fft, magnitude):
    """(T, K) float32 power (or magnitude) spectrum of the frames."""
    cosines, sines = _twiddles(n_fft)
    out = np.empty((_n_frames(signal, window, step), n_fft // 2 + 1), np.float32)
    for first, z in _packed_blocks(signal, window, step, n_fft):
        n = z.shape[0]
        _spectrum_from_packed(z, cosines, sines, magnitude, out[first : first + n])
    return out


def _mel_energies(signal, window, step, n_fft, bank):
    """(T, C) float32 filterbank energies; each block's spectrum is kept with frames
    in columns, in cache, and never stored whole (with the (T, K) spectrum of a
    minute, 3 MiB, and one BLAS product over it, the filterbank took as long as the
    FFT; here a tenth of it)."""
    cosines, sines = _twiddles(n_fft)
    starts, stops, filters = _channel_filters(bank)
    out = np.empty((_n_frames(signal, window, step), bank.n_channels), np.float32)
    for first, z in _packed_blocks(signal, window, step, n_fft):
        n = z.shape[0]
        spectrum = np.empty((n_fft // 2 + 1, n), dtype=np.float32)  # (K, n)
        _power_columns(z, cosines, sines, spectrum)
        energies = np.empty((bank.n_channels, n), dtype=np.float32)  # (C, n)
        _mel_columns(spectrum, bank.magnitude, starts, stops, filters, energies)
        out[first : first + n] = energies.T
    return out


def power_spectrum(
    signal: np.ndarray, window: np.ndarray, step: int, n_fft: int
) -> np.ndarray:
    """Squared FFT magnitude of each frame, float32 (T, K); see numpy_ref."""
    return _spectrum(signal, window, step, n_fft, False)


def log_spectrogram(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    log_mode: str,
    log_floor: float,
) -> np.ndarray:
    """DeepSpeech2's log-spectrogram, float32 (T, n_fft // 2 + 1); see numpy_ref."""
    if log_mode == "log1p":
        return np.log1p(_spectrum(signal, window, step, n_fft, True))
    power = _spectrum(signal, window, step, n_fft, False)
    return np.log(np.maximum(power, np.float32(log_floor), out=power), out=power)


def log_mel_spectrum(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    bank,
    log_floor: float,
) -> np.ndarray:
    """Log mel filterbank energies, float32 (T, C); see numpy_ref."""
    energies = _mel_energies(signal, window, step, n_fft, bank)  # (T, C)
    return np.log(
        np.maximum(energies, np.float32(log_floor), out=energies), out=energies
    )


def mfcc_frames(
    signal: np.ndarray,
    window: np.ndarray,
    step: int,
    n_fft: int,
    bank,
    dct: np.ndarray,
    log_floor: float,
) -> np.ndarray:
    """MFCC as TensorFlow's Mfcc op computes them, float32 (T, D); see numpy_ref."""
    log_mel = log_mel_spectrum(signal, window, step, n_fft, bank, log_floor)  # (T, C)
    # In float64: coefficient 0 sums C logarithms of up to ~28 each (log 1e-12 in
    # silence), where float32's rounding alone reaches 1e-5.
    return (log_mel @ np.asarray(dct, dtype=np.float64)).astype(np.float32)  # (T, D)


@numba.njit(cache=True)
def _context_windows(features, n_context, out):  # pragma: no cover - compiled
    T, F = features.shape
    width = 2 * n_context + 1
    for t in range(T):
        target = out[t]
        for j in range(width):
            source = t - n_context + j
            if 0 <= source < T:
                frame = features[source]
                for f in range(F):
                    target[j * F + f] = frame[f]
            else:
                for f in range(F):
                    target[j * F + f] = 0.0


def context_windows(features: np.ndarray, n_context: int) -> np.ndarray:
    """Frames with ``n_context`` neighbours each side, zero-padded; see numpy_ref."""
    features = np.ascontiguousarray(features)
    T, F = features.shape
    out = np.empty((T, (2 * n_context + 1) * F), dtype=features.dtype)
    _context_windows(features, int(n_context), out)
    return out
