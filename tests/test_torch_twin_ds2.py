"""The PyTorch twin of the ``ds2`` and ``ds2-stream`` networks
(``benchmarks/peers/train_torch_ds2.py``) computes npspeech's logits, gradients and
batch-norm statistics for the same weights and batch (float64), and the twin's training
loop (``benchmarks/peers/train_torch.py``) takes the steps npspeech's trainer takes on
the same batches (float32), so ``benchmarks/train_compare.py`` compares like with like.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.twin_losses import npspeech_loss_and_grads, torch_mean_ctc

from npspeech import models, train
from npspeech.config import FeatureConfig, ModelConfig, TrainConfig

pytestmark = pytest.mark.peers

PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers"
TWIN_ATOL = 1e-9  # float64, the same operations in another order
STEP_RTOL = 1e-4  # float32 losses a few Adam steps in
NORM_RTOL = 1e-3  # their gradient norms (sums of float32 squares over many frames)
F, V, H = 12, 6, 5  # input features, classes (blank last), hidden units
LENGTHS = np.array([13, 6, 10], dtype=np.int32)  # unsorted, with padding
TARGETS = [np.array([0, 2, 1]), np.array([3]), np.array([4, 1])]
# (architecture, rnn_kind): the recipes' GRUs both ways, and the LSTM mapping
VARIANTS = [("ds2", "gru"), ("ds2-stream", "gru"), ("ds2", "lstm")]


def _load(stem: str):
    """A twin module loaded from its file (``benchmarks`` is not a package)."""
    pytest.importorskip("torch")
    name = f"npspeech_bench_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PEERS / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _config(architecture: str, rnn_kind: str = "gru") -> ModelConfig:
    # 12 -> 6 -> 3 frequencies, 2 channels: the recurrent input is 6 wide; time
    # stride 2; two recurrent layers, so the sequence-wise batch norm between them runs.
    return ModelConfig(
        architecture=architecture,
        n_hidden=H,
        relu_clip=1.5,  # low, so both ends of every hardtanh are reached
        dropout=0.0,
        init_scheme="pytorch",
        conv_channels=(3, 2),
        conv_kernels=((5, 3), (3, 3)),
        conv_strides=((2, 2), (1, 2)),
        conv_padding=((2, 1), (1, 1)),
        rnn_kind=rnn_kind,
        rnn_layers=2,
        lookahead_context=2,
        batch_norm_momentum=0.3,
    )


def _network(rng, architecture, rnn_kind="gru"):
    """A float64 network whose batch norms hold non-trivial weights and statistics,
    so that every copy (gamma, beta, running mean and variance) is exercised."""
    network = models.init(_config(architecture, rnn_kind), F, V, rng, dtype=np.float64)
    for name, value in network.params.items():
        if name.endswith("/gamma"):
            network.params[name] = rng.uniform(0.5, 1.5, value.shape)
        elif name.endswith("/beta"):
            network.params[name] = rng.normal(0.0, 0.3, value.shape)
    for name, value in network.state.items():
        low, high = (-0.5, 0.5) if name.endswith("mean") else (0.5, 2.0)
        network.state[name] = rng.uniform(low, high, value.shape)
    return network


def _batch(rng):
    T, B = int(LENGTHS.max()), LENGTHS.size
    features = rng.normal(0.0, 2.0, (T, B, F))
    # garbage on the padded frames: both sides must ignore it
    features[models.frame_mask(LENGTHS, T, bool)[:, :, 0] == 0] = 7.0
    return features


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("architecture", "rnn_kind"), VARIANTS)
def test_twin_logits_match_npspeech(rng, architecture, rnn_kind, training):
    torch = pytest.importorskip("torch")
    twin = _load("train_torch_ds2")
    network = _network(rng, architecture, rnn_kind)
    features = _batch(rng)
    ours, out_lengths, cache = models.forward(
        network, features, LENGTHS, training=training, backend="numpy"
    )
    model = twin.from_network(network)
    model.train(training)
    with torch.no_grad():
        theirs, their_lengths = model.forward_batch(features, LENGTHS)
    theirs = theirs.numpy()
    assert theirs.dtype == np.float64
    np.testing.assert_array_equal(their_lengths, out_lengths)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=0.0, atol=TWIN_ATOL)
    # padded frames are zero on both sides, so the comparison above covers them
    padded = ~models.frame_mask(out_lengths, ours.shape[0], bool)[:, :, 0]
    assert padded.any() and not theirs[padded].any()
    # both ends of the first convolution's hardtanh are reached
    first = model.conv_1(torch.from_numpy(features).permute(1, 0, 2)[:, None])
    assert (first > 1.5).any() and (first < 0.0).any()
    # training updates the running statistics as npspeech does; evaluation keeps them
    for name, value in twin.network_state(model).items():
        np.testing.assert_allclose(
            value, cache.state[name], rtol=0.0, atol=TWIN_ATOL, err_msg=name
        )
        changed = not np.array_equal(cache.state[name], network.state[name])
        assert changed == training, name


@pytest.mark.parametrize("architecture", ["ds2", "ds2-stream"])
def test_twin_drops_out_where_npspeech_does(rng, architecture):
    """With ``dropout`` set, evaluation is unchanged on both sides, and training
    changes the twin's output only through its dropout (the masks are PyTorch's own,
    so the two sides agree in distribution, not value for value)."""
    torch = pytest.importorskip("torch")
    twin = _load("train_torch_ds2")
    plain = _network(rng, architecture)
    dropped = dataclasses.replace(
        plain, config=dataclasses.replace(plain.config, dropout=0.5)
    )
    features = _batch(rng)
    ours, _, _ = models.forward(dropped, features, LENGTHS, backend="numpy")

    def twin_logits(network, training):
        model = twin.from_network(network)
        model.train(training)
        torch.manual_seed(0)
        with torch.no_grad():
            return model.forward_batch(features, LENGTHS)[0].numpy()

    np.testing.assert_allclose(twin_logits(dropped, False), ours, atol=TWIN_ATOL)
    trained_plain, _, _ = models.forward(
        plain, features, LENGTHS, training=True, backend="numpy"
    )
    np.testing.assert_allclose(twin_logits(plain, True), trained_plain, atol=TWIN_ATOL)
    assert not np.allclose(twin_logits(dropped, True), trained_plain, atol=1e-3)


@pytest.mark.parametrize(("architecture", "rnn_kind"), VARIANTS)
def test_twin_gradients_match_npspeech(rng, architecture, rnn_kind):
    torch = pytest.importorskip("torch")
    twin = _load("train_torch_ds2")
    network = _network(rng, architecture, rnn_kind)
    features = _batch(rng)
    # npspeech's training step: per-utterance CTC, averaged over the batch
    losses, grads = npspeech_loss_and_grads(network, features, LENGTHS, TARGETS)
    # the twin's: CTC summed over the batch, divided by B
    model = twin.from_network(network)
    model.train()
    out, their_lengths = model.forward_batch(features, LENGTHS)
    loss = torch_mean_ctc(torch, out, their_lengths, TARGETS)
    loss.backward()
    np.testing.assert_allclose(loss.item(), losses.mean(), rtol=0.0, atol=TWIN_ATOL)
    params = twin.network_params(model)
    assert set(params) == set(network.params)
    for name, value in params.items():
        np.testing.assert_array_equal(value, network.params[name], err_msg=name)
    theirs = twin.network_grads(model)
    assert set(theirs) == set(grads)
    for name, grad in grads.items():
        assert np.abs(grad).max() > 0, name  # every parameter takes part
        np.testing.assert_allclose(
            theirs[name], grad, rtol=0.0, atol=TWIN_ATOL, err_msg=name
        )


def test_twin_rejects_what_it_cannot_build(rng):
    twin = _load("train_torch_ds2")
    config = dataclasses.replace(_config("ds2"), rnn_kind="rnn")
    network = models.init(config, F, V, rng, dtype=np.float64)
    with pytest.raises(ValueError, match="rnn_kind"):
        twin.from_network(network)
    deepspeech = models.init(
        ModelConfig(n_hidden=4, n_context=1), F, V, rng, dtype=np.float64
    )
    with pytest.raises(ValueError, match="ds2"):
        twin.from_network(deepspeech)


@pytest.mark.parametrize("architecture", ["ds2", "ds2-stream"])
def test_twin_recomputes_npspeech_batch_norm_statistics(rng, architecture):
    """``train.batch_norm_utterances`` on both sides: the same statistics from the
    same utterances, batched in two length buckets."""
    from npspeech import batch_norm_stats

    ds2 = _load("train_torch_ds2")
    network = _network(rng, architecture).astype(np.float32)
    features = [
        rng.normal(1.0, 2.0, (T, F)).astype(np.float32) for T in (9, 30, 11, 27, 8)
    ]
    ours = batch_norm_stats.recompute(network, features, frames_budget=60)
    model = ds2.from_network(network)
    ds2.recompute_batch_norm(model, features, frames_budget=60)
    theirs = ds2.network_state(model)
    assert set(theirs) == set(ours)
    for name, value in ours.items():
        assert not np.allclose(value, network.state[name])  # it changed
        np.testing.assert_allclose(theirs[name], value, rtol=1e-4, atol=1e-5)


@pytest.mark.data
@pytest.mark.parametrize(
    ("architecture", "frozen"),
    [("deepspeech", False), ("ds2", False), ("ds2-stream", False), ("ds2", True)],
)
def test_twin_trainer_takes_npspeech_steps(data_dir, tmp_path, architecture, frozen):
    """Four float32 steps of both training loops on the same real batches: the same
    losses, gradient norms, batch-norm statistics and weights; also with
    ``train.freeze_batch_norm``, which keeps the statistics fixed on both sides."""
    twin = _load("train_torch")
    smoke = data_dir / "deepspeech_smoke"
    model = _config(architecture)
    features = FeatureConfig(kind="fbank", window_ms=25.0, step_ms=10.0, n_mels=F)
    if architecture == "deepspeech":
        model = ModelConfig(n_hidden=8, n_context=2, dropout=0.0)
        features = FeatureConfig()
    config = TrainConfig(
        model=dataclasses.replace(model, relu_clip=20.0),
        features=features,
        train_csv=(str(smoke / "test.csv"),),
        alphabet=str(smoke / "alphabet.txt"),
        max_batch_size=2,
        learning_rate=3e-3,
        clip_norm=5.0,  # low enough to clip: the clipping must match too
        seed=5,
        output_dir=str(tmp_path / "run"),
        progress=False,
        backend="numpy",
        freeze_batch_norm=frozen,
    )
    trainer = train.Trainer(config)
    initial_state = dict(trainer.state.network.state)
    torch_trainer = twin.TorchTrainer(trainer.state.network.copy(), config)
    clipped = False
    for epoch in range(2):
        for index in range(len(trainer.loader)):
            batch = trainer.loader.batch(epoch, index)
            ours = trainer.train_step(batch, epoch, index)
            theirs = torch_trainer.train_step(batch)
            assert not ours["skipped"] and not theirs["skipped"]
            np.testing.assert_allclose(theirs["loss"], ours["loss"], rtol=STEP_RTOL)
            np.testing.assert_allclose(
                theirs["grad_norm"], ours["grad_norm"], rtol=NORM_RTOL
            )
            clipped = clipped or ours["grad_norm"] > config.clip_norm
    assert clipped and torch_trainer.steps == trainer.state.step >= 4
    network = trainer.state.network
    if architecture == "deepspeech":
        params, state = twin.network_params(torch_trainer.model), {}
    else:
        ds2 = _load("train_torch_ds2")
        params = ds2.network_params(torch_trainer.model)
        state = ds2.network_state(torch_trainer.model)
    # The batch norm after a convolution subtracts the channel mean, so the
    # convolution's bias has zero gradient but for rounding, which Adam scales up to
    # steps of the learning rate's size: noise on either side, and in the running mean
    # that follows it. Everything else must agree.
    noise = {
        f"conv_{index}{part}"
        for index in range(1, len(model.conv_channels) + 1)
        for part in ("/b", "_bn/running_mean")
    }
    assert set(params) == set(network.params)
    for name, value in network.params.items():
        if name not in noise:
            np.testing.assert_allclose(params[name], value, atol=1e-4, err_msg=name)
    assert set(state) == set(network.state)
    if frozen:
        for name, value in initial_state.items():
            np.testing.assert_array_equal(network.state[name], value, err_msg=name)
    for name, value in network.state.items():
        if name not in noise:
            np.testing.assert_allclose(
                state[name], value, rtol=1e-4, atol=1e-5, err_msg=name
            )


@pytest.mark.parametrize(
    ("recipe", "architecture", "millions"),
    [
        ("kathleen_fsdd_ds2", "ds2", 3.74),
        ("kathleen_fsdd_ds2_stream", "ds2-stream", 1.89),
    ],
)
def test_recipes_build_what_their_headers_say(
    recipe, architecture, millions, monkeypatch, rng
):
    """The recipes train_compare.py runs: their architecture, 20 ms output frames as
    the deepspeech recipe's, and a stream model whose features can stream."""
    from npspeech.cli import build_parser
    from npspeech.cli import train as cli_train
    from npspeech.features import n_features
    from npspeech.inference import frame_seconds

    monkeypatch.setenv("NPSPEECH_DATA", "/nonexistent")  # only paths are read
    path = PEERS.parent.parent / "recipes" / f"{recipe}.toml"
    args = build_parser().parse_args(["train", "--config", str(path)])
    config, augmentation = cli_train.build_config(cli_train.resolve_settings(args))
    assert config.model.architecture == architecture
    assert config.train_csv[0] == "/nonexistent/kathleen_arctic/train.csv"
    assert frame_seconds(config.model, config.features) == pytest.approx(0.020)
    assert augmentation.spec_augment_probability == 1.0
    if architecture == "ds2-stream":
        assert config.features.normalize == "none"  # "utterance" cannot stream
    network = models.init(config.model, n_features(config.features), 29, rng)
    assert network.n_parameters() / 1e6 == pytest.approx(millions, abs=0.005)
    assert f"{millions:.2f} M parameters" in path.read_text()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("kathleen_fsdd_ds2", "kathleen_fsdd_ds2_aug"),
        ("kathleen_fsdd_ds2_stream", "kathleen_fsdd_ds2_stream_aug"),
    ],
)
def test_second_stages_continue_their_first(first, second, monkeypatch):
    """A stage-2 recipe names the same network, front end, data and seed as the stage
    it continues (its --init-from model), and trains with frozen batch norm."""
    from npspeech.cli import build_parser
    from npspeech.cli import train as cli_train

    monkeypatch.setenv("NPSPEECH_DATA", "/nonexistent")
    recipes = PEERS.parent.parent / "recipes"

    def load(name):
        argv = ["train", "--config", str(recipes / f"{name}.toml")]
        args = build_parser().parse_args(argv)
        return cli_train.build_config(cli_train.resolve_settings(args))

    (stage_1, _), (stage_2, augmentation) = load(first), load(second)
    assert stage_2.model == stage_1.model
    assert stage_2.features == stage_1.features
    for field in ("train_csv", "dev_csv", "alphabet", "seed", "batch_frames"):
        assert getattr(stage_2, field) == getattr(stage_1, field), field
    assert stage_1.batch_norm_utterances == 1000 and not stage_1.freeze_batch_norm
    assert stage_2.freeze_batch_norm and stage_2.batch_norm_utterances == 0
    assert augmentation.speed_probability == augmentation.volume_probability == 0.5
