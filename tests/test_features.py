"""The front end: DeepSpeech/TensorFlow constants, backends, streaming, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from helpers.tolerances import (
    FEATURES_FLOAT32_SCALED_ATOL,
    FEATURES_TF_ATOL_FLOAT32,
    FEATURES_TF_ATOL_FLOAT64,
    LOG_POWER_ATOL_FLOAT32,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from npspeech import audio, features
from npspeech.backends import get_backend
from npspeech.config import FeatureConfig
from npspeech.errors import AudioError, ConfigError

DS = FeatureConfig()  # DeepSpeech 0.9's MFCC settings


def assert_features_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """float32-path features against a reference, to a few ulps of the largest value."""
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(
        actual, expected, rtol=0, atol=FEATURES_FLOAT32_SCALED_ATOL * scale
    )


def speech_like(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 signal: harmonics of a moving pitch, noise and a silent stretch."""
    t = np.arange(n) / 16000.0
    pitch = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000.0
    signal = sum(np.sin(h * phase) / h for h in range(1, 12)) * 0.1
    signal = signal + 0.01 * rng.standard_normal(n)
    signal[n // 3 : n // 3 + 800] = 0.0  # digital silence inside an utterance
    return signal


# --- hand-checked constants
# ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_samples", "expected"),
    [(511, 0), (512, 1), (831, 1), (832, 2), (16000, 49), (46797, 145)],
)
def test_frame_count_is_deepspeech_formula(n_samples, expected):
    assert features.n_frames(n_samples, DS) == expected
    if expected:
        assert expected == 1 + (n_samples - 512) // 320


def test_window_step_fft_of_deepspeech_and_deepspeech2():
    assert (DS.window_samples, DS.step_samples, DS.fft_size) == (512, 320, 512)
    ds2 = features.default_config("spectrogram")
    assert (ds2.window_samples, ds2.step_samples, ds2.fft_size) == (320, 160, 320)
    assert features.n_features(ds2) == 161
    assert features.n_features(DS) == 26
    assert features.n_features(dataclasses.replace(DS, n_context=9)) == 494
    assert features.n_features(features.default_config("fbank")) == 40


def test_periodic_hann_is_tensorflows():
    window = features.window_function("hann_periodic", 512)
    i = np.arange(512)
    np.testing.assert_allclose(
        window, 0.5 - 0.5 * np.cos(2 * np.pi * i / 512), atol=1e-15
    )
    assert window[0] == 0.0 and window[256] == pytest.approx(1.0)
    np.testing.assert_allclose(
        features.window_function("hann_symmetric", 400), np.hanning(400), atol=1e-15
    )


def test_tf_bank_bin_range_and_centres():
    bank = features.tf_mel_bank(512, 16000, 40, 20.0, 8000.0)
    hz = 8000.0 / 256  # 31.25 Hz per bin
    assert bank.first_bin == int(1.5 + 20.0 / hz) == 2
    assert (
        bank.stop_bin == int(8000.0 / hz) + 1 == 257
    )  # TF's loop includes int(8000 / hz)
    assert bank.magnitude
    # Nothing outside the used bins; DC and bin 1 excluded.
    assert not bank.lower_weight[:2].any() and not bank.upper_weight[:2].any()
    # Below the first centre only channel 0 receives.
    mel = features.hz_to_mel
    first_centre = mel(20.0) + (mel(8000.0) - mel(20.0)) / 41
    below = [k for k in range(2, 257) if mel(k * hz) <= first_centre]
    assert below and all(bank.lower_channel[k] == -1 for k in below)
    # A bin between the first and the last channel centre splits its magnitude
    # completely between two neighbours; outside, the share of the missing neighbour
    # (channel -1 below, channel 40 above) is dropped, as in TF.
    centres = mel(20.0) + (mel(8000.0) - mel(20.0)) / 41 * np.arange(1, 42)
    bin_mel = mel(np.arange(257) * hz)
    total = bank.dense().sum(axis=1)
    middle = (bin_mel >= centres[0]) & (bin_mel <= centres[39])
    np.testing.assert_allclose(total[middle], 1.0, atol=1e-12)
    assert (total[2:][~middle[2:]] < 1.0).all()
    assert features.hz_to_mel(700.0) == pytest.approx(1127.0 * math.log(2.0))


