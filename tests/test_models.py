"""Architectures: shapes, whole-network gradient checks, padding, transfer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers.gradcheck import numerical_gradient, random_projection
from helpers.tolerances import (
    BACKEND_ATOL_FLOAT32,
    BACKEND_RTOL_FLOAT32,
    GRADCHECK_ATOL,
    GRADCHECK_RTOL,
    MODEL_PADDING_ATOL_FLOAT32,
    PARITY_ATOL_FLOAT32,
    PARITY_RTOL_FLOAT32,
)

from npspeech import models
from npspeech.config import ModelConfig
from npspeech.errors import ConfigError

# Tiny configurations: every code path of each architecture, small enough for finite
# differences over every weight.
TINY = {
    "deepspeech": ModelConfig(
        architecture="deepspeech", n_hidden=3, n_context=1, dropout=0.0
    ),
    "ds2": ModelConfig(
        architecture="ds2",
        n_hidden=3,
        dropout=0.0,
        conv_channels=(2, 2),
        conv_kernels=((3, 3), (3, 2)),
        conv_strides=((2, 2), (1, 1)),
        conv_padding=((1, 1), (1, 0)),
        rnn_kind="gru",
        rnn_layers=2,
    ),
    "ds2-stream": ModelConfig(
        architecture="ds2-stream",
        n_hidden=3,
        dropout=0.0,
        conv_channels=(2,),
        conv_kernels=((3, 3),),
        conv_strides=((1, 2),),
        conv_padding=((1, 1),),
        rnn_kind="gru",
        rnn_layers=2,
        lookahead_context=2,
    ),
}
N_INPUT = 5
N_CLASSES = 4


def _batch(rng, T, lengths, F=N_INPUT, dtype=np.float64):
    """A padded (T, B, F) batch, zero past each length."""
    lengths = np.asarray(lengths, dtype=np.int32)
    x = rng.standard_normal((T, lengths.size, F)).astype(dtype)
    x *= models.frame_mask(lengths, T, dtype)
    return x, lengths


def _needs(architecture):
    """ds2 variants need the convolution, norm and lookahead layers."""
    if architecture != "deepspeech":
        for name in ("conv", "norm", "lookahead"):
            pytest.importorskip(f"npspeech.nn.{name}")


def test_deepspeech_shapes_match_deepspeech_0_9():
    network = models.init(ModelConfig(n_hidden=64), 26, 29, np.random.default_rng(0))
    shapes = {name: array.shape for name, array in network.params.items()}
    assert shapes["layer_1/W"] == (19 * 26, 64)  # 494 inputs: 19 frames of 26 MFCC
    assert shapes["layer_2/W"] == shapes["layer_3/W"] == shapes["layer_5/W"] == (64, 64)
    assert shapes["layer_4/W_ih"] == (64, 4 * 64)  # fused LSTM gates i, f, g, o
    assert shapes["layer_4/W_hh"] == (64, 4 * 64)
    assert shapes["layer_6/W"] == (64, 29)  # 28 labels + blank
    assert network.state == {}
    assert all(a.dtype == np.float32 for a in network.params.values())
    assert models.layer_names(network.config) == [f"layer_{i}" for i in range(1, 7)]


def test_init_is_seeded():
    config = TINY["deepspeech"]
    first = models.init(config, N_INPUT, N_CLASSES, np.random.default_rng(7))
    again = models.init(config, N_INPUT, N_CLASSES, np.random.default_rng(7))
    other = models.init(config, N_INPUT, N_CLASSES, np.random.default_rng(8))
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], again.params[name])
    assert any(
        not np.array_equal(first.params[n], other.params[n]) for n in first.params
    )


@pytest.mark.parametrize("architecture", list(TINY))
def test_forward_shapes_and_zero_padding(architecture, rng):
    _needs(architecture)
    config = TINY[architecture]
    network = models.init(config, N_INPUT, N_CLASSES, rng, dtype=np.float64)
    x, lengths = _batch(rng, 7, [7, 4, 1])
    logits, out_lengths, _ = models.forward(network, x, lengths, backend="numpy")
    np.testing.assert_array_equal(out_lengths, models.output_lengths(config, lengths))
    assert logits.shape == (int(out_lengths.max()), 3, N_CLASSES)
    assert logits.dtype == np.float64
    padded = ~models.frame_mask(out_lengths, logits.shape[0], bool)[:, :, 0]
    assert np.all(logits[padded] == 0)
    assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("architecture", list(TINY))
def test_padding_does_not_change_outputs(architecture, rng):
    """Each sequence alone gives what it gives inside a longer padded batch."""
    _needs(architecture)
    network = models.init(TINY[architecture], N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 9, [9, 5, 3], dtype=np.float32)
    logits, out_lengths, _ = models.forward(network, x, lengths, backend="numpy")
    for b in range(3):
        alone = x[: lengths[b], b : b + 1]
        own, own_lengths, _ = models.forward(
            network, alone, lengths[b : b + 1], backend="numpy"
        )
        n = int(own_lengths[0])
        assert n == out_lengths[b]
        np.testing.assert_allclose(
            logits[:n, b], own[:n, 0], atol=MODEL_PADDING_ATOL_FLOAT32, rtol=0
        )


def _check_network_gradient(network, x, lengths, rng, training, frozen=False):
    """Finite differences of sum(logits * R) over every weight of the whole model."""
    seed = 1234
    # Fresh biases are exactly zero, so a frame whose inputs dropout zeroed sits on the
    # ReLU kink, where finite differences see half a slope; shift every weight off it.
    for param in network.params.values():
        param += rng.uniform(-0.1, 0.1, param.shape)

    def run():
        dropout_rng = np.random.default_rng(seed)  # the same masks on every evaluation
        return models.forward(
            network,
            x,
            lengths,
            training=training,
            rng=dropout_rng,
            backend="numpy",
            frozen_batch_norm=frozen,
        )

    logits, _, cache = run()
    projection = random_projection(rng, logits.shape)
    grads = models.backward(network, projection, cache, backend="numpy")
    assert set(grads) == set(network.params)

    def scalar():
        return float(np.sum(run()[0] * projection))

    for name, param in network.params.items():
        assert grads[name].shape == param.shape, name
        numeric = numerical_gradient(scalar, param)
        np.testing.assert_allclose(
            grads[name],
            numeric,
            rtol=GRADCHECK_RTOL * 10,
            atol=GRADCHECK_ATOL * 10,
            err_msg=name,
        )


def test_deepspeech_gradient_with_dropout(rng):
    """Whole DeepSpeech network in float64, dropout on, a padded batch."""
    config = dataclasses.replace(TINY["deepspeech"], dropout=0.3)
    network = models.init(config, N_INPUT, N_CLASSES, rng, dtype=np.float64)
    x, lengths = _batch(rng, 4, [4, 2])
    _check_network_gradient(network, x, lengths, rng, training=True)


@pytest.mark.parametrize("architecture", ["ds2", "ds2-stream"])
@pytest.mark.parametrize(
    ("training", "frozen"),
    [(True, False), (False, False), (True, True)],
    ids=["train", "eval", "frozen"],
)
def test_ds2_gradient(architecture, training, frozen, rng):
    """DS2 variants in float64: batch statistics (training) and running ones (eval,
    and training with frozen batch norm)."""
    _needs(architecture)
    network = models.init(TINY[architecture], N_INPUT, N_CLASSES, rng, dtype=np.float64)
    # Non-trivial running statistics, so eval mode does not reduce to the identity.
    for name in network.state:
        network.state[name] = rng.uniform(0.5, 1.5, network.state[name].shape)
    x, lengths = _batch(rng, 6, [6, 4])
    _check_network_gradient(network, x, lengths, rng, training=training, frozen=frozen)


@pytest.mark.parametrize("architecture", ["ds2", "ds2-stream"])
def test_ds2_gradient_with_dropout(architecture, rng):
    """DS2 variants in float64 with dropout after each recurrent layer."""
    _needs(architecture)
    config = dataclasses.replace(TINY[architecture], dropout=0.3)
    network = models.init(config, N_INPUT, N_CLASSES, rng, dtype=np.float64)
    x, lengths = _batch(rng, 6, [6, 4])
    _check_network_gradient(network, x, lengths, rng, training=True)


def test_frozen_batch_norm_trains_with_the_stored_statistics(rng):
    """Training mode with frozen batch norm computes what evaluation computes and
    leaves the running statistics as they were; unfrozen training does neither."""
    _needs("ds2")
    network = models.init(TINY["ds2"], N_INPUT, N_CLASSES, rng)
    for name in network.state:
        network.state[name] = rng.uniform(0.5, 1.5, network.state[name].shape).astype(
            np.float32
        )
    x, lengths = _batch(rng, 6, [6, 4], dtype=np.float32)
    evaluated, _, _ = models.forward(network, x, lengths, backend="numpy")
    frozen, _, cache = models.forward(
        network, x, lengths, training=True, backend="numpy", frozen_batch_norm=True
    )
    np.testing.assert_array_equal(frozen, evaluated)
    for name, value in network.state.items():
        np.testing.assert_array_equal(cache.state[name], value)
    trained, _, _ = models.forward(network, x, lengths, training=True, backend="numpy")
    assert np.abs(trained - evaluated).max() > 1e-2


def test_ds2_training_updates_running_state(rng):
    _needs("ds2")
    network = models.init(TINY["ds2"], N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 6, [6, 4], dtype=np.float32)
    _, _, cache = models.forward(network, x, lengths, training=True, backend="numpy")
    assert set(cache.state) == set(network.state)
    assert any(
        not np.array_equal(cache.state[k], network.state[k]) for k in network.state
    )
    _, _, frozen = models.forward(network, x, lengths, training=False, backend="numpy")
    for name in network.state:
        np.testing.assert_array_equal(frozen.state[name], network.state[name])


@pytest.mark.parametrize("architecture", list(TINY))
def test_numba_matches_numpy(architecture, rng):
    _needs(architecture)
    network = models.init(TINY[architecture], N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 8, [8, 6, 3], dtype=np.float32)
    results = {}
    for backend in ("numpy", "numba"):
        logits, _, cache = models.forward(
            network, x, lengths, training=True, backend=backend
        )
        dlogits = np.ones_like(logits) * models.frame_mask(
            cache.output_lengths, logits.shape[0], np.float32
        )
        results[backend] = (
            logits,
            models.backward(network, dlogits, cache, backend=backend),
        )
    np.testing.assert_allclose(
        results["numba"][0],
        results["numpy"][0],
        rtol=BACKEND_RTOL_FLOAT32,
        atol=BACKEND_ATOL_FLOAT32,
    )
    for name in network.params:
        np.testing.assert_allclose(
            results["numba"][1][name],
            results["numpy"][1][name],
            rtol=BACKEND_RTOL_FLOAT32 * 10,
            atol=BACKEND_ATOL_FLOAT32 * 10,
            err_msg=name,
        )


@pytest.mark.parametrize("architecture", list(TINY))
def test_dropout_needs_rng_and_is_off_in_eval(architecture, rng):
    """Dropout changes training outputs only. DS2 trains here with frozen batch norm,
    which normalises as evaluation does, so dropout is the only difference left."""
    _needs(architecture)
    config = dataclasses.replace(TINY[architecture], dropout=0.5)
    network = models.init(config, N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 6, [6, 4], dtype=np.float32)
    frozen = architecture != "deepspeech"
    with pytest.raises(ConfigError, match="rng"):
        models.forward(network, x, lengths, training=True, frozen_batch_norm=frozen)
    first, _, _ = models.forward(network, x, lengths, training=False, backend="numpy")
    again, _, _ = models.forward(network, x, lengths, training=False, backend="numpy")
    np.testing.assert_array_equal(first, again)

    def train_forward(network):
        logits, _, _ = models.forward(
            network,
            x,
            lengths,
            training=True,
            rng=np.random.default_rng(0),
            backend="numpy",
            frozen_batch_norm=frozen,
        )
        return logits

    assert not np.allclose(train_forward(network), first)
    # Without dropout, the same training pass is the evaluation one.
    plain = models.Network(
        dataclasses.replace(config, dropout=0.0),
        network.n_input,
        network.n_classes,
        network.params,
        network.state,
    )
    np.testing.assert_allclose(train_forward(plain), first, rtol=1e-5, atol=1e-6)


def test_reinitialize_top_layers_only(rng):
    network = models.init(TINY["deepspeech"], N_INPUT, N_CLASSES, rng)
    fresh = models.reinitialize(
        network, ["layer_5", "layer_6"], np.random.default_rng(99)
    )
    reference = models.init(
        network.config, N_INPUT, N_CLASSES, np.random.default_rng(99)
    )
    for name in network.params:
        expected = (
            reference if models.layer_of(name) in ("layer_5", "layer_6") else network
        )
        np.testing.assert_array_equal(fresh.params[name], expected.params[name], name)
    assert not np.array_equal(fresh.params["layer_6/W"], network.params["layer_6/W"])
    with pytest.raises(ConfigError, match="layer_9"):
        models.reinitialize(network, ["layer_9"], rng)


def test_with_classes_replaces_only_the_output_layer(rng):
    network = models.init(TINY["deepspeech"], N_INPUT, N_CLASSES, rng)
    wider = models.with_classes(network, N_CLASSES + 3, np.random.default_rng(1))
    assert wider.n_classes == N_CLASSES + 3
    assert wider.params["layer_6/W"].shape == (3, N_CLASSES + 3)
    np.testing.assert_array_equal(
        wider.params["layer_4/W_hh"], network.params["layer_4/W_hh"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "transformer"}, "architecture"),
        ({"n_hidden": 0}, "n_hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"architecture": "ds2", "rnn_kind": "qrnn"}, "rnn_kind"),
        ({"architecture": "ds2", "conv_kernels": ((3, 3),)}, "conv_kernels"),
    ],
)
def test_bad_configs_are_named(change, message):
    config = dataclasses.replace(ModelConfig(n_hidden=4), **change)
    with pytest.raises(ConfigError, match=message):
        models.init(config, N_INPUT, N_CLASSES, np.random.default_rng(0))


def test_forward_rejects_wrong_feature_width(rng):
    network = models.init(TINY["deepspeech"], N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 3, [3], F=N_INPUT + 1, dtype=np.float32)
    with pytest.raises(ConfigError, match=r"\(T, B, 5\)"):
        models.forward(network, x, lengths)


@pytest.mark.peers
def test_deepspeech_matches_pytorch(rng):
    """The same weights in a PyTorch DeepSpeech give the same logits and gradients."""
    torch = pytest.importorskip("torch")
    config = ModelConfig(n_hidden=6, n_context=2, dropout=0.0)
    network = models.init(config, N_INPUT, N_CLASSES, rng)
    x, lengths = _batch(rng, 6, [6], dtype=np.float32)
    logits, _, cache = models.forward(network, x, lengths, backend="numpy")
    projection = random_projection(rng, logits.shape).astype(np.float32)
    grads = models.backward(network, projection, cache, backend="numpy")

    p = {
        name: torch.tensor(value, requires_grad=True)
        for name, value in network.params.items()
    }
    stacked = torch.tensor(models.stack_context(x, lengths, config.n_context))
    h = stacked
    for name in ("layer_1", "layer_2", "layer_3"):
        h = torch.clamp(h @ p[f"{name}/W"] + p[f"{name}/b"], 0.0, config.relu_clip)
    lstm = torch.nn.LSTM(config.n_hidden, config.n_hidden)
    with torch.no_grad():  # PyTorch stores (4H, F); ours is (F, 4H), same gate order
        lstm.weight_ih_l0.copy_(p["layer_4/W_ih"].T)
        lstm.weight_hh_l0.copy_(p["layer_4/W_hh"].T)
        lstm.bias_ih_l0.copy_(p["layer_4/b_ih"])
        lstm.bias_hh_l0.copy_(p["layer_4/b_hh"])
    h, _ = lstm(h)
    h = torch.clamp(h @ p["layer_5/W"] + p["layer_5/b"], 0.0, config.relu_clip)
    expected = h @ p["layer_6/W"] + p["layer_6/b"]
    np.testing.assert_allclose(
        logits,
        expected.detach().numpy(),
        rtol=PARITY_RTOL_FLOAT32,
        atol=PARITY_ATOL_FLOAT32,
    )
    (expected * torch.tensor(projection)).sum().backward()
    for name in ("layer_1/W", "layer_2/b", "layer_5/W", "layer_6/W"):
        np.testing.assert_allclose(
            grads[name],
            p[name].grad.numpy(),
            rtol=PARITY_RTOL_FLOAT32 * 10,
            atol=PARITY_ATOL_FLOAT32 * 10,
            err_msg=name,
        )
    np.testing.assert_allclose(
        grads["layer_4/W_hh"],
        lstm.weight_hh_l0.grad.numpy().T,
        rtol=PARITY_RTOL_FLOAT32 * 10,
        atol=PARITY_ATOL_FLOAT32 * 10,
    )


def test_stack_context_matches_per_sequence_context_windows(rng):
    features = pytest.importorskip("npspeech.features")
    x, lengths = _batch(rng, 7, [7, 3, 1], dtype=np.float32)
    stacked = models.stack_context(x, lengths, 2)
    assert stacked.shape == (7, 3, 5 * N_INPUT)
    for b, length in enumerate(lengths):
        own = features.context_windows(x[:length, b], 2)
        np.testing.assert_array_equal(stacked[:length, b], own)
        assert np.all(stacked[length:, b] == 0)


def test_stack_context_layout_is_frame_major():
    """Row t holds frames t-n .. t+n one after the other, zeros outside the sequence."""
    x = np.arange(1, 7, dtype=np.float32).reshape(3, 1, 2)  # frames [1,2], [3,4], [5,6]
    stacked = models.stack_context(x, np.array([3]), 1)
    np.testing.assert_array_equal(stacked[0, 0], [0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(stacked[2, 0], [3, 4, 5, 6, 0, 0])
