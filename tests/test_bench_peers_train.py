"""The PyTorch twin of the training benchmark (``benchmarks/peers/train_torch.py``)
builds npspeech's ``deepspeech`` network: the same logits and the same gradients for the
same weights and batch, in float64, so the side-by-side timing compares like with
like."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.twin_losses import npspeech_loss_and_grads, torch_mean_ctc

from npspeech import models
from npspeech.config import ModelConfig

pytestmark = pytest.mark.peers

TWIN_PATH = Path(__file__).resolve().parent.parent / "benchmarks/peers/train_torch.py"
TWIN_ATOL = 1e-6  # the benchmark's contract: identical network, float64
F, V, H, N_CONTEXT = 5, 7, 6, 2  # features, classes (blank last), hidden, context
LENGTHS = np.array([9, 4, 7], dtype=np.int32)  # unsorted, with padding
TARGETS = [np.array([0, 2, 2, 1]), np.array([3]), np.array([4, 5, 1])]


def _twin():
    """The twin module, loaded from its file (``benchmarks`` is not a package)."""
    pytest.importorskip("torch")
    name = "npspeech_bench_train_torch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TWIN_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _network(rng, scheme="pytorch"):
    # The PyTorch-style dense init gives non-zero biases, so bias copies are exercised.
    config = ModelConfig(
        architecture="deepspeech",
        n_hidden=H,
        n_context=N_CONTEXT,
        dropout=0.0,
        relu_clip=1.5,
        init_scheme=scheme,
    )
    return models.init(config, F, V, rng, dtype=np.float64)


def _batch(rng):
    T, B = int(LENGTHS.max()), LENGTHS.size
    features = rng.normal(0.0, 2.0, (T, B, F))
    features *= models.frame_mask(LENGTHS, T, np.float64)  # zero padding, as the loader
    return features


def test_twin_logits_match_npspeech(rng):
    twin = _twin()
    network = _network(rng)
    features = _batch(rng)
    ours, _, _ = models.forward(
        network, features, LENGTHS, training=False, backend="numpy"
    )
    model = twin.from_network(network)
    model.eval()
    x = twin.model_input(features, LENGTHS, N_CONTEXT, dtype=model.layer_1.weight.dtype)
    theirs = model(x).detach().numpy()
    valid = models.frame_mask(LENGTHS, features.shape[0], bool)[:, :, 0]  # (T, B)
    assert theirs.dtype == np.float64
    # both ends of the clipped ReLU are reached, so the clip itself is compared
    first = model.layer_1(x).detach().numpy()[valid]
    assert (first > 1.5).any() and (first < 0.0).any()
    np.testing.assert_allclose(theirs[valid], ours[valid], rtol=0.0, atol=TWIN_ATOL)


def test_twin_gradients_match_npspeech(rng):
    torch = pytest.importorskip("torch")
    twin = _twin()
    network = _network(rng)
    features = _batch(rng)
    # npspeech's training step: per-utterance CTC, averaged over the batch
    losses, grads = npspeech_loss_and_grads(network, features, LENGTHS, TARGETS)
    # the twin's: CTC summed over the batch, divided by B
    model = twin.from_network(network)
    model.train()  # dropout is 0: training mode changes nothing but must run
    out = model(twin.model_input(features, LENGTHS, N_CONTEXT, dtype=torch.float64))
    loss = torch_mean_ctc(torch, out, LENGTHS, TARGETS)
    loss.backward()
    np.testing.assert_allclose(loss.item(), losses.mean(), rtol=0.0, atol=TWIN_ATOL)
    theirs = twin.network_params(model)  # layout mapping for the gradients below
    assert set(theirs) == set(grads)
    for name, value in twin.network_params(model).items():
        np.testing.assert_array_equal(value, network.params[name], err_msg=name)
    torch_grads = {}
    for dense in twin.DENSE_LAYERS:
        layer = getattr(model, dense)
        torch_grads[f"{dense}/W"] = layer.weight.grad.numpy().T
        torch_grads[f"{dense}/b"] = layer.bias.grad.numpy()
    for ours_name, torch_name in twin.LSTM_NAMES.items():
        grad = getattr(model.layer_4, torch_name).grad.numpy()
        torch_grads[f"layer_4/{ours_name}"] = grad.T if grad.ndim == 2 else grad
    for name, grad in grads.items():
        assert np.abs(grad).max() > 0, name  # every layer takes part
        np.testing.assert_allclose(
            torch_grads[name], grad, rtol=0.0, atol=TWIN_ATOL, err_msg=name
        )


def test_twin_rejects_other_architectures(rng):
    twin = _twin()
    config = ModelConfig(
        architecture="ds2-stream",
        n_hidden=4,
        rnn_layers=1,
        conv_channels=(2,),
        conv_kernels=((3, 3),),
        conv_strides=((1, 1),),
        conv_padding=((1, 1),),
        lookahead_context=1,
    )
    network = models.init(config, 8, V, rng, dtype=np.float64)
    with pytest.raises(ValueError, match="deepspeech"):
        twin.from_network(network)
