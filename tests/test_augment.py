"""Augmentation: each one's probability, range and effect, and its reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile

from npspeech.augment import (
    AugmentConfig,
    NoiseBank,
    add_noise,
    apply_masks,
    apply_signal_plan,
    change_speed,
    change_volume,
    draw_masks,
    draw_signal_plan,
    expand_noise_files,
    snap_speed,
    spec_augment,
    speed_output_length,
)
from npspeech.config import from_dict
from npspeech.errors import ConfigError, DataError

RATE = 16_000
DRAWS = 4000


def within_binomial(count: int, n: int, p: float) -> bool:
    """``count`` successes in ``n`` tries is within 5 standard deviations of ``n p``."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    noise = noisy.astype(np.float64) - clean
    return 10 * math.log10(np.mean(clean**2) / np.mean(noise**2))


def tone(frequency: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_frequency(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.argmax(spectrum) * RATE / signal.size)


# -- configuration ------------------------------------------------------------------
def test_everything_is_off_by_default():
    config = AugmentConfig()
    assert not config.changes_audio and config.max_length_factor == 1.0
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert draw_signal_plan(config, rng).is_identity
        assert draw_masks(50, 26, config, rng) == ([], [])


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"noise_probability": 1.5}, "noise_probability"),
        ({"spec_augment_probability": -0.1}, "spec_augment_probability"),
        ({"speed_range": (1.1, 0.9)}, "speed_range"),
        ({"speed_range": (0.0, 1.1)}, "speed_range"),
        ({"speed_range": 1.1}, "speed_range"),
        ({"volume_gain_db": (1.0,)}, "volume_gain_db"),
        ({"time_masks": -1}, "time_masks"),
        ({"frequency_mask_max_width": 2.5}, "frequency_mask_max_width"),
    ],
)
def test_bad_settings_are_named(settings, field):
    with pytest.raises(ConfigError, match=f"augmentation.{field}"):
        AugmentConfig(**settings)


def test_config_reads_from_a_recipe_table():
    config = from_dict(
        AugmentConfig,
        {"speed_probability": 0.5, "speed_range": [0.8, 1.2], "noise_files": ["n.wav"]},
    )
    assert config.speed_range == (0.8, 1.2) and config.noise_files == ("n.wav",)
    assert config.changes_audio and config.max_length_factor == pytest.approx(1.25)
    with pytest.raises(ConfigError, match="unknown setting"):
        from_dict(AugmentConfig, {"speed_prob": 0.5})


# -- probabilities and ranges -------------------------------------------------------
def test_signal_plan_respects_probabilities_and_ranges():
    config = AugmentConfig(
        speed_probability=0.3,
        speed_range=(0.85, 1.15),
        volume_probability=0.6,
        volume_gain_db=(-10.0, 3.0),
        noise_probability=0.1,
        noise_snr_db=(5.0, 20.0),
    )
    rng = np.random.default_rng(1)
    plans = [draw_signal_plan(config, rng) for _ in range(DRAWS)]
    speeds = [p.speed for p in plans if p.speed is not None]
    gains = [p.gain_db for p in plans if p.gain_db is not None]
    snrs = [p.snr_db for p in plans if p.snr_db is not None]
    assert within_binomial(len(speeds), DRAWS, 0.3)
    assert within_binomial(len(gains), DRAWS, 0.6)
    assert within_binomial(len(snrs), DRAWS, 0.1)
    # Rounded to the 1/1000 grid, and the (grid) range ends are never crossed.
    assert 0.85 <= min(speeds) and max(speeds) <= 1.15
    assert all(s == snap_speed(s) == round(s * 1000) / 1000 for s in speeds)
    assert len(set(speeds)) > 250  # fine-grained, not a few coarse ratios
    assert -10.0 <= min(gains) and max(gains) <= 3.0 and np.ptp(gains) > 12.0
    assert 5.0 <= min(snrs) and max(snrs) <= 20.0
    always = AugmentConfig(
        speed_probability=1, volume_probability=1, noise_probability=1
    )
    assert all(
        p.speed is not None and p.gain_db is not None and p.snr_db is not None
        for p in (draw_signal_plan(always, rng) for _ in range(200))
    )


