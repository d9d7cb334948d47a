"""Audio input: formats, rates, channels, int16/bytes conversion, every bad file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.signal
import soundfile
from helpers.tolerances import RESAMPLE_MIN_CORRELATION

from npspeech import audio
from npspeech.config import FeatureConfig
from npspeech.errors import AudioError


def tone(
    frequency: float, rate: int, seconds: float, amplitude: float = 0.5
) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


# --- formats, rates, channels
# ------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "subtype", "atol"),
    [
        ("wav", "PCM_16", 1 / 32768),
        ("wav", "PCM_24", 1e-6),
        ("wav", "PCM_32", 1e-7),
        ("wav", "FLOAT", 0.0),
        ("wav", "DOUBLE", 1e-7),
        ("flac", "PCM_16", 1 / 32768),
        ("wav", "PCM_U8", 1 / 128),
    ],
)
def test_load_subtypes(tmp_path, extension, subtype, atol):
    signal = tone(440.0, 16000, 0.25)
    path = tmp_path / f"tone_{subtype}.{extension}"
    soundfile.write(path, signal, 16000, subtype=subtype)
    loaded = audio.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == signal.shape
    np.testing.assert_allclose(loaded, signal, atol=atol + 1e-7)


def test_load_ogg_vorbis(tmp_path):
    signal = tone(440.0, 16000, 0.5)
    path = tmp_path / "tone.ogg"
    soundfile.write(path, signal, 16000, format="OGG", subtype="VORBIS")
    loaded = audio.load(path)
    assert loaded.dtype == np.float32 and abs(loaded.shape[0] - signal.shape[0]) < 50
    n = min(loaded.shape[0], signal.shape[0])
    assert np.corrcoef(loaded[:n], signal[:n])[0, 1] > 0.99  # lossy, but the same tone


def test_load_mp3(tmp_path):
    if "MP3" not in soundfile.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    signal = tone(440.0, 16000, 0.5)
    path = tmp_path / "tone.mp3"
    soundfile.write(path, signal, 16000, format="MP3", subtype="MPEG_LAYER_III")
    loaded = audio.load(path)
    assert loaded.dtype == np.float32 and np.isfinite(loaded).all()
    assert abs(loaded.shape[0] - signal.shape[0]) < 2000  # encoder delay and padding
    spectrum = np.abs(np.fft.rfft(loaded))
    assert np.argmax(spectrum) * 16000 / loaded.shape[0] == pytest.approx(
        440.0, abs=5.0
    )


def test_int16_wav_is_int16_over_32768(tmp_path):
    pcm = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    path = tmp_path / "pcm.wav"
    soundfile.write(path, pcm, 16000, subtype="PCM_16")
    loaded = audio.load(path)
    np.testing.assert_array_equal(loaded, pcm.astype(np.float32) / 32768.0)
    assert loaded.max() < 1.0 and loaded.min() == -1.0


def test_stereo_is_averaged(tmp_path):
    left, right = tone(300.0, 16000, 0.2), tone(700.0, 16000, 0.2, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load(path), (left + right) / 2, atol=1e-7)


def test_six_channels_and_another_rate(tmp_path):
    base = tone(500.0, 48000, 0.3)
    channels = np.stack([base * (i + 1) / 6 for i in range(6)], axis=1)  # (N, 6)
    path = tmp_path / "surround.wav"
    soundfile.write(path, channels, 48000, subtype="FLOAT")
    loaded = audio.load(path, sample_rate=16000)
    assert loaded.shape == (4800,)
    expected = tone(500.0, 16000, 0.3) * (21 / 36)  # mean of gains 1/6 .. 6/6
    np.testing.assert_allclose(loaded[200:-200], expected[200:-200], atol=2e-3)


def test_float_file_beyond_full_scale_is_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    soundfile.write(
        path, np.array([0.5, 1.5, -2.0, 1.0], dtype=np.float32), 16000, subtype="FLOAT"
    )
    loaded = audio.load(path)
    assert loaded[0] == 0.5 and loaded[2] == -1.0
    assert loaded[1] < 1.0 and loaded[3] < 1.0


@pytest.mark.parametrize(
    ("from_rate", "to_rate"),
    [(8000, 16000), (44100, 16000), (22050, 16000), (16000, 8000), (48000, 16000)],
)
def test_resample_keeps_a_tone(from_rate, to_rate):
    resampled = audio.resample(tone(1000.0, from_rate, 0.5), from_rate, to_rate)
    expected = tone(1000.0, to_rate, 0.5)
    assert resampled.dtype == np.float32
    assert resampled.shape[0] == int(np.ceil(from_rate * 0.5 * to_rate / from_rate))
    middle = slice(100, expected.shape[0] - 100)  # skip the filter's edge transients
    np.testing.assert_allclose(resampled[middle], expected[middle], atol=5e-3)


def test_resample_same_rate_copies_and_bad_rates_raise():
    signal = tone(100.0, 16000, 0.1)
    same = audio.resample(signal, 16000, 16000)
    np.testing.assert_array_equal(same, signal)
    assert same is not signal
    with pytest.raises(AudioError, match="from_rate"):
        audio.resample(signal, 0, 16000)
    with pytest.raises(AudioError, match="to_rate"):
        audio.resample(signal, 16000, 441.5)
    with pytest.raises(AudioError, match="1-D"):
        audio.resample(np.zeros((10, 2)), 8000, 16000)


def test_duration_reads_the_header(tmp_path):
    path = tmp_path / "half.wav"
    soundfile.write(path, tone(440.0, 22050, 0.5), 22050)
    assert audio.duration(path) == pytest.approx(0.5)


# --- the real files
# ----------------------------------------------------------------------


def _bandlimited(signal: np.ndarray) -> np.ndarray:
    """Low-pass at 3.4 kHz: the band the 8 kHz copy of LDC93S1 still holds."""
    sos = scipy.signal.butter(8, 3400, fs=16000, output="sos")
    return scipy.signal.sosfiltfilt(sos, signal.astype(np.float64))


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 40) -> float:
    n = min(a.shape[0], b.shape[0]) - 2 * max_lag
    return max(
        np.corrcoef(a[max_lag : max_lag + n], b[max_lag + lag : max_lag + lag + n])[
            0, 1
        ]
        for lag in range(-max_lag, max_lag + 1)
    )


@pytest.mark.data
def test_ldc93s1_in_other_formats_matches_the_16k_original(data_dir):
    folder = data_dir / "deepspeech_smoke"
    original = audio.load(folder / "wav" / "LDC93S1.wav")
    assert original.shape == (46797,)
    with open(folder / "formats.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for row in rows:
        path = folder / row["wav_filename"]
        loaded = audio.load(path, sample_rate=16000)
        assert loaded.dtype == np.float32 and np.isfinite(loaded).all()
        assert abs(loaded.shape[0] - original.shape[0]) <= 50, path.name
        assert audio.duration(path) == pytest.approx(
            original.shape[0] / 16000, abs=0.01
        )
        correlation = _best_correlation(_bandlimited(original), _bandlimited(loaded))
        assert correlation >= RESAMPLE_MIN_CORRELATION, (path.name, correlation)
        # Level: the mono mixdown keeps the level of the file's own channels (the stereo
        # copy was written 3 dB below the original, in both channels alike).
        channels, _ = soundfile.read(str(path), always_2d=True)
        file_rms = np.sqrt(np.mean(channels.mean(axis=1) ** 2))
        assert np.sqrt(np.mean(loaded**2)) == pytest.approx(file_rms, rel=0.05), (
            path.name
        )


@pytest.mark.data
def test_kathleen_flac_loads(data_dir):
    folder = data_dir / "kathleen_arctic"
    with open(folder / "train.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    path = folder / row["wav_filename"]
    loaded = audio.load(path)
    info = soundfile.info(str(path))
    assert loaded.shape == (info.frames,) and loaded.dtype == np.float32
    assert np.isfinite(loaded).all() and 0.01 < np.abs(loaded).max() < 1.0
    assert audio.duration(path) == pytest.approx(info.frames / info.samplerate)


# --- to_float32
# --------------------------------------------------------------------------


def test_to_float32_int16_bytes_and_float():
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    expected = pcm.astype(np.float32) / 32768.0
    np.testing.assert_array_equal(audio.to_float32(pcm), expected)
    np.testing.assert_array_equal(
        audio.to_float32(pcm.astype("<i2").tobytes()), expected
    )
    np.testing.assert_array_equal(audio.to_float32(bytearray(pcm.tobytes())), expected)
    as_float = audio.to_float32(expected.astype(np.float64))
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, expected)
    assert audio.to_float32(b"").shape == (0,)


def test_to_float32_rejects_bad_input():
    with pytest.raises(AudioError, match="stream: 3 bytes"):
        audio.to_float32(b"\x00\x01\x02", where="stream")
    with pytest.raises(AudioError, match="int32"):
        audio.to_float32(np.zeros(4, dtype=np.int32))
    with pytest.raises(AudioError, match="1-D"):
        audio.to_float32(np.zeros((4, 2), dtype=np.int16))
    with pytest.raises(AudioError, match="arg: non-finite sample .* index 2"):
        audio.to_float32(np.array([0.0, 0.1, np.nan]), where="arg")


def test_check_min_length():
    config = FeatureConfig()
    audio.check_min_length(np.zeros(512), config, "ok.wav")  # exactly one frame
    with pytest.raises(AudioError, match="short.wav: 511 samples .* 512 samples"):
        audio.check_min_length(np.zeros(511), config, "short.wav")
    with pytest.raises(AudioError, match="none.wav: holds no samples"):
        audio.check_min_length(np.zeros(0), config, "none.wav")


# --- bad files
# ---------------------------------------------------------------------------


def _write_nonfinite(path, value):
    signal = np.zeros(1000, dtype=np.float32)
    signal[321] = value
    soundfile.write(path, signal, 16000, subtype="FLOAT")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    for reader in (audio.load, audio.duration):
        with pytest.raises(AudioError, match=r"nowhere\.wav: audio file not found"):
            reader(path)


def test_directory(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    for reader in (audio.load, audio.duration):
        with pytest.raises(AudioError, match=r"folder\.wav: is a directory"):
            reader(folder)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    for reader in (audio.load, audio.duration):
        with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
            reader(path)


def test_random_bytes(tmp_path, rng):
    path = tmp_path / "noise.wav"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for reader in (audio.load, audio.duration):
        with pytest.raises(AudioError, match=r"noise\.wav: unreadable or corrupt"):
            reader(path)


def test_truncated_header(tmp_path):
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, tone(440.0, 16000, 0.1), 16000, subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(
        whole.read_bytes()[:20]
    )  # RIFF chunk, then the fmt chunk cut short
    with pytest.raises(AudioError, match=r"truncated\.wav: unreadable or corrupt"):
        audio.load(path)


def test_header_without_samples(tmp_path):
    path = tmp_path / "nosamples.wav"
    soundfile.write(path, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"nosamples\.wav: holds no samples"):
        audio.load(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, value):
    path = tmp_path / "bad_float.wav"
    _write_nonfinite(path, value)
    with pytest.raises(
        AudioError, match=r"bad_float\.wav: non-finite sample .* index 321"
    ):
        audio.load(path)
