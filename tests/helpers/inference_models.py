"""Small seeded models for the inference tests (API, streams, long recordings).

Random weights give near-uniform outputs whose best path is mostly blank; the output
layer is scaled up so that the models emit varied labels, which makes comparisons of
transcripts and timings between decoding paths meaningful.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npspeech import models
from npspeech.alphabet import Alphabet
from npspeech.config import FeatureConfig, ModelConfig

OUTPUT_SCALE = 8.0  # output-layer weights x this: peaky, varied outputs


def smoke_alphabet(data_dir: Path) -> Alphabet:
    """DeepSpeech's English alphabet from the smoke-test data."""
    return Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")


def small_model(
    architecture: str,
    alphabet: Alphabet,
    seed: int = 0,
    n_hidden: int = 64,
    calibration: np.ndarray | None = None,
) -> tuple[models.Network, FeatureConfig]:
    """A seeded random network of ``architecture`` and the features it reads.

    ``calibration`` (float32 samples at 16 kHz): its batch statistics become the
    batch norms' running statistics (``ds2`` models), so that the unnormalised
    spectrogram does not saturate the layers into a constant output.
    """
    rng = np.random.default_rng(seed)
    if architecture == "deepspeech":
        config = ModelConfig(architecture="deepspeech", n_hidden=n_hidden, dropout=0.0)
        features = FeatureConfig()
        n_input = 26
    else:
        config = ModelConfig(
            architecture=architecture,
            n_hidden=n_hidden,
            dropout=0.0,
            conv_channels=(4, 4),
            rnn_layers=2,
            lookahead_context=4,
        )
        features = FeatureConfig(
            kind="spectrogram",
            window_ms=20.0,
            step_ms=10.0,
            window="hann_symmetric",
            normalize="none",
        )
        n_input = 161
    network = models.init(config, n_input, alphabet.n_classes, rng)
    if calibration is not None and network.state:
        import dataclasses

        from npspeech.features import compute

        x = compute(calibration, features)[:, None, :]  # (T, 1, F)
        once = dataclasses.replace(
            network, config=dataclasses.replace(config, batch_norm_momentum=1.0)
        )
        _, _, cache = models.forward(
            once, x, np.array([x.shape[0]], dtype=np.int32), training=True
        )
        network.state = cache.state
    name = "layer_6/W" if architecture == "deepspeech" else "output/W"
    network.params[name] = network.params[name] * np.float32(OUTPUT_SCALE)
    return network, features


def save_small_model(path: Path, architecture: str, alphabet: Alphabet, **kw) -> Path:
    """:func:`small_model` written as a model file at ``path``."""
    from npspeech import modelfile

    network, features = small_model(architecture, alphabet, **kw)
    return modelfile.save(path, modelfile.ModelFile(network, features, alphabet))