def test_spec_augment_respects_probability_counts_and_widths():
    config = AugmentConfig(
        spec_augment_probability=0.25,
        time_masks=3,
        time_mask_max_width=7,
        frequency_masks=2,
        frequency_mask_max_width=5,
    )
    rng = np.random.default_rng(2)
    applied = 0
    widths = []
    for _ in range(DRAWS):
        time, frequency = draw_masks(40, 26, config, rng)
        if not time:
            assert not frequency
            continue
        applied += 1
        assert len(time) == 3 and len(frequency) == 2
        for (start, width), size, limit in [(m, 40, 7) for m in time] + [
            (m, 26, 5) for m in frequency
        ]:
            assert 0 <= width <= limit and 0 <= start and start + width <= size
            widths.append(width)
    assert within_binomial(applied, DRAWS, 0.25)
    assert set(widths) == set(range(8))  # every width 0..max occurs


def test_masks_never_exceed_a_short_utterance():
    config = AugmentConfig(
        spec_augment_probability=1.0, time_masks=4, time_mask_max_width=50
    )
    rng = np.random.default_rng(3)
    for _ in range(200):
        time, _ = draw_masks(6, 26, config, rng)
        assert all(0 <= start and start + width <= 6 for start, width in time)


def test_spec_augment_zeroes_exactly_the_masked_frames_and_features():
    rng = np.random.default_rng(4)
    features = rng.uniform(1.0, 2.0, size=(30, 12)).astype(np.float32)
    masked = apply_masks(features, [(3, 4), (20, 2)], [(5, 3)])
    expected = np.ones_like(features, dtype=bool)
    expected[3:7] = expected[20:22] = False
    expected[:, 5:8] = False
    np.testing.assert_array_equal(masked != 0, expected)
    np.testing.assert_array_equal(masked[expected], features[expected])
    assert np.all(features >= 1.0)  # the input is untouched

    config = AugmentConfig(spec_augment_probability=1.0, time_mask_max_width=8)
    out = spec_augment(features, config, np.random.default_rng(5))
    time, frequency = draw_masks(30, 12, config, np.random.default_rng(5))
    np.testing.assert_array_equal(out, apply_masks(features, time, frequency))


# -- effects ------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0.9, 1.0073, 1.1, 1.37])
def test_speed_changes_length_and_pitch_by_the_factor(factor):
    signal = tone(440.0)
    out = change_speed(signal, factor)
    snapped = snap_speed(factor)
    assert out.dtype == np.float32
    assert out.size == speed_output_length(signal.size, factor)
    assert out.size == math.ceil(signal.size / snapped)
    assert abs(snapped - factor) <= 5e-4
    assert abs(out.size - signal.size / factor) <= signal.size * 1e-3 + 1
    # Resampling plays the tone faster: its frequency scales by the factor.
    assert peak_frequency(out) == pytest.approx(440.0 * snapped, abs=1.5)
    assert np.array_equal(change_speed(signal, 1.0), signal)


def test_planned_length_bounds_every_speed_draw():
    config = AugmentConfig(speed_probability=1.0, speed_range=(0.9137, 1.05))
    rng = np.random.default_rng(12)
    longest = max(
        speed_output_length(48_000, draw_signal_plan(config, rng).speed)
        for _ in range(2000)
    )
    assert longest <= math.ceil(48_000 * config.max_length_factor)
    assert longest >= 48_000 / 0.9137 - 48_000 * 1e-3


def test_volume_gain_in_decibels():
    signal = tone(300.0) * 0.1
    for gain in (-12.0, 0.0, 4.5):
        out = change_volume(signal, gain)
        measured = 20 * math.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
        reference = 20 * math.log10(np.sqrt(np.mean(signal.astype(np.float64) ** 2)))
        assert measured - reference == pytest.approx(gain, abs=1e-4)