def _tf_filterbank_literal(input_length, sample_rate, channels, lower, upper):
    """TensorFlow's MfccMelFilterbank::Initialize, transcribed loop for loop."""

    def freq_to_mel(freq):
        return 1127.0 * math.log(1.0 + freq / 700.0)

    center = [0.0] * (channels + 1)
    mel_low, mel_hi = freq_to_mel(lower), freq_to_mel(upper)
    spacing = (mel_hi - mel_low) / (channels + 1)
    for i in range(channels + 1):
        center[i] = mel_low + spacing * (i + 1)
    hz_per_sbin = 0.5 * sample_rate / (input_length - 1)
    start, end = int(1.5 + lower / hz_per_sbin), int(upper / hz_per_sbin)
    band, channel = [0] * input_length, 0
    for i in range(input_length):
        melf = freq_to_mel(i * hz_per_sbin)
        if i < start or i > end:
            band[i] = -2
        else:
            while channel < channels and center[channel] < melf:
                channel += 1
            band[i] = channel - 1
    weights = [0.0] * input_length
    for i in range(input_length):
        c = band[i]
        if start <= i <= end:
            if c >= 0:
                weights[i] = (center[c + 1] - freq_to_mel(i * hz_per_sbin)) / (
                    center[c + 1] - center[c]
                )
            else:
                weights[i] = (center[0] - freq_to_mel(i * hz_per_sbin)) / (
                    center[0] - mel_low
                )
    dense = np.zeros((input_length, channels))
    for i in range(start, end + 1):
        c = band[i]
        if c >= 0:
            dense[i, c] += weights[i]
        if c + 1 < channels:
            dense[i, c + 1] += 1.0 - weights[i]
    return dense


