"""DeepSpeech 0.9's example client, its logic re-expressed with ``npspeech`` as the
module: a program written for ``deepspeech.Model`` runs with its import changed.

The functions below follow ``native_client/python/client.py`` (mozilla/DeepSpeech,
0.9: model load, ``setBeamWidth``, ``enableExternalScorer`` and ``setScorerAlphaBeta``,
``addHotWord`` from ``--hot_words``, the sample-rate check with its warning and
conversion, ``stt`` / ``sttWithMetadata`` with ``--extended`` and ``--json
--candidate_transcripts``, and its ``metadata_to_string``,
``words_from_candidate_transcript`` and ``metadata_json_output``), plus the streaming
loop of DeepSpeech's native client (``--stream SIZE``: feed, intermediate decode,
finish). Two substitutions: the import, and the sample-rate conversion, which the
client does with a ``sox`` subprocess and this test with soundfile and
``npspeech.audio.resample`` (same result contract: int16 samples at the model's rate).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import wave
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from helpers.inference_models import save_small_model, smoke_alphabet

import npspeech as ds_module  # the client's `import deepspeech`

# -- the client's logic ----------------------------------------------------------------


def convert_samplerate(audio_path, desired_sample_rate):
    import soundfile

    from npspeech.audio import resample

    data, rate = soundfile.read(audio_path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    converted = resample(mono, rate, desired_sample_rate)
    return desired_sample_rate, np.round(np.clip(converted, -1, 1) * 32767).astype(
        np.int16
    )


def metadata_to_string(metadata):
    return "".join(token.text for token in metadata.tokens)


def words_from_candidate_transcript(metadata):
    word = ""
    word_list = []
    word_start_time = 0
    # Loop through each character
    for i, token in enumerate(metadata.tokens):
        # Append character to word if it's not a space
        if token.text != " ":
            if len(word) == 0:
                # Log the start time of the new word
                word_start_time = token.start_time

            word = word + token.text
        # Word boundary is either a space or the last character in the array
        if token.text == " " or i == len(metadata.tokens) - 1:
            word_duration = token.start_time - word_start_time

            if word_duration < 0:
                word_duration = 0

            each_word = dict()
            each_word["word"] = word
            each_word["start_time"] = round(word_start_time, 4)
            each_word["duration"] = round(word_duration, 4)

            word_list.append(each_word)
            # Reset
            word = ""
            word_start_time = 0

    return word_list


def metadata_json_output(metadata):
    json_result = dict()
    json_result["transcripts"] = [
        {
            "confidence": transcript.confidence,
            "words": words_from_candidate_transcript(transcript),
        }
        for transcript in metadata.transcripts
    ]
    return json.dumps(json_result, indent=2)


def client_main(argv):
    parser = argparse.ArgumentParser(description="Running DeepSpeech inference.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--scorer", required=False)
    parser.add_argument("--audio", required=True)
    parser.add_argument("--beam_width", type=int)
    parser.add_argument("--lm_alpha", type=float)
    parser.add_argument("--lm_beta", type=float)
    parser.add_argument("--extended", required=False, action="store_true")
    parser.add_argument("--json", required=False, action="store_true")
    parser.add_argument("--candidate_transcripts", type=int, default=3)
    parser.add_argument("--hot_words", type=str)
    parser.add_argument("--stream", type=int, default=0)  # the native client's
    args = parser.parse_args(argv)

    print(f"Loading model from file {args.model}", file=sys.stderr)
    ds = ds_module.Model(args.model)
    if args.beam_width:
        ds.setBeamWidth(args.beam_width)

    desired_sample_rate = ds.sampleRate()

    if args.scorer:
        print(f"Loading scorer from files {args.scorer}", file=sys.stderr)
        ds.enableExternalScorer(args.scorer)
        if args.lm_alpha and args.lm_beta:
            ds.setScorerAlphaBeta(args.lm_alpha, args.lm_beta)

    if args.hot_words:
        print("Adding hot-words", file=sys.stderr)
        for word_boost in args.hot_words.split(","):
            word, boost = word_boost.split(":")
            ds.addHotWord(word, float(boost))

    fin = wave.open(args.audio, "rb")
    fs_orig = fin.getframerate()
    if fs_orig != desired_sample_rate:
        print(
            f"Warning: original sample rate ({fs_orig}) is different than "
            f"{desired_sample_rate}hz. Resampling might produce erratic speech "
            "recognition.",
            file=sys.stderr,
        )
        fs_new, audio = convert_samplerate(args.audio, desired_sample_rate)
    else:
        audio = np.frombuffer(fin.readframes(fin.getnframes()), np.int16)
    fin.close()

    print("Running inference.", file=sys.stderr)
    if args.stream:
        stream = ds.createStream()
        for start in range(0, len(audio), args.stream):
            stream.feedAudioContent(audio[start : start + args.stream])
            print(stream.intermediateDecode(), file=sys.stderr)
        print(stream.finishStream())
    elif args.extended:
        print(metadata_to_string(ds.sttWithMetadata(audio, 1).transcripts[0]))
    elif args.json:
        print(
            metadata_json_output(ds.sttWithMetadata(audio, args.candidate_transcripts))
        )
    else:
        print(ds.stt(audio))


# -- the tests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("client") / "model.npz"
    return str(save_small_model(path, "deepspeech", smoke_alphabet(data_dir)))


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        client_main(argv)
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def files(data_dir):
    smoke = data_dir / "deepspeech_smoke"
    return {
        "wav": str(smoke / "wav" / "LDC93S1.wav"),
        "wav8k": str(smoke / "wav" / "LDC93S1_pcms16le_1_8000.wav"),
        "scorer": str(smoke / "lm" / "pruned_lm.scorer"),
    }


def _expected(model_path, wav, scorer=None, width=32, hot_words=(), weights=None):
    model = ds_module.Model(model_path)
    model.set_beam_width(width)
    if scorer:
        model.enable_external_scorer(scorer)
        if weights:
            model.set_scorer_alpha_beta(*weights)
    for word, boost in hot_words:
        model.add_hot_word(word, boost)
    return model


def test_plain_stt(model_path, files):
    out, err = _run(
        ["--model", model_path, "--audio", files["wav"], "--beam_width", "32"]
    )
    expected = _expected(model_path, files["wav"]).stt(files["wav"])
    assert out == expected + "\n" and len(expected) >= 5
    assert "Loading model" in err and "Warning" not in err


def test_scorer_alpha_beta_and_hot_words(model_path, files):
    argv = ["--model", model_path, "--audio", files["wav"], "--beam_width", "32"]
    argv += ["--scorer", files["scorer"], "--lm_alpha", "0.5", "--lm_beta", "1.5"]
    argv += ["--hot_words", "water:3.0,year:2.5"]
    out, err = _run(argv)
    model = _expected(
        model_path,
        files["wav"],
        files["scorer"],
        hot_words=[("water", 3.0), ("year", 2.5)],
        weights=(0.5, 1.5),
    )
    assert model.decoder.scorer.alpha == 0.5
    assert out == model.stt(files["wav"]) + "\n"
    assert "Adding hot-words" in err


def test_json_candidates(model_path, files):
    argv = ["--model", model_path, "--audio", files["wav"], "--beam_width", "32"]
    argv += ["--scorer", files["scorer"], "--json", "--candidate_transcripts", "2"]
    out, _ = _run(argv)
    result = json.loads(out)
    model = _expected(model_path, files["wav"], files["scorer"])
    candidates = model.transcribe_full(files["wav"], n_best=2)
    assert len(result["transcripts"]) == 2
    for entry, candidate in zip(result["transcripts"], candidates, strict=True):
        assert entry["confidence"] == pytest.approx(candidate.log_score)
        assert [w["word"] for w in entry["words"]] == candidate.text.split()
        assert [w["start_time"] for w in entry["words"]] == [
            round(w.start_time, 4) for w in candidate.words
        ]
        assert [w["duration"] for w in entry["words"]] == [
            round(w.duration, 4) for w in candidate.words
        ]


def test_extended(model_path, files):
    out, _ = _run(
        ["--model", model_path, "--audio", files["wav"], "--beam_width", "32"]
        + ["--extended"]
    )
    assert out == _expected(model_path, files["wav"]).stt(files["wav"]) + "\n"


def test_other_rate_warns_and_converts(model_path, files):
    out, err = _run(
        ["--model", model_path, "--audio", files["wav8k"], "--beam_width", "32"]
    )
    assert "Warning: original sample rate (8000) is different than 16000hz" in err
    model = _expected(model_path, files["wav8k"])
    assert out == model.stt(convert_samplerate(files["wav8k"], 16000)[1]) + "\n"


@pytest.mark.parametrize("size", [320, 1024, 16000])
def test_stream(model_path, files, size):
    argv = ["--model", model_path, "--audio", files["wav"], "--beam_width", "32"]
    argv += ["--scorer", files["scorer"], "--stream", str(size)]
    out, err = _run(argv)
    model = _expected(model_path, files["wav"], files["scorer"])
    assert out == model.stt(files["wav"]) + "\n"
    intermediate = err.split("Running inference.\n")[1].splitlines()
    with wave.open(files["wav"], "rb") as fin:
        assert len(intermediate) == -(-fin.getnframes() // size)  # one per chunk
