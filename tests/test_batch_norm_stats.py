"""Batch-norm statistics recomputed from training data (npspeech/batch_norm_stats.py),
alone and inside the trainer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from npspeech import batch_norm_stats, checkpoint, models, train
from npspeech.config import FeatureConfig, ModelConfig, TrainConfig
from npspeech.errors import ConfigError

pytest.importorskip("npspeech.nn.norm")

STREAM = ModelConfig(
    architecture="ds2-stream",
    n_hidden=4,
    dropout=0.0,
    conv_channels=(2,),
    conv_kernels=((3, 3),),
    conv_strides=((1, 2),),
    conv_padding=((1, 1),),
    rnn_kind="gru",
    rnn_layers=2,
    lookahead_context=2,
)
N_INPUT, N_CLASSES = 6, 5


def _network(seed=0):
    return models.init(STREAM, N_INPUT, N_CLASSES, np.random.default_rng(seed))


def _utterances(rng, lengths, offset=0.0):
    return [
        (rng.standard_normal((T, N_INPUT)) + offset).astype(np.float32) for T in lengths
    ]


def _padded(features):
    lengths = np.array([f.shape[0] for f in features], dtype=np.int32)
    x = np.zeros((lengths.max(), len(features), N_INPUT), dtype=np.float32)
    for b, f in enumerate(features):
        x[: f.shape[0], b] = f
    return x, lengths


def test_one_batch_makes_evaluation_match_training_mode(rng):
    """With the statistics of one batch, evaluation normalises that batch as training
    does (up to the unbiased variance that running statistics keep), while the
    statistics left by initialisation do not."""
    network = _network()
    features = _utterances(rng, [40, 33, 37], offset=3.0)
    x, lengths = _padded(features)
    trained, _, _ = models.forward(network, x, lengths, training=True)
    stale, _, _ = models.forward(network, x, lengths)
    fresh = dataclasses.replace(
        network,
        state=batch_norm_stats.recompute(network, features, frames_budget=10_000),
    )
    evaluated, _, _ = models.forward(fresh, x, lengths)
    np.testing.assert_allclose(evaluated, trained, rtol=0.02, atol=0.02)
    assert np.abs(stale - trained).max() > 0.5  # the check can fail


def test_batches_are_weighted_by_their_frames(rng):
    short, long = _utterances(rng, [10, 12]), _utterances(rng, [50, 60], offset=1.0)
    network = _network()
    each = [
        batch_norm_stats.recompute(network, part, frames_budget=10_000)
        for part in (short, long)
    ]
    # A budget of 120 padded frames puts the two short and the two long ones apart.
    both = batch_norm_stats.recompute(network, short + long, frames_budget=120)
    weights = np.array([22.0, 110.0]) / 132.0
    for name in network.state:
        expected = weights[0] * each[0][name] + weights[1] * each[1][name]
        np.testing.assert_allclose(both[name], expected, rtol=1e-5, err_msg=name)
        assert both[name].dtype == network.state[name].dtype


def test_weights_and_input_state_are_untouched(rng):
    network = _network()
    before = network.copy()
    batch_norm_stats.recompute(network, _utterances(rng, [20, 25]), frames_budget=1000)
    for table in ("params", "state"):
        for name, value in getattr(before, table).items():
            np.testing.assert_array_equal(getattr(network, table)[name], value)


def test_a_network_without_batch_norm_gives_no_state(rng):
    plain = models.init(ModelConfig(n_hidden=3, n_context=1), N_INPUT, N_CLASSES, rng)
    assert (
        batch_norm_stats.recompute(plain, _utterances(rng, [9]), frames_budget=99) == {}
    )


def test_sample_is_seeded_distinct_and_sorted():
    first = batch_norm_stats.sample_indices(50, 10, seed=3, epoch=1)
    assert list(first) == sorted(set(first.tolist())) and len(first) == 10
    np.testing.assert_array_equal(
        first, batch_norm_stats.sample_indices(50, 10, seed=3, epoch=1)
    )
    assert not np.array_equal(first, batch_norm_stats.sample_indices(50, 10, 3, 2))
    np.testing.assert_array_equal(
        batch_norm_stats.sample_indices(4, 10, 3, 1), range(4)
    )


# -- inside the trainer ----------------------------------------------------------------


@pytest.fixture
def stream_config(data_dir, tmp_path):
    """ds2-stream on the three smoke utterances, one per batch, statistics recomputed
    from two of them after each epoch."""
    smoke = data_dir / "deepspeech_smoke"
    return TrainConfig(
        model=dataclasses.replace(
            STREAM, conv_kernels=((5, 5),), conv_padding=((2, 2),)
        ),
        features=FeatureConfig(
            kind="fbank", n_mels=12, window="hann_periodic", normalize="none"
        ),
        train_csv=(str(smoke / "test.csv"),),
        dev_csv=(str(smoke / "ldc93s1.csv"),),
        alphabet=str(smoke / "alphabet.txt"),
        max_batch_size=1,
        epochs=2,
        learning_rate=3e-3,
        seed=5,
        output_dir=str(tmp_path / "run"),
        progress=False,
        batch_norm_utterances=2,
    )


@pytest.mark.data
def test_trainer_stores_the_recomputed_statistics(stream_config, tmp_path):
    trainer = train.Trainer(stream_config)
    result = trainer.run()
    final = checkpoint.load(Path(result.output_dir) / train.LAST_CHECKPOINT)
    chosen = batch_norm_stats.sample_indices(3, 2, stream_config.seed, epoch=1)
    expected = batch_norm_stats.recompute(
        final.network,
        [trainer.cache.get(trainer.train_set[i]) for i in chosen],
        frames_budget=stream_config.batch_frames,
        max_batch_size=1,
    )
    for name, value in expected.items():
        np.testing.assert_allclose(final.network.state[name], value, err_msg=name)
    epochs = [e for e in train.read_log(result.output_dir) if e["event"] == "epoch"]
    assert [e["batch_norm_utterances"] for e in epochs] == [2, 2]

    # Without the option the running averages stay: different statistics.
    plain = train.train(
        dataclasses.replace(
            stream_config, batch_norm_utterances=0, output_dir=str(tmp_path / "plain")
        )
    )
    running = checkpoint.load(Path(plain.output_dir) / train.LAST_CHECKPOINT)
    assert not np.allclose(
        running.network.state["conv_1_bn/running_mean"],
        final.network.state["conv_1_bn/running_mean"],
    )


@pytest.mark.data
def test_resume_mid_epoch_recomputes_the_same(stream_config, tmp_path):
    whole = train.train(
        dataclasses.replace(stream_config, output_dir=str(tmp_path / "whole"))
    )
    assert train.train(stream_config, max_steps=4).stopped == "max_steps"
    resumed = train.train(stream_config, resume=True)
    first, second = (
        checkpoint.load(Path(r.output_dir) / train.LAST_CHECKPOINT)
        for r in (whole, resumed)
    )
    for table in ("params", "state"):
        for name, value in getattr(first.network, table).items():
            np.testing.assert_array_equal(
                getattr(second.network, table)[name], value, err_msg=name
            )


def test_negative_count_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="batch_norm_utterances"):
        train.Trainer(
            TrainConfig(
                train_csv=("x.csv",),
                output_dir=str(tmp_path),
                batch_norm_utterances=-1,
            )
        )


@pytest.mark.data
def test_frozen_batch_norm_keeps_the_statistics(stream_config, tmp_path):
    frozen = dataclasses.replace(
        stream_config, batch_norm_utterances=0, freeze_batch_norm=True
    )
    trainer = train.Trainer(frozen)
    initial = dict(trainer.state.network.state)
    result = trainer.run()
    final = checkpoint.load(Path(result.output_dir) / train.LAST_CHECKPOINT)
    assert final.step == 6
    for name, value in initial.items():
        np.testing.assert_array_equal(final.network.state[name], value, err_msg=name)
    with pytest.raises(ConfigError, match="choose one"):
        train.Trainer(dataclasses.replace(stream_config, freeze_batch_norm=True))
