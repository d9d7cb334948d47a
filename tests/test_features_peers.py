"""The front end against peer libraries, wherever their parameters can be matched.

Parameter mapping (DeepSpeech settings at 16 kHz: 512-sample window, 320 step, 512 FFT):

- python_speech_features 0.6: ``sigproc.framesig(signal, 512, 320, winfunc=periodic
  Hann)`` frames like TensorFlow but zero-pads a last partial frame, so only the first
  ``1 + (N - 512) // 320`` frames are compared; ``sigproc.powspec(frames, 512)`` is
  ``|X|^2 / 512``, so it is multiplied by 512. Its ``get_filterbanks`` rounds the
  triangle corners to whole FFT bins (``floor((nfft + 1) * hz / rate)``), which matches
  neither TensorFlow's nor librosa's filters, so it is not compared; nor is its ``mfcc``
  (pre-emphasis, ``appendEnergy`` and lifter aside, it uses an orthonormal DCT of the
  log of that filterbank).
- librosa: ``stft(y, n_fft, hop_length, win_length, window="hann", center=False)`` is
  our framing (scipy's ``get_window("hann", fftbins=True)`` is the periodic Hann);
  ``filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=True, norm=None)`` is
  :func:`npspeech.features.triangular_mel_bank`, so ``feature.melspectrogram(...,
  power=2.0, htk=True, norm=None, center=False)`` is ``exp`` of our ``fbank``.
  ``feature.mfcc(S=log_mel, dct_type=2, norm="ortho")`` is an orthonormal DCT-II: equal
  to TensorFlow's for coefficients >= 1, and ``1 / sqrt(2)`` of it for coefficient 0.
  librosa has no filterbank on the magnitude with TensorFlow's edges, so the TF MFCC
  itself is checked against TensorFlow's own numbers in ``test_features.py``.
- PyTorch: ``torch.stft(x, n_fft, hop_length, win_length, window=hann_window(periodic=
  True), center=False)`` is our framing and FFT.
- TensorFlow (only where it is installed): ``raw_ops.AudioSpectrogram(window_size=512,
  stride=320, magnitude_squared=True)`` and ``raw_ops.Mfcc(sample_rate=16000,
  upper_frequency_limit=8000, lower_frequency_limit=20, filterbank_channel_count=40,
  dct_coefficient_count=26)``, DeepSpeech's own calls.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tolerances import FEATURES_FLOAT32_SCALED_ATOL, FEATURES_TF_ATOL_FLOAT64

from npspeech import features
from npspeech.backends import get_backend

pytestmark = pytest.mark.peers

DS_WINDOW, DS_STEP, DS_FFT = 512, 320, 512


def periodic_hann(length: int) -> np.ndarray:
    return features.window_function("hann_periodic", length)


@pytest.fixture
def signal(rng) -> np.ndarray:
    """1.3 s of float64 'speech': a gliding harmonic tone in noise."""
    n = 20_813
    t = np.arange(n) / 16000.0
    phase = 2 * np.pi * np.cumsum(150.0 + 50.0 * t) / 16000.0
    return 0.2 * sum(
        np.sin(h * phase) / h for h in range(1, 9)
    ) + 0.02 * rng.standard_normal(n)


def assert_close_scaled(actual, expected, fraction=FEATURES_FLOAT32_SCALED_ATOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=fraction * scale)


def test_power_spectrum_matches_python_speech_features(signal, backend):
    psf = pytest.importorskip("python_speech_features")
    frames = psf.sigproc.framesig(signal, DS_WINDOW, DS_STEP, winfunc=periodic_hann)
    expected = psf.sigproc.powspec(frames, DS_FFT) * DS_FFT  # psf divides by NFFT
    ours = backend.power_spectrum(signal, periodic_hann(DS_WINDOW), DS_STEP, DS_FFT)
    T = 1 + (signal.shape[0] - DS_WINDOW) // DS_STEP
    assert expected.shape[0] == T + 1  # psf pads one partial frame at the end
    assert_close_scaled(ours, expected[:T])


def test_power_spectrum_matches_torch_stft(signal, backend):
    torch = pytest.importorskip("torch")
    spectrum = torch.stft(
        torch.from_numpy(signal),
        n_fft=DS_FFT,
        hop_length=DS_STEP,
        win_length=DS_WINDOW,
        window=torch.hann_window(DS_WINDOW, periodic=True, dtype=torch.float64),
        center=False,
        return_complex=True,
    )  # (K, T)
    expected = (spectrum.abs() ** 2).numpy().T
    ours = backend.power_spectrum(signal, periodic_hann(DS_WINDOW), DS_STEP, DS_FFT)
    assert_close_scaled(ours, expected)


def test_triangular_bank_is_librosas_htk_mel_filters():
    librosa = pytest.importorskip("librosa")
    for rate, n_fft, n_mels, fmin, fmax in [
        (16000, 512, 40, 20.0, 8000.0),
        (16000, 400, 80, 0.0, 8000.0),
        (8000, 256, 23, 100.0, 3800.0),
    ]:
        expected = librosa.filters.mel(
            sr=rate,
            n_fft=n_fft,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax,
            htk=True,
            norm=None,
            dtype=np.float64,
        )  # (C, K)
        bank = features.triangular_mel_bank(n_fft, rate, n_mels, fmin, fmax)
        np.testing.assert_allclose(bank.dense().T, expected, atol=1e-10)


def test_fbank_matches_librosa_melspectrogram(signal):
    librosa = pytest.importorskip("librosa")
    mel_power = librosa.feature.melspectrogram(
        y=signal,
        sr=16000,
        n_fft=DS_FFT,
        hop_length=DS_STEP,
        win_length=DS_WINDOW,
        window="hann",
        center=False,
        power=2.0,
        n_mels=40,
        fmin=20.0,
        fmax=8000.0,
        htk=True,
        norm=None,
    )  # (C, T)
    expected = np.log(np.maximum(mel_power.T, 1e-12))
    for backend in ("numpy", "numba"):
        ours = features.fbank(signal.astype(np.float32), backend=backend)
        assert_close_scaled(ours, expected)


def test_tf_dct_against_librosa_orthonormal_dct(rng):
    librosa = pytest.importorskip("librosa")
    log_mel = rng.standard_normal((40, 30))  # (C, T), librosa's layout
    ortho = librosa.feature.mfcc(
        S=log_mel, n_mfcc=26, dct_type=2, norm="ortho"
    )  # (D, T)
    ours = (log_mel.T @ features.dct_matrix(40, 26)).T
    np.testing.assert_allclose(ours[1:], ortho[1:], atol=1e-12)
    np.testing.assert_allclose(ours[0], np.sqrt(2.0) * ortho[0], atol=1e-12)


def test_log1p_spectrogram_matches_librosa_stft(signal, backend):
    librosa = pytest.importorskip("librosa")
    magnitude = np.abs(
        librosa.stft(
            signal,
            n_fft=320,
            hop_length=160,
            win_length=320,
            window="hann",
            center=False,
        )
    ).T  # (T, 161)
    ours = backend.log_spectrogram(signal, periodic_hann(320), 160, 320, "log1p", 1e-12)
    assert_close_scaled(ours, np.log1p(magnitude))


def test_mfcc_matches_tensorflow(signal):
    tf = pytest.importorskip("tensorflow")
    audio = tf.constant(signal.astype(np.float32))[:, None]
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=audio, window_size=512, stride=320, magnitude_squared=True
    )
    expected = tf.raw_ops.Mfcc(
        spectrogram=spectrogram,
        sample_rate=16000,
        upper_frequency_limit=8000.0,
        lower_frequency_limit=20.0,
        filterbank_channel_count=40,
        dct_coefficient_count=26,
    )[0].numpy()
    plan = features._plan(features.FeatureConfig())
    reference = get_backend("numpy").mfcc_frames(
        signal.astype(np.float32).astype(np.float64),
        plan.window,
        320,
        512,
        plan.bank,
        plan.dct,
        1e-12,
    )
    np.testing.assert_allclose(reference, expected, atol=FEATURES_TF_ATOL_FLOAT64)
    assert_close_scaled(features.mfcc(signal.astype(np.float32)), expected)
