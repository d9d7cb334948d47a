"""An int8 copy of a trained model transcribes real speech as well as the float one.

The model is ``tests/data/models/kathleen_fsdd_160.npz`` (DeepSpeech, width 160);
the speech the 112 utterances of ``kathleen_arctic/test.csv``; the language model a
3-gram built here from ``kathleen_arctic/train.csv``'s transcripts only (never a test
sentence). Greedy and beam (width 100) + LM decoding, both under the issue's bound:
WER and CER of the int8 model within 0.5 points of the float32 model's. The same
figures, from ``benchmarks/bench_int8.py``, are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import numpy as np
import pytest

from npspeech import metrics, modelfile
from npspeech.config import DecodeConfig
from npspeech.corpus import read_csvs
from npspeech.inference import Model, make_decoder
from npspeech.quantize import QuantizedNetwork, quantize_file

UTTERANCES = 112  # the whole test set: a few seconds, and less noise than a part
BOUND = 0.005  # 0.5 points of WER and of CER


@pytest.fixture(scope="module")
def models_pair(trained_model_path, tmp_path_factory):
    int8_path = tmp_path_factory.mktemp("int8") / "model_int8.npz"
    quantize_file(trained_model_path, int8_path)
    assert int8_path.stat().st_size <= 0.3 * trained_model_path.stat().st_size
    pair = {}
    for name, path in (("float32", trained_model_path), ("int8", int8_path)):
        loaded = modelfile.load(path)
        pair[name] = Model(loaded.network, loaded.features, loaded.alphabet)
    assert isinstance(pair["int8"].network, QuantizedNetwork)
    assert pair["int8"].inference_network.weights == "int8"
    assert pair["float32"].inference_network.weights == "float32"
    return pair


@pytest.fixture(scope="module")
def scorer(data_dir, tmp_path_factory):
    from npspeech.lm.build import build_arpa, write_arpa

    train = read_csvs([data_dir / "kathleen_arctic" / "train.csv"])
    path = tmp_path_factory.mktemp("lm") / "train_3gram.arpa"
    write_arpa(build_arpa([row.transcript for row in train], order=3), path)
    return path


def _transcribe(model, utterances, config):
    decoder = make_decoder(model.alphabet, config, model.frame_seconds)
    texts = []
    for row in utterances:
        features = model.compute_features(str(row.audio_path))
        log_probs, lengths = model.log_probs(
            features[:, None], np.array([len(features)])
        )
        texts.append(decoder.decode_text(log_probs[: lengths[0], 0]))
    return texts


@pytest.mark.parametrize("decoder", ["greedy", "beam+lm"])
def test_int8_error_rates_match_float(decoder, models_pair, scorer, data_dir):
    rows = read_csvs([data_dir / "kathleen_arctic" / "test.csv"])[:UTTERANCES]
    references = [row.transcript for row in rows]
    if decoder == "greedy":
        config = DecodeConfig(decoder="greedy")
    else:
        config = DecodeConfig(decoder="beam", beam_width=100, scorer=str(scorer))
    rates = {}
    for name, model in models_pair.items():
        hypotheses = _transcribe(model, rows, config)
        rates[name] = (
            metrics.wer(references, hypotheses),
            metrics.cer(references, hypotheses),
        )
    (wer_f, cer_f), (wer_q, cer_q) = rates["float32"], rates["int8"]
    # a trained model, not one that emits nothing (CER 1.0): the comparison means
    # something
    assert cer_f < 0.8, rates
    assert abs(wer_q - wer_f) <= BOUND, rates
    assert abs(cer_q - cer_f) <= BOUND, rates
