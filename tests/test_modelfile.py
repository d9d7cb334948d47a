"""Model files and checkpoints: round trips, atomic writes, every kind of bad file."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from npspeech import checkpoint, modelfile, models
from npspeech.alphabet import english
from npspeech.config import FeatureConfig, ModelConfig
from npspeech.errors import ModelFileError

CONFIG = ModelConfig(n_hidden=8, n_context=2, dropout=0.0)


@pytest.fixture
def model(rng):
    alphabet = english()
    network = models.init(CONFIG, 26, alphabet.n_classes, rng)
    training = {
        "epochs": 3,
        "dev_wer": 0.25,
        "train_csv": ["train.csv"],
        "recipe": {"learning_rate": 0.001},
    }
    return modelfile.ModelFile(network, FeatureConfig(), alphabet, training)


@pytest.fixture
def saved(tmp_path, model):
    return modelfile.save(tmp_path / "model.npz", model)


def test_round_trip_keeps_everything(saved, model):
    loaded = modelfile.load(saved)
    assert loaded.network.config == CONFIG
    assert loaded.features == model.features
    assert loaded.alphabet == model.alphabet
    assert loaded.sample_rate == 16_000
    assert loaded.training == model.training
    assert loaded.network.n_input == 26
    assert set(loaded.network.params) == set(model.network.params)
    for name, value in model.network.params.items():
        np.testing.assert_array_equal(loaded.network.params[name], value)
        assert loaded.network.params[name].dtype == value.dtype


def test_file_is_a_pickle_free_npz(saved):
    with np.load(saved, allow_pickle=False) as archive:
        assert modelfile.META_KEY in archive.files
        meta = json.loads(archive[modelfile.META_KEY].tobytes())
        assert all(archive[name].dtype != object for name in archive.files)
    assert meta["format"] == "npspeech-model"
    assert meta["format_version"] == modelfile.FORMAT_VERSION
    assert meta["alphabet"][0] == " "


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, model, monkeypatch):
    path = modelfile.save(tmp_path / "model.npz", model)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        modelfile.save(path, model)
    assert path.read_bytes() == before  # the old file survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        modelfile.load(saved)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not a model at all")
    with pytest.raises(ModelFileError, match="not an npspeech model file"):
        modelfile.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an npspeech model file"):
        modelfile.load(other)
    with pytest.raises(ModelFileError, match="not found"):
        modelfile.load(tmp_path / "missing.npz")


def _rewrite(path, change):
    """Rewrite one archive entry in place, as a newer writer or a bit flip would."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    change(entries)
    with path.open("wb") as handle:
        np.savez(handle, **entries)


def test_newer_format_version_is_refused(saved):
    def bump(entries):
        meta = json.loads(entries[modelfile.META_KEY].tobytes())
        meta["format_version"] = modelfile.FORMAT_VERSION + 1
        entries[modelfile.META_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    _rewrite(saved, bump)
    with pytest.raises(ModelFileError, match="newer npspeech"):
        modelfile.load(saved)


def test_modified_weights_fail_the_integrity_check(saved):
    def flip(entries):
        weights = entries["params/layer_1/W"].copy()
        weights[0, 0] += 1.0
        entries["params/layer_1/W"] = weights

    _rewrite(saved, flip)
    with pytest.raises(ModelFileError, match="integrity check"):
        modelfile.load(saved)


def test_a_byte_flipped_inside_the_zip_is_caught(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("params/layer_2/W.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the array's bytes
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt|integrity"):
        modelfile.load(saved)


def test_alphabet_must_fit_the_output_layer(tmp_path, model):
    from npspeech.alphabet import Alphabet
    from npspeech.errors import ConfigError

    model.alphabet = Alphabet(["a", "b"])
    with pytest.raises(ConfigError, match="outputs"):
        modelfile.save(tmp_path / "model.npz", model)


def test_checkpoint_round_trip(tmp_path, model):
    from npspeech import optim

    network = model.network
    optimizer = optim.adam_init(network.params)
    optimizer["step"] = 7
    schedule = optim.ReduceOnPlateau(1e-3, factor=0.5, patience=2).state
    state = checkpoint.TrainingState(
        network=network,
        optimizer=optimizer,
        schedule=schedule,
        epoch=2,
        batch=5,
        step=7,
        learning_rate=5e-4,
        record={"best_dev_wer": 0.5, "history": [1.0, 2.0]},
        config={"seed": 3},
        alphabet=list(model.alphabet.labels),
    )
    path = checkpoint.save(tmp_path / "last.npz", state)
    loaded = checkpoint.load(path)
    assert (loaded.epoch, loaded.batch, loaded.step) == (2, 5, 7)
    assert loaded.learning_rate == 5e-4
    assert loaded.record == {"best_dev_wer": 0.5, "history": [1.0, 2.0]}
    assert loaded.schedule == schedule
    assert loaded.optimizer["step"] == 7
    assert set(loaded.optimizer) == set(optimizer)
    for name, value in optimizer.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded.optimizer[name], value)
    for name, value in network.params.items():
        np.testing.assert_array_equal(loaded.network.params[name], value)
    with pytest.raises(ModelFileError, match="not an npspeech checkpoint"):
        checkpoint.load(modelfile.save(tmp_path / "model.npz", model))