@pytest.mark.parametrize(
    ("n_fft", "rate", "channels", "lower", "upper"),
    [
        (512, 16000, 40, 20.0, 8000.0),
        (512, 8000, 40, 20.0, 4000.0),
        (1024, 16000, 26, 300.0, 3700.0),
    ],
)
def test_tf_bank_matches_tensorflows_loop(n_fft, rate, channels, lower, upper):
    bank = features.tf_mel_bank(n_fft, rate, channels, lower, upper)
    expected = _tf_filterbank_literal(n_fft // 2 + 1, rate, channels, lower, upper)
    np.testing.assert_allclose(bank.dense(), expected, atol=1e-12)


def test_dct_scale_is_uniform_sqrt_2_over_n():
    dct = features.dct_matrix(40, 26)
    assert dct.shape == (40, 26)
    np.testing.assert_allclose(dct[:, 0], math.sqrt(2.0 / 40))
    assert dct[3, 5] == pytest.approx(
        math.sqrt(2.0 / 40) * math.cos(math.pi / 40 * 5 * 3.5)
    )
    gram = dct.T @ dct  # columns orthogonal; coefficient 0 has norm sqrt(2), others 1
    np.testing.assert_allclose(gram, np.diag([2.0] + [1.0] * 25), atol=1e-12)


def test_triangular_bank_peaks_at_one_and_partitions():
    bank = features.triangular_mel_bank(512, 16000, 40, 20.0, 8000.0)
    dense = bank.dense()
    assert not bank.magnitude
    assert dense.max() <= 1.0 + 1e-12 and (dense >= 0).all()
    inside = np.arange(bank.first_bin, bank.stop_bin)
    # between the first and last centre every bin's two weights sum to 1
    centres = features.mel_to_hz(
        np.linspace(features.hz_to_mel(20.0), features.hz_to_mel(8000.0), 42)
    )
    frequency = inside * 16000 / 512
    middle = inside[(frequency >= centres[1]) & (frequency <= centres[-2])]
    np.testing.assert_allclose(dense[middle].sum(axis=1), 1.0, atol=1e-12)


# --- TensorFlow compatibility
# ------------------------------------------------------------

# TensorFlow 2.21 (tf.raw_ops.AudioSpectrogram(window_size=512, stride=320,
# magnitude_squared=True) then tf.raw_ops.Mfcc(sample_rate=16000,
# upper_frequency_limit=8000, lower_frequency_limit=20, filterbank_channel_count=40,
# dct_coefficient_count=26)) on LDC93S1.wav decoded by tf.audio.decode_wav, frames 0 and
# 72, rounded to 5 decimals.
TF_LDC93S1_MFCC = {
    0: [
        -48.48418,
        -2.07601,
        0.8859,
        -0.45267,
        -0.22931,
        -0.80437,
        -0.09914,
        0.64805,
        0.53047,
        -0.05604,
        0.13322,
        -0.18056,
        0.10472,
        -0.41088,
        -0.58956,
        -0.03315,
        0.25388,
        0.54941,
        0.44807,
        -0.10204,
        -0.11935,
        0.41099,
        -0.12216,
        -0.22458,
        -0.08021,
        -0.55294,
    ],
    72: [
        -28.54774,
        4.54028,
        -1.70217,
        0.40905,
        -0.15747,
        -1.05133,
        -2.16834,
        -3.00009,
        -1.57758,
        -0.70822,
        -0.49822,
        -1.18291,
        -0.42159,
        -0.00521,
        -0.99908,
        -0.87616,
        -1.46508,
        -0.99416,
        0.04576,
        -0.38882,
        -0.12859,
        0.35119,
        0.45547,
        0.14443,
        0.52742,
        0.24948,
    ],
}


@pytest.mark.data
def test_ldc93s1_mfcc_matches_tensorflow(data_dir):
    signal = audio.load(data_dir / "deepspeech_smoke" / "wav" / "LDC93S1.wav")
    plan = features._plan(DS)
    reference = get_backend("numpy").mfcc_frames(
        signal.astype(np.float64), plan.window, 320, 512, plan.bank, plan.dct, 1e-12
    )
    fast = features.mfcc(signal)
    assert reference.shape == fast.shape == (145, 26)
    for frame, expected in TF_LDC93S1_MFCC.items():
        np.testing.assert_allclose(
            reference[frame], expected, atol=FEATURES_TF_ATOL_FLOAT64
        )
        np.testing.assert_allclose(fast[frame], expected, atol=FEATURES_TF_ATOL_FLOAT32)


@pytest.mark.data
def test_ldc93s1_deepspeech_inputs_shape_and_finite(data_dir):
    signal = audio.load(data_dir / "deepspeech_smoke" / "wav" / "LDC93S1.wav")
    config = dataclasses.replace(DS, n_context=9)
    inputs = features.compute(signal, config)
    assert inputs.shape == (145, 494) and inputs.dtype == np.float32
    assert np.isfinite(inputs).all()
    plain = features.compute(signal)
    np.testing.assert_array_equal(inputs[:, 9 * 26 : 10 * 26], plain)  # centre frame
    np.testing.assert_array_equal(inputs[0, : 9 * 26], 0.0)  # left padding of frame 0


# --- reference against numba
# -------------------------------------------------------------


@pytest.fixture
def kernels():
    return get_backend("numpy"), get_backend("numba")


@pytest.mark.parametrize("n_samples", [512, 513, 16000, 23457])
def test_power_spectrum_numba_matches_reference(kernels, rng, n_samples):
    ref, fast = kernels
    signal = (
        speech_like(rng, n_samples)
        if n_samples > 2000
        else rng.uniform(-1, 1, n_samples)
    )
    window = features.window_function("hann_periodic", 512)
    expected = ref.power_spectrum(signal, window, 320, 512)
    actual = fast.power_spectrum(signal.astype(np.float32), window, 320, 512)
    assert actual.dtype == np.float32 and expected.dtype == np.float64
    assert_features_close(actual, expected)


@pytest.mark.parametrize("window_samples,n_fft", [(400, 512), (320, 320), (512, 1024)])
def test_zero_padded_and_non_power_of_two_ffts(kernels, rng, window_samples, n_fft):
    ref, fast = kernels
    signal = speech_like(rng, 8000)
    window = features.window_function("hamming", window_samples)
    expected = ref.power_spectrum(signal, window, 160, n_fft)
    assert expected.shape == (1 + (8000 - window_samples) // 160, n_fft // 2 + 1)
    np.testing.assert_allclose(  # against a plain per-frame numpy FFT
        expected[3],
        np.abs(np.fft.rfft(signal[480 : 480 + window_samples] * window, n_fft)) ** 2,
        rtol=1e-10,
        atol=1e-12,
    )
    assert_features_close(
        fast.power_spectrum(signal.astype(np.float32), window, 160, n_fft), expected
    )


@pytest.mark.parametrize("kind", features.KINDS)
def test_compute_numba_matches_reference(rng, kind):
    config = features.default_config(kind, normalize="none")
    signal = speech_like(rng, 20000)
    plan = features._plan(config)
    ref = get_backend("numpy")
    args = (signal, plan.window, config.step_samples, config.fft_size)
    if kind == "mfcc":
        expected = ref.mfcc_frames(*args, plan.bank, plan.dct, config.log_floor)
    elif kind == "fbank":
        expected = ref.log_mel_spectrum(*args, plan.bank, config.log_floor)
    else:
        expected = ref.log_spectrogram(*args, config.log_mode, config.log_floor)
    for backend in ("numba", "numpy"):
        actual = features.compute(signal.astype(np.float32), config, backend=backend)
        assert actual.dtype == np.float32
        assert_features_close(actual, expected)


@pytest.mark.parametrize(
    "n_mels,n_fft,magnitude", [(40, 512, True), (40, 512, False), (80, 256, False)]
)
@pytest.mark.parametrize("n_frames", [1, 127, 128, 129, 300])
def test_log_mel_numba_matches_reference(
    kernels, rng, n_mels, n_fft, magnitude, n_frames
):
    """The numba filterbank runs on each block's spectrum with frames in columns and
    each channel over its own bins: block edges (128 frames of 512 samples), the
    magnitude and power filters, and channels too narrow to hold a bin (80 mels on a
    256-point FFT) must give the reference's energies."""
    ref, fast = kernels
    W, step = n_fft, n_fft // 2
    signal = speech_like(rng, W + (n_frames - 1) * step)
    if magnitude:
        bank = features.tf_mel_bank(n_fft, 16000, n_mels, 20.0, 8000.0)
    else:
        bank = features.triangular_mel_bank(n_fft, 16000, n_mels, 20.0, 8000.0)
    empty = ~bank.dense().any(axis=0)
    assert empty.any() == (n_mels == 80)  # the narrow case has empty channels
    window = features.window_function("hann_periodic", W)
    expected = ref.log_mel_spectrum(signal, window, step, n_fft, bank, 1e-12)
    actual = fast.log_mel_spectrum(
        signal.astype(np.float32), window, step, n_fft, bank, 1e-12
    )
    assert actual.shape == (n_frames, n_mels) and actual.dtype == np.float32
    assert_features_close(actual, expected)
    np.testing.assert_array_equal(actual[:, empty], np.float32(np.log(1e-12)))


def test_log_power_spectrogram_mode(kernels, rng):
    ref, fast = kernels
    signal = speech_like(rng, 6000)
    window = features.window_function("hann_periodic", 320)
    expected = ref.log_spectrogram(signal, window, 160, 320, "log", 1e-10)
    power = ref.power_spectrum(signal, window, 160, 320)
    np.testing.assert_allclose(expected, np.log(np.maximum(power, 1e-10)))
    actual = fast.log_spectrogram(
        signal.astype(np.float32), window, 160, 320, "log", 1e-10
    )
    np.testing.assert_allclose(actual, expected, rtol=0, atol=LOG_POWER_ATOL_FLOAT32)


def test_silence_hits_the_log_floor_in_both_backends(kernels):
    signal = np.zeros(2000)
    for backend in ("numpy", "numba"):
        mfcc = features.mfcc(signal, backend=backend)
        # log(1e-12) in every channel; DCT of a constant: only coefficient 0 is non-zero
        np.testing.assert_allclose(
            mfcc[:, 0], 40 * math.log(1e-12) * math.sqrt(2 / 40), rtol=1e-6
        )
        np.testing.assert_allclose(mfcc[:, 1:], 0.0, atol=1e-4)


def test_int16_float_and_bytes_inputs_agree(rng):
    pcm = (speech_like(rng, 9000) * 20000).astype(np.int16)
    from_int16 = features.mfcc(pcm)
    from_float = features.mfcc(pcm.astype(np.float32) / 32768.0)
    from_bytes = features.mfcc(pcm.astype("<i2").tobytes())
    np.testing.assert_array_equal(from_int16, from_float)
    np.testing.assert_array_equal(from_int16, from_bytes)


def test_mfcc_settings_change_the_output(rng):
    signal = speech_like(rng, 16000).astype(np.float32)
    assert features.mfcc(signal, n_mfcc=13).shape == (49, 13)
    assert features.mfcc(signal, step_ms=10).shape == (1 + (16000 - 512) // 160, 26)
    eight_k = features.mfcc(signal[::2], sample_rate=8000)  # upper limit follows: 4 kHz
    assert eight_k.shape == (1 + (8000 - 256) // 160, 26)
    assert not np.allclose(
        features.mfcc(signal, lower_frequency=300), features.mfcc(signal)
    )


# --- context windows
# ---------------------------------------------------------------------


def test_context_windows_deepspeech_order(backend):
    T, F, n = 5, 3, 2
    frames = np.arange(1, T * F + 1, dtype=np.float32).reshape(
        T, F
    )  # frame t = 3t+1..3t+3
    windows = backend.context_windows(frames, n)
    assert windows.shape == (T, (2 * n + 1) * F)
    for t in range(T):
        expected = [
            frames[s] if 0 <= s < T else np.zeros(F, dtype=np.float32)
            for s in range(t - n, t + n + 1)
        ]
        np.testing.assert_array_equal(windows[t], np.concatenate(expected))
    # frame 0: two zero frames, then frames 0, 1, 2
    np.testing.assert_array_equal(
        windows[0], [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    )


def test_context_windows_backends_agree(rng):
    frames = rng.standard_normal((40, 26)).astype(np.float32)
    expected = features.context_windows(frames, 9, backend="numpy")
    np.testing.assert_array_equal(
        features.context_windows(frames, 9, backend="numba"), expected
    )
    np.testing.assert_array_equal(features.context_windows(frames, 0), frames)
    short = features.context_windows(frames[:3], 9)  # shorter than the context
    assert short.shape == (3, 494)
    np.testing.assert_array_equal(short[1, 8 * 26 : 11 * 26], frames[:3].ravel())


# --- normalisation
# -----------------------------------------------------------------------


def test_utterance_normalisation(rng):
    config = features.default_config("spectrogram")
    out = features.compute(speech_like(rng, 12000), config)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)


def test_feature_stats_merge_equals_whole_and_global_normalisation(rng):
    config = features.default_config("fbank")
    utterances = [speech_like(rng, n) for n in (4000, 9000, 6500)]
    frames = [features.compute(u, config) for u in utterances]
    whole = np.concatenate(frames).astype(np.float64)

    stats = features.FeatureStats()
    for f in frames[:2]:
        stats.update(f)
    other = features.FeatureStats().update(frames[2])
    stats.merge(other)
    assert stats.count == whole.shape[0]
    np.testing.assert_allclose(stats.mean, whole.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.std, whole.std(axis=0), rtol=1e-9)

    normalised = features.compute(
        utterances[1], dataclasses.replace(config, normalize="global"), stats=stats
    )
    np.testing.assert_allclose(
        normalised, (frames[1] - stats.mean) / stats.std, rtol=1e-5, atol=1e-5
    )


def test_feature_stats_round_trip_through_arrays(rng, tmp_path):
    stats = features.FeatureStats().update(rng.standard_normal((50, 6)) * 3 + 1)
    np.savez(tmp_path / "stats.npz", **stats.to_arrays())
    with np.load(tmp_path / "stats.npz") as saved:
        restored = features.FeatureStats.from_arrays(saved)
    assert restored.count == 50
    np.testing.assert_array_equal(restored.mean, stats.mean)
    np.testing.assert_array_equal(restored.std, stats.std)
    with pytest.raises(ConfigError, match="model.npz: expected count, mean and m2"):
        features.FeatureStats.from_arrays({"mean": stats.mean}, where="model.npz")
    bad = dict(stats.to_arrays(), m2=-np.ones(6))
    with pytest.raises(ConfigError, match="negative"):
        features.FeatureStats.from_arrays(bad)


def test_feature_stats_survive_a_large_offset(rng):
    # A naive sum of squares loses the variance of values around 1e4 in float32.
    values = 1e4 + rng.standard_normal((5000, 4))
    stats = features.FeatureStats()
    for part in np.array_split(values, 7):
        stats.update(part.astype(np.float32))
    exact = values.astype(np.float32).astype(np.float64)  # what update() was given
    np.testing.assert_allclose(stats.std, exact.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats.mean, exact.mean(axis=0), rtol=1e-12)


# --- streaming
# ---------------------------------------------------------------------------


def _random_chunks(rng, signal, max_chunk):
    cuts = np.sort(
        rng.integers(0, signal.shape[0], size=signal.shape[0] // max_chunk + 3)
    )
    return np.split(signal, cuts)  # includes empty and tiny chunks


@pytest.mark.parametrize(
    ("kind", "n_context", "max_chunk"),
    [
        ("mfcc", 0, 200),
        ("mfcc", 9, 700),
        ("mfcc", 2, 5000),
        ("fbank", 3, 150),
        ("spectrogram", 0, 1000),
    ],
)
def test_stream_equals_whole(rng, kind, n_context, max_chunk):
    config = features.default_config(kind, n_context=n_context, normalize="none")
    signal = speech_like(rng, 15000).astype(np.float32)
    expected = features.compute(signal, config)
    stream = features.FeatureStream(config)
    parts = [stream.feed(chunk) for chunk in _random_chunks(rng, signal, max_chunk)]
    parts.append(stream.finish())
    streamed = np.concatenate(parts)
    assert streamed.shape == expected.shape
    assert all(p.shape[1] == features.n_features(config) for p in parts)
    assert_features_close(streamed, expected)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 900), min_size=1, max_size=25),
    n_context=st.integers(0, 4),
)
def test_stream_any_chunking_equals_whole(sizes, n_context):
    config = dataclasses.replace(DS, n_context=n_context)
    signal = np.sin(np.arange(sum(sizes)) * 0.05).astype(np.float32) * 0.3
    stream = features.FeatureStream(config)
    cuts = np.cumsum(sizes)[:-1]
    parts = [stream.feed(chunk) for chunk in np.split(signal, cuts)]
    streamed = np.concatenate(parts + [stream.finish()])
    if signal.shape[0] < 512:
        assert streamed.shape == (0, features.n_features(config))
    else:
        assert_features_close(streamed, features.compute(signal, config))


def test_stream_holds_back_right_context_until_finish(rng):
    config = dataclasses.replace(DS, n_context=9)
    stream = features.FeatureStream(config)
    signal = speech_like(rng, 512 + 320 * 19).astype(np.float32)  # exactly 20 frames
    out = stream.feed(signal)
    assert out.shape == (20 - 9, 494)  # frame t needs frames up to t + 9
    rest = stream.finish()
    assert rest.shape == (9, 494)
    np.testing.assert_array_equal(rest[-1, 10 * 26 :], 0.0)  # zero right context
    # finish() reset the stream: the same audio again gives the same frames
    again = np.concatenate([stream.feed(signal), stream.finish()])
    np.testing.assert_array_equal(again, np.concatenate([out, rest]))


def test_stream_with_global_stats_and_int16_bytes(rng):
    config = features.default_config("mfcc", normalize="global")
    pcm = (speech_like(rng, 7000) * 20000).astype(np.int16)
    stats = features.FeatureStats().update(features.mfcc(pcm))
    expected = features.compute(pcm, config, stats=stats)
    stream = features.FeatureStream(config, stats=stats)
    raw = pcm.tobytes()
    parts = [stream.feed(raw[i : i + 998]) for i in range(0, len(raw), 998)]
    streamed = np.concatenate(parts + [stream.finish()])
    np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-5)


def test_stream_shorter_than_a_window_gives_no_frames():
    stream = features.FeatureStream(dataclasses.replace(DS, n_context=9))
    assert stream.feed(np.zeros(300, dtype=np.float32)).shape == (0, 494)
    assert stream.finish().shape == (0, 494)


# --- bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"kind": "mel"}, "kind"),
        ({"upper_frequency": 9000.0}, "upper_frequency"),
        ({"lower_frequency": 8000.0}, "lower_frequency"),
        ({"n_mfcc": 41}, "n_mfcc"),
        ({"n_fft": 256}, "n_fft"),
        ({"n_fft": 513}, "n_fft"),
        ({"window": "blackman"}, "window"),
        ({"normalize": "batch"}, "normalize"),
        ({"n_context": -1}, "n_context"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"step_ms": 0.0}, "step_ms"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(settings, field):
    config = dataclasses.replace(DS, **settings)
    with pytest.raises(ConfigError, match=field):
        features.compute(np.zeros(2000, dtype=np.float32), config)


def test_unknown_mfcc_setting_is_named():
    with pytest.raises(ConfigError, match="n_cepstra"):
        features.mfcc(np.zeros(2000), n_cepstra=13)


def test_bad_signals_raise_audio_error(rng):
    with pytest.raises(AudioError, match="shorter than one feature window"):
        features.mfcc(np.zeros(511, dtype=np.float32))
    with pytest.raises(AudioError, match="no samples"):
        features.mfcc(np.zeros(0, dtype=np.float32))
    signal = rng.uniform(-0.5, 0.5, 4000)
    signal[1234] = np.nan
    with pytest.raises(AudioError, match="index 1234"):
        features.compute(signal, where="utt-7")
    signal[1234] = np.inf
    with pytest.raises(AudioError, match="utt-7.*non-finite"):
        features.compute(signal, where="utt-7")
    with pytest.raises(AudioError, match="1-D"):
        features.mfcc(np.zeros((2000, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="int32"):
        features.mfcc(np.zeros(2000, dtype=np.int32))
    with pytest.raises(AudioError, match="whole number of int16"):
        features.mfcc(b"\x00" * 2001)


def test_global_normalisation_needs_stats():
    config = features.default_config("mfcc", normalize="global")
    with pytest.raises(ConfigError, match="FeatureStats"):
        features.compute(np.zeros(2000, dtype=np.float32), config)
    with pytest.raises(ConfigError, match="FeatureStats"):
        features.FeatureStream(config)


def test_utterance_normalisation_cannot_stream():
    with pytest.raises(ConfigError, match="utterance"):
        features.FeatureStream(features.default_config("spectrogram"))


def test_context_and_normalize_argument_errors():
    with pytest.raises(ConfigError, match="n_context"):
        features.context_windows(np.zeros((4, 3)), -2)
    with pytest.raises(ConfigError, match=r"\(T, F\)"):
        features.context_windows(np.zeros(4), 1)
    with pytest.raises(ConfigError, match="mean and std"):
        features.normalize(np.zeros((4, 3)), np.zeros(2), np.ones(2))
    with pytest.raises(ConfigError, match="features"):
        features.FeatureStats().update(np.zeros((3, 4))).update(np.zeros((3, 5)))
