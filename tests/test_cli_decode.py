"""``npspeech decode`` on real files: every input kind and format, failures, stdin,
worker processes, a closed pipe, option errors and DeepSpeech's client flags.

The model is trained for one epoch on LDC93S1 (a few seconds): its transcripts are
poor but full of words, which is what the outputs need. Every output is compared with
the formats module applied to the library's own transcripts of the same file.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from npspeech import batch, formats
from npspeech.cli import main
from npspeech.config import DecodeConfig

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def smoke(data_dir):
    return data_dir / "deepspeech_smoke"


@pytest.fixture(scope="module")
def model_path(smoke, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("decode_model")
    argv = [
        "train", "--train-csv", str(smoke / "ldc93s1.csv"),
        "--alphabet", str(smoke / "alphabet.txt"), "--n-hidden", "32",
        "--learning-rate", "5e-3", "--epochs", "1", "--seed", "1",
        "--output-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    return str(run_dir / "model.npz")


@pytest.fixture(scope="module")
def reference(model_path):
    """Transcripts of the library itself, for one decoder configuration."""
    models = {}

    def transcribe(path, config=None, n_best=1):
        config = config or DecodeConfig()
        if config not in models:
            models[config] = batch.load_model(batch.ModelSpec(model_path, None, config))
        return models[config].transcribe_full(str(path), n_best=n_best)

    return transcribe


@pytest.fixture
def wavs(smoke):
    folder = smoke / "wav"
    return [str(folder / name) for name in ("LDC93S1.wav", "arctic_a0024.wav")]


def decode(capsys, *argv):
    code = main(["decode", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- inputs ----------------------------------------------------------------------------


def test_one_file_prints_its_transcript(model_path, wavs, reference, capsys):
    code, out, err = decode(capsys, "--model", model_path, wavs[0])
    assert code == 0
    assert out == formats.text(reference(wavs[0]))
    assert len(out.strip()) > 10  # the model does emit words
    assert "decoded 1 file: 2.9 s of audio" in err


def test_every_input_kind(model_path, smoke, wavs, reference, tmp_path, capsys):
    folder = tmp_path / "folder" / "nested"
    folder.mkdir(parents=True)
    os.symlink(wavs[1], folder / "b.wav")
    code, out, _ = decode(
        capsys,
        "--model", model_path,
        wavs[0],  # a file
        str(tmp_path / "folder"),  # a folder, searched recursively
        str(smoke / "wav" / "new-home-*.wav"),  # a glob
        "--audio", wavs[1],  # DeepSpeech's flag
        "--csv", str(smoke / "ldc93s1.csv"),  # a corpus CSV
    )  # fmt: skip
    assert code == 0
    expected = [
        wavs[0],
        str(folder / "b.wav"),
        str(smoke / "wav" / "new-home-in-the-stars-16k.wav"),
        wavs[1],
        str((smoke / "wav" / "LDC93S1.wav").resolve()),
    ]
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == expected
    for line, path in zip(lines, expected, strict=True):
        assert line.split("\t")[1] == reference(path)[0].text


def test_stdin_raw_and_wav(model_path, smoke, wavs, reference, capsys, monkeypatch):
    data, rate = soundfile.read(wavs[0], dtype="int16")
    expected = formats.text(reference(wavs[0]))
    for payload, extra in (
        (data.astype("<i2").tobytes(), []),
        (data.astype("<i2").tobytes(), ["--rate", str(rate)]),
        ((smoke / "wav" / "LDC93S1.wav").read_bytes(), []),
    ):
        monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(payload)))
        code, out, err = decode(capsys, "--model", model_path, "-", *extra)
        assert code == 0 and out == expected, extra
    # raw audio at 8 kHz with its rate: resampled, and warned about
    eight = smoke / "wav" / "LDC93S1_pcms16le_1_8000.wav"
    data8, rate8 = soundfile.read(eight, dtype="int16")
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data8)))
    code, out, err = decode(capsys, "--model", model_path, "-", "--rate", "8000")
    assert code == 0 and rate8 == 8000
    assert out == formats.text(reference(eight))
    assert "-: warning: sample rate 8000 Hz is below the model's 16000 Hz" in err


# -- formats and output files ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "srt", "vtt", "tsv"])
def test_every_format_matches_the_writer(fmt, model_path, wavs, reference, capsys):
    code, out, _ = decode(capsys, "--model", model_path, "--format", fmt, wavs[1])
    assert code == 0
    assert out == formats.WRITERS[fmt](reference(wavs[1]))
    assert out.strip()


def test_json_is_deepspeech_clients(model_path, wavs, reference, capsys):
    code, out, _ = decode(capsys, "--model", model_path, "--json", wavs[0])
    assert code == 0
    parsed = json.loads(out)
    assert list(parsed) == ["transcripts"] and len(parsed["transcripts"]) == 1
    best = reference(wavs[0])[0]
    assert parsed["transcripts"][0]["confidence"] == best.log_score
    words = parsed["transcripts"][0]["words"]
    assert " ".join(w["word"] for w in words) == best.text
    assert all(round(w["start_time"], 4) == w["start_time"] for w in words)
    assert out.startswith('{\n  "transcripts": [')


def test_several_inputs_to_one_stream(model_path, wavs, reference, capsys):
    code, out, _ = decode(capsys, "--model", model_path, "--json", *wavs)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["audio"] for r in records] == wavs
    assert (
        records[1]["transcripts"]
        == formats.deepspeech_record(reference(wavs[1]))["transcripts"]
    )
    code, out, _ = decode(capsys, "--model", model_path, "--format", "tsv", *wavs)
    rows = out.splitlines()
    assert rows[0] == "audio\tstart\tend\ttext" and rows.count(rows[0]) == 1
    assert {row.split("\t")[0] for row in rows[1:]} == set(wavs)
    code, _, err = decode(capsys, "--model", model_path, "--format", "srt", *wavs)
    assert code == 1 and "--output-dir" in err


def test_output_dir_atomic_and_never_overwritten(model_path, wavs, reference, tmp_path):
    out_dir = tmp_path / "subs"
    argv = ["decode", "--model", model_path, "--format", "vtt"]
    assert main([*argv, "--output-dir", str(out_dir), *wavs]) == 0
    assert sorted(os.listdir(out_dir)) == ["LDC93S1.vtt", "arctic_a0024.vtt"]
    written = (out_dir / "arctic_a0024.vtt").read_text()
    assert written == formats.vtt(reference(wavs[1]))
    (out_dir / "LDC93S1.vtt").write_text("mine")
    assert main([*argv, "--output-dir", str(out_dir), *wavs]) == 1
    assert (out_dir / "LDC93S1.vtt").read_text() == "mine"
    assert main([*argv, "--output-dir", str(out_dir), "--overwrite", *wavs]) == 0
    assert (out_dir / "LDC93S1.vtt").read_text() == formats.vtt(reference(wavs[0]))
    assert sorted(os.listdir(out_dir)) == ["LDC93S1.vtt", "arctic_a0024.vtt"]


def test_output_dir_refusal_names_the_file(model_path, wavs, tmp_path, capsys):
    (tmp_path / "LDC93S1.txt").write_text("mine")
    code, _, err = decode(
        capsys, "--model", model_path, "--output-dir", str(tmp_path), wavs[0]
    )
    assert code == 1 and str(tmp_path / "LDC93S1.txt") in err
    assert "--overwrite" in err


# -- failures --------------------------------------------------------------------------


def test_a_corrupt_file_among_good_ones(model_path, wavs, reference, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    missing = tmp_path / "missing.wav"
    code, out, err = decode(
        capsys, "--model", model_path, wavs[0], str(corrupt), str(missing), wavs[1]
    )
    assert code == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == wavs
    assert out.splitlines()[1].split("\t")[1] == reference(wavs[1])[0].text
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 2
    assert str(corrupt) in errors[0] and "corrupt" in errors[0]
    assert str(missing) in errors[1] and "not found" in errors[1]
    assert "decoded 4 files (2 failed)" in err
    assert "Traceback" not in err


def test_jobs_give_the_same_output(model_path, smoke, capsys):
    argv = ["--model", model_path, "--json", "--csv", str(smoke / "test.csv")]
    argv += [str(smoke / "wav" / "LDC93S1_pcms16le_2_44100.wav")]
    code, one, _ = decode(capsys, *argv)
    assert code == 0
    code, two, err = decode(capsys, *argv, "--jobs", "2")
    assert code == 0, err
    # The same words and times; confidences to float32 rounding, since a worker runs
    # its BLAS on fewer threads, which changes the order of a product's sums.
    records = [json.loads(line) for line in one.splitlines()]
    assert len(records) == 4
    for mine, theirs in zip(records, map(json.loads, two.splitlines()), strict=True):
        assert [t["words"] for t in theirs["transcripts"]] == [
            t["words"] for t in mine["transcripts"]
        ]
        assert [t["confidence"] for t in theirs["transcripts"]] == pytest.approx(
            [t["confidence"] for t in mine["transcripts"]], rel=1e-5
        )
        assert set(theirs) == set(mine) and theirs["audio"] == mine["audio"]


def test_a_closed_pipe_ends_quietly(model_path, wavs):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    process = subprocess.run(
        [sys.executable, "-m", "npspeech", "decode", "--model", model_path, *wavs],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    os.close(write_end)
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""


def test_head_reads_the_first_line(model_path, wavs):
    command = [sys.executable, "-m", "npspeech", "decode", "--model", model_path]
    shell = " ".join([*command, *wavs * 2]) + " | head -1"
    process = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith(wavs[0] + "\t")
    assert "Traceback" not in process.stderr and "BrokenPipe" not in process.stderr


def test_a_closed_stdout_in_process_stops_decoding(model_path, wavs, monkeypatch):
    class Closed(io.StringIO):
        writes = 0

        def write(self, text):
            Closed.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["decode", "--model", model_path, *wavs]) == 0
    assert Closed.writes == 1


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--alpha", "0.5"], "--scorer"),
        (["--lm_beta", "1"], "--scorer"),
        (["--scorer", "{scorer}", "--alpha", "-1"], "--alpha -1.0: give a weight >= 0"),
        (["--scorer", "{scorer}", "--beta", "-0.5"], "--beta -0.5"),
        (["--candidate-transcripts", "2"], "only applies to json"),
        (["--format", "srt", "--candidate_transcripts", "2"], "only applies to json"),
        (["--json", "--candidate-transcripts", "2"], "needs the beam decoder"),
        (["--decoder", "greedy", "--beam-width", "8"], "--beam-width only apply"),
        (["--decoder", "greedy", "--hotwords", "she"], "--hotwords only apply"),
        (["--beam-width", "0"], "--beam-width 0"),
        (["--json", "--format", "srt"], "choose different outputs"),
        (["--json", "--extended"], "choose different outputs"),
        (["--tsv-unit", "word"], "--tsv-unit only applies"),
        (["--format", "json", "--max-line-chars", "30"], "--max-line-chars only"),
        (["--format", "srt", "--pause-seconds", "0"], "give a value > 0"),
        (["--rate", "8000"], "--rate"),
        (["--overwrite"], "--overwrite only applies with --output-dir"),
        (["--jobs", "0"], "--jobs 0"),
        (["--hot_words", "she"], "'she' is not WORD:BOOST"),
    ],
)
def test_options_that_would_do_nothing_are_errors(
    argv, message, model_path, smoke, wavs, capsys
):
    scorer = str(smoke / "lm" / "pruned_lm.scorer")
    argv = [arg.format(scorer=scorer) for arg in argv]
    code, out, err = decode(capsys, "--model", model_path, *argv, wavs[0])
    assert code == 1 and out == ""
    assert message in err, err


def test_nothing_to_decode(model_path, capsys):
    code, _, err = decode(capsys, "--model", model_path)
    assert code == 1 and "nothing to decode" in err


def test_low_sample_rate_warns(model_path, smoke, capsys):
    eight = str(smoke / "wav" / "LDC93S1_pcms16le_1_8000.wav")
    code, _, err = decode(capsys, "--model", model_path, eight)
    assert code == 0
    assert f"{eight}: warning: sample rate 8000 Hz is below the model's 16000" in err
    code, _, err = decode(
        capsys,
        "--model",
        model_path,
        str(smoke / "wav" / "LDC93S1_pcms16le_2_44100.wav"),
    )
    assert code == 0 and "warning" not in err  # downsampling loses nothing


def test_list_options_never_swallow_the_audio(model_path, smoke, wavs, capsys):
    # --csv takes exactly one value: the file after it is an input
    code, out, _ = decode(
        capsys, "--model", model_path, "--csv", str(smoke / "ldc93s1.csv"), wavs[1]
    )
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == [
        wavs[1],
        str((smoke / "wav" / "LDC93S1.wav").resolve()),
    ]


def test_deepspeech_client_flags(model_path, smoke, wavs, reference, capsys):
    scorer = str(smoke / "lm" / "pruned_lm.scorer")
    deepspeech = [
        "--model", model_path, "--scorer", scorer, "--audio", wavs[0],
        "--beam_width", "16", "--lm_alpha", "0.5", "--lm_beta", "1.5",
        "--hot_words", "she:1.5,dark:2", "--json", "--candidate_transcripts", "2",
    ]  # fmt: skip
    ours = [
        "--model", model_path, "--decoder", "beam", "--scorer", scorer,
        "--beam-width", "16", "--alpha", "0.5", "--beta", "1.5",
        "--hotwords", "she:1.5", "--hotwords", "dark:2", "--format", "json",
        "--candidate-transcripts", "2", wavs[0],
    ]  # fmt: skip
    code, out, _ = decode(capsys, *deepspeech)
    assert code == 0
    code, same, _ = decode(capsys, *ours)
    assert code == 0 and same == out
    config = DecodeConfig(
        decoder="beam",
        beam_width=16,
        scorer=scorer,
        alpha=0.5,
        beta=1.5,
        hotwords=("she:1.5", "dark:2"),
    )
    assert out == formats.deepspeech_json(reference(wavs[0], config, n_best=2))
    assert 1 <= len(json.loads(out)["transcripts"]) <= 2
    code, out, _ = decode(capsys, "--model", model_path, "--extended", wavs[0])
    assert code == 0 and out == formats.extended(reference(wavs[0]))


def test_beam_options_choose_the_beam_decoder(model_path, wavs, reference, capsys):
    code, out, _ = decode(capsys, "--model", model_path, "--beam-width", "8", wavs[0])
    assert code == 0
    beam = DecodeConfig(decoder="beam", beam_width=8)
    assert out == formats.text(reference(wavs[0], beam))
    code, out, _ = decode(
        capsys, "--model", model_path, "--beam_width", "8", "--json", wavs[0]
    )
    assert json.loads(out) == json.loads(
        formats.deepspeech_json(reference(wavs[0], beam, n_best=3))
    )


def test_missing_scorer_names_it(model_path, wavs, tmp_path, capsys):
    missing = str(tmp_path / "none.scorer")
    code, out, err = decode(capsys, "--model", model_path, "--scorer", missing, wavs[0])
    assert code == 1 and out == "" and missing in err


# -- streaming -------------------------------------------------------------------------


@pytest.mark.parametrize("beam", [False, True], ids=["greedy", "beam"])
def test_stream_gives_the_offline_output(beam, model_path, smoke, wavs, capsys):
    scorer = ["--scorer", str(smoke / "lm" / "pruned_lm.scorer")] if beam else []
    argv = ["--model", model_path, *scorer, "--format", "tsv", "--tsv-unit", "word"]
    argv += [*wavs, str(smoke / "wav" / "LDC93S1_pcms16le_2_44100.wav")]
    code, offline, _ = decode(capsys, *argv)
    assert code == 0 and offline.count("\n") > 4
    for size in ("97", "320", "7777"):
        code, streamed, _ = decode(capsys, *argv, "--stream", size)
        assert code == 0 and streamed == offline, size


def test_stream_refuses_a_bidirectional_model(wavs, tmp_path, capsys):
    from npspeech import modelfile, models
    from npspeech.alphabet import english
    from npspeech.config import FeatureConfig, ModelConfig

    config = ModelConfig(
        architecture="ds2",
        n_hidden=8,
        conv_channels=(2,),
        conv_kernels=((3, 5),),
        conv_strides=((1, 2),),
        conv_padding=((1, 2),),
        rnn_layers=1,
    )
    alphabet = english()
    network = models.init(config, 26, alphabet.n_classes, np.random.default_rng(0))
    path = tmp_path / "ds2.npz"
    modelfile.save(path, modelfile.ModelFile(network, FeatureConfig(), alphabet, {}))
    code, out, err = decode(capsys, "--model", str(path), "--stream", "320", wavs[0])
    assert code == 1 and out == ""
    assert "bidirectional" in err and str(path) in err
    code, out, _ = decode(capsys, "--model", str(path), wavs[0])
    assert code == 0  # whole-file decoding of the same model works
    code, _, err = decode(capsys, "--model", str(path), "--stream", "0", wavs[0])
    assert code == 1 and "--stream 0" in err


def test_eval_takes_several_csv_flags(model_path, smoke, capsys):
    code = main(
        ["eval", "--model", model_path, "--csv", str(smoke / "test.csv")]
        + ["--csv", str(smoke / "ldc93s1.csv"), "--no-progress", "--beam-width", "8"]
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("4 utterances: WER ")


def test_progress_bar_only_on_a_terminal(model_path, wavs, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(["decode", "--model", model_path, *wavs]) == 0
        assert ("decoding:" in stream.getvalue()) is shown
        assert "decoded 2 files" in stream.getvalue()
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(["decode", "--model", model_path, "--no-progress", *wavs]) == 0
    assert "decoding:" not in sys.stderr.getvalue()