@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_white_noise_at_the_requested_snr(snr):
    rng = np.random.default_rng(6)
    signal = tone(500.0)
    noisy = add_noise(signal, snr, rng)
    assert noisy.dtype == np.float32 and noisy.shape == signal.shape
    assert snr_db(signal, noisy) == pytest.approx(snr, abs=0.01)


def test_recorded_noise_is_looped_and_scaled(tmp_path):
    rng = np.random.default_rng(7)
    noise = rng.uniform(-0.3, 0.3, size=3000).astype(np.float32)  # shorter than signal
    signal = tone(250.0)
    noisy = add_noise(signal, 7.0, rng, noise)
    assert snr_db(signal, noisy) == pytest.approx(7.0, abs=0.01)
    # What was added is the recording itself: scaled, from some offset, repeated.
    added = noisy.astype(np.float64) - signal
    looped = np.tile(noise, 10).astype(np.float64)
    head = [looped[o : o + 200] for o in range(noise.size)]
    errors = [np.abs(h * (h @ added[:200]) / (h @ h) - added[:200]).max() for h in head]
    segment = looped[int(np.argmin(errors)) :][: signal.size]
    scale = (segment @ added) / (segment @ segment)
    np.testing.assert_allclose(added, scale * segment, atol=1e-5)
    silent = np.zeros(800, np.float32)
    assert np.array_equal(add_noise(silent, 10.0, rng), silent)


def test_signal_plan_applies_speed_volume_then_noise():
    plan = draw_signal_plan(
        AugmentConfig(speed_probability=1, volume_probability=1, noise_probability=1),
        np.random.default_rng(8),
    )
    signal = tone(400.0)
    rng = np.random.default_rng(9)
    out = apply_signal_plan(signal, plan, rng)
    clean = change_volume(change_speed(signal, plan.speed), plan.gain_db)
    assert out.size == clean.size == speed_output_length(signal.size, plan.speed)
    assert snr_db(clean, out) == pytest.approx(plan.snr_db, abs=0.01)


def test_augmentation_is_reproducible_for_a_seed():
    config = AugmentConfig(
        speed_probability=0.5,
        volume_probability=0.5,
        noise_probability=0.5,
        spec_augment_probability=0.5,
    )
    signal = tone(350.0, 0.5)
    features = np.random.default_rng(10).uniform(1, 2, (25, 26)).astype(np.float32)

    def run(seed):
        rng = np.random.default_rng(seed)
        outputs = []
        for _ in range(8):
            plan = draw_signal_plan(config, rng)
            outputs.append(apply_signal_plan(signal, plan, rng))
            outputs.append(spec_augment(features, config, rng))
        return outputs

    first, again, other = run(42), run(42), run(43)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert any(
        a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other)
    )


# -- noise recordings ---------------------------------------------------------------
def test_noise_lists_and_bank(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "noise"
    folder.mkdir()
    soundfile.write(str(folder / "hum.wav"), rng.uniform(-0.2, 0.2, 800), 8000)
    soundfile.write(str(folder / "hiss.wav"), rng.uniform(-0.2, 0.2, 1600), RATE)
    (folder / "list.csv").write_text(
        "wav_filename,wav_filesize,transcript\nhum.wav,0,\nhiss.wav,0,\n"
    )
    (tmp_path / "list.txt").write_text("# noise\nnoise/hum.wav\n\n")
    paths = expand_noise_files([folder / "list.csv", tmp_path / "list.txt"])
    hum, hiss = (folder / "hum.wav").resolve(), (folder / "hiss.wav").resolve()
    assert paths == [hum, hiss, hum]
    bank = NoiseBank([folder / "list.csv"], sample_rate=RATE)
    sizes = {bank.draw(rng).size for _ in range(50)}
    assert sizes == {1600}  # hum resampled from 8 kHz, hiss as it is
    with pytest.raises(DataError, match="no wav_filename column"):
        (tmp_path / "bad.csv").write_text("path\nx.wav\n")
        expand_noise_files([tmp_path / "bad.csv"])
    with pytest.raises(DataError, match="cannot read noise list"):
        expand_noise_files([tmp_path / "absent.txt"])
