"""The training loop: determinism, exact resume, bad batches, transfer, curves."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from npspeech import checkpoint, modelfile, models, train
from npspeech.config import ModelConfig, TrainConfig
from npspeech.errors import ConfigError

pytestmark = pytest.mark.data


@pytest.fixture
def config(data_dir, tmp_path):
    """Three real utterances, one per batch (three steps an epoch), tiny model."""
    smoke = data_dir / "deepspeech_smoke"
    return TrainConfig(
        model=ModelConfig(n_hidden=12, n_context=2, dropout=0.1),
        train_csv=(str(smoke / "test.csv"),),
        dev_csv=(str(smoke / "ldc93s1.csv"),),
        alphabet=str(smoke / "alphabet.txt"),
        max_batch_size=1,
        epochs=2,
        learning_rate=3e-3,
        seed=11,
        output_dir=str(tmp_path / "run"),
        progress=False,
        backend="numba",
    )


def _final(result_dir):
    return checkpoint.load(Path(result_dir) / train.LAST_CHECKPOINT)


def _assert_same_state(first, second):
    assert (first.epoch, first.batch, first.step) == (
        second.epoch,
        second.batch,
        second.step,
    )
    assert first.learning_rate == second.learning_rate
    assert set(first.network.params) == set(second.network.params)
    for name, value in first.network.params.items():
        np.testing.assert_array_equal(second.network.params[name], value, err_msg=name)
    for name, value in first.optimizer.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(second.optimizer[name], value, err_msg=name)
        else:
            assert second.optimizer[name] == value


def test_same_seed_same_weights(config, tmp_path):
    first = train.train(config)
    second_config = dataclasses.replace(config, output_dir=str(tmp_path / "again"))
    second = train.train(second_config)
    assert first.steps == second.steps == 6  # 3 batches x 2 epochs
    _assert_same_state(_final(first.output_dir), _final(second.output_dir))
    other = train.train(
        dataclasses.replace(config, seed=12, output_dir=str(tmp_path / "other"))
    )
    assert not np.array_equal(
        _final(other.output_dir).network.params["layer_1/W"],
        _final(first.output_dir).network.params["layer_1/W"],
    )


def test_resume_mid_epoch_is_exact(config, tmp_path):
    """Stop after 4 steps (epoch 1, batch 1), resume, and match an uninterrupted run."""
    whole = train.train(dataclasses.replace(config, output_dir=str(tmp_path / "whole")))
    stopped = train.train(config, max_steps=4)
    assert stopped.stopped == "max_steps"
    middle = _final(stopped.output_dir)
    assert (middle.epoch, middle.batch, middle.step) == (1, 1, 4)
    resumed = train.train(config, resume=True)
    assert resumed.steps == 6
    _assert_same_state(_final(whole.output_dir), _final(resumed.output_dir))
    # The log reads as one run: each step once.
    steps = [
        e["step"] for e in train.read_log(resumed.output_dir) if e["event"] == "step"
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert resumed.best_dev_wer == whole.best_dev_wer


def test_killed_run_resumes_with_nothing_lost(config, tmp_path, monkeypatch):
    """Kill a run inside its fifth step; with a checkpoint after every step, the resumed
    run ends exactly where an uninterrupted one does."""
    whole = train.train(dataclasses.replace(config, output_dir=str(tmp_path / "whole")))
    every_step = dataclasses.replace(config, checkpoint_minutes=0.0)
    original = train.Trainer.train_step
    calls = []

    def dying(self, batch, epoch, index):
        calls.append((epoch, index))
        if len(calls) == 5:
            raise KeyboardInterrupt  # as a kill arriving mid-step
        return original(self, batch, epoch, index)

    monkeypatch.setattr(train.Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train.train(every_step)
    monkeypatch.undo()
    left = _final(every_step.output_dir)
    assert (left.epoch, left.batch, left.step) == (1, 1, 4)
    resumed = train.train(every_step, resume=True)
    _assert_same_state(_final(whole.output_dir), _final(resumed.output_dir))


def test_resume_refuses_a_changed_model(config):
    train.train(config, max_steps=1)
    changed = dataclasses.replace(
        config, model=dataclasses.replace(config.model, n_hidden=13)
    )
    with pytest.raises(ConfigError, match="model differs"):
        train.train(changed, resume=True)


def test_resume_without_checkpoint_is_an_error(config):
    with pytest.raises(ConfigError, match="no checkpoint"):
        train.train(config, resume=True)


def test_non_finite_batch_is_skipped_and_named(config):
    trainer = train.Trainer(config)
    batch = trainer.loader.batch(0, 0)
    before = {
        name: value.copy() for name, value in trainer.state.network.params.items()
    }
    optimizer_before = trainer.state.optimizer["step"]
    poisoned = dataclasses.replace(batch, features=batch.features.copy())
    poisoned.features[3, 0, 5] = np.nan
    with pytest.warns(RuntimeWarning, match=batch.utterances[0].source):
        result = trainer.train_step(poisoned, 0, 0)
    assert result["skipped"]
    assert trainer.state.step == 0
    assert trainer.state.optimizer["step"] == optimizer_before
    assert trainer.state.record["skipped_batches"] == 1
    for name, value in before.items():
        np.testing.assert_array_equal(trainer.state.network.params[name], value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean batch trains without any warning
        result = trainer.train_step(batch, 0, 0)
    assert not result["skipped"] and np.isfinite(result["loss"])
    assert trainer.state.step == 1
    assert any(
        not np.array_equal(trainer.state.network.params[n], before[n]) for n in before
    )


def test_non_finite_gradient_is_skipped(config, monkeypatch):
    """A finite loss whose gradient overflows: the update is skipped, weights kept."""
    trainer = train.Trainer(config)
    batch = trainer.loader.batch(0, 0)
    before = {
        name: value.copy() for name, value in trainer.state.network.params.items()
    }
    real_backward = models.backward

    def overflowing(network, dlogits, cache, backend=None):
        grads = real_backward(network, dlogits, cache, backend=backend)
        grads["layer_3/W"] = np.full_like(grads["layer_3/W"], np.inf)
        return grads

    monkeypatch.setattr(models, "backward", overflowing)
    with pytest.warns(RuntimeWarning, match="non-finite gradient"):
        result = trainer.train_step(batch, 0, 0)
    assert result["skipped"] and trainer.state.step == 0
    for name, value in before.items():
        np.testing.assert_array_equal(trainer.state.network.params[name], value)


def test_infeasible_target_is_skipped(config):
    """A transcript longer than its frames allow gives an infinite loss: skipped."""
    trainer = train.Trainer(config)
    batch = trainer.loader.batch(0, 0)
    short = dataclasses.replace(
        batch, features=batch.features[:5].copy(), lengths=np.minimum(batch.lengths, 5)
    )
    with pytest.warns(RuntimeWarning, match="non-finite CTC loss"):
        result = trainer.train_step(short, 0, 0)
    assert result["skipped"] and trainer.state.step == 0


def test_outputs_log_and_plot(config):
    result = train.train(config)
    out = result.output_dir
    for name in (
        train.LAST_CHECKPOINT,
        train.BEST_CHECKPOINT,
        train.MODEL_FILE,
        train.LOG_FILE,
        train.PLOT_FILE,
        train.CONFIG_FILE,
    ):
        assert (out / name).is_file(), name
    assert (out / train.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    epochs = [e for e in train.read_log(out) if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert all(
        {"train_loss", "dev_loss", "dev_wer", "dev_cer", "lr"} <= set(e) for e in epochs
    )
    saved = modelfile.load(out / train.MODEL_FILE)
    assert saved.training["dev_wer"] == result.best_dev_wer
    assert saved.training["train_csv"] == list(config.train_csv)
    assert json.loads((out / train.CONFIG_FILE).read_text())["seed"] == config.seed
    (out / train.PLOT_FILE).unlink()
    assert train.plot_run(out).is_file()


def test_early_stop_on_wer(config):
    """A rate too small to learn leaves the dev WER flat: stop after the patience."""
    stuck = dataclasses.replace(
        config,
        learning_rate=1e-12,
        epochs=10,
        early_stop_metric="wer",
        early_stop_patience=1,
    )
    result = train.train(stuck)
    assert result.stopped == "early_stop"
    assert result.epochs == 2


def test_fine_tuning_an_int8_model_trains_and_saves_float32(config, tmp_path):
    from npspeech import quantize

    base = train.train(dataclasses.replace(config, epochs=1))
    int8_path = tmp_path / "int8.npz"
    source = modelfile.load(base.model_path)
    modelfile.save(
        int8_path,
        dataclasses.replace(source, network=quantize.quantize_network(source.network)),
    )
    loaded = modelfile.load(int8_path).network
    assert isinstance(loaded, quantize.QuantizedNetwork)
    tuned = dataclasses.replace(
        config, init_from=str(int8_path), epochs=1, output_dir=str(tmp_path / "tuned")
    )
    trainer = train.Trainer(tuned)
    start = trainer.state.network
    assert type(start) is models.Network
    for name, value in loaded.params.items():  # the dequantized weights, unchanged
        np.testing.assert_array_equal(start.params[name], value, err_msg=name)
    result = trainer.run()
    saved = modelfile.load(result.model_path).network
    assert not isinstance(saved, quantize.QuantizedNetwork)
    weight = next(name for name in saved.params if quantize.quantizable(name))
    assert not np.array_equal(saved.params[weight], loaded.params[weight])


def test_transfer_learning_new_alphabet_and_top_layers(config, tmp_path, data_dir):
    base = train.train(dataclasses.replace(config, epochs=1))
    source = modelfile.load(base.model_path)
    alphabet = tmp_path / "alphabet.txt"
    labels = list(source.alphabet.labels) + ["-"]
    alphabet.write_text("\n".join(labels) + "\n")
    transfer = dataclasses.replace(
        config,
        init_from=str(base.model_path),
        alphabet=str(alphabet),
        reinit_layers=2,
        epochs=0,
        output_dir=str(tmp_path / "transfer"),
    )
    trainer = train.Trainer(transfer)
    network = trainer.state.network
    assert network.n_classes == source.network.n_classes + 1
    for name, value in source.network.params.items():
        if models.layer_of(name) in ("layer_1", "layer_2", "layer_3", "layer_4"):
            np.testing.assert_array_equal(network.params[name], value, err_msg=name)
    assert not np.array_equal(
        network.params["layer_5/W"], source.network.params["layer_5/W"]
    )
    too_many = dataclasses.replace(transfer, reinit_layers=7)
    with pytest.raises(ConfigError, match="reinit_layers"):
        train.Trainer(too_many)
