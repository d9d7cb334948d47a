import pytest

from npspeech.config import (
    FeatureConfig,
    from_dict,
    from_json,
    read_toml,
    to_dict,
    to_json,
)
from npspeech.errors import ConfigError


def test_deepspeech_defaults():
    config = FeatureConfig()
    assert (config.window_samples, config.step_samples, config.fft_size) == (
        512,
        320,
        512,
    )
    assert (
        FeatureConfig(window_ms=20, step_ms=10).fft_size == 512
    )  # 320 -> next power of 2


def test_round_trips():
    config = FeatureConfig(kind="spectrogram", n_mels=80)
    assert from_dict(FeatureConfig, to_dict(config)) == config
    assert from_json(FeatureConfig, to_json(config)) == config


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="features: unknown setting.*n_mel\\b"):
        from_dict(FeatureConfig, {"n_mel": 3}, where="features")


def test_read_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_toml(tmp_path / "missing.toml")
