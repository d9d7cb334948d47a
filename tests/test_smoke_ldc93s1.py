"""DeepSpeech's own CI check: overfit the single LDC93S1 utterance until greedy
decoding returns its exact transcript, through the real ``npspeech train``, ``eval`` and
``decode`` commands (called in process).

DeepSpeech's CI trains ``n_hidden 100`` for a couple hundred epochs; with Adam at 5e-3
and no dropout the same size reaches WER 0 here in about 130 epochs (one step each,
about 0.1 s of CPU per epoch with its dev pass), and training stops there (target dev
WER 0).
"""

from __future__ import annotations

import json

import pytest

from npspeech.cli import main

pytestmark = pytest.mark.data

TRANSCRIPT = "she had your dark suit in greasy wash water all year"


def test_train_then_eval_reaches_the_exact_transcript(data_dir, tmp_path, capsys):
    smoke = data_dir / "deepspeech_smoke"
    csv = str(smoke / "ldc93s1.csv")
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "--train-csv",
            csv,
            "--dev-csv",
            csv,
            "--alphabet",
            str(smoke / "alphabet.txt"),
            "--n-hidden",
            "100",
            "--dropout",
            "0",
            "--learning-rate",
            "5e-3",
            "--epochs",
            "400",
            "--target-dev-wer",
            "0",
            "--early-stop-patience",
            "0",
            "--set",
            "train.plateau_patience=20",
            "--seed",
            "4568",
            "--output-dir",
            str(run_dir),
            "--no-progress",
        ]
    )
    assert code == 0
    trained = capsys.readouterr().out
    assert "stopped (target_wer)" in trained

    report = tmp_path / "report.json"
    code = main(
        [
            "eval",
            "--model",
            str(run_dir / "model.npz"),
            "--csv",
            csv,
            "--report",
            str(report),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "WER 0.0000" in printed
    result = json.loads(report.read_text())
    assert result["wer"] == 0.0
    assert result["cer"] == 0.0
    assert [u["hypothesis"] for u in result["utterances"]] == [TRANSCRIPT]

    wav = str(smoke / "wav" / "LDC93S1.wav")
    assert main(["decode", "--model", str(run_dir / "model.npz"), wav]) == 0
    assert capsys.readouterr().out.strip() == TRANSCRIPT
    assert main(["decode", "--model", str(run_dir / "model.npz"), "--json", wav]) == 0
    output = json.loads(capsys.readouterr().out)
    words = output["transcripts"][0]["words"]
    assert " ".join(word["word"] for word in words) == TRANSCRIPT
    starts = [word["start_time"] for word in words]
    assert starts == sorted(starts) and starts[-1] < 3.0  # the file lasts 2.9 s

    # The same model through the Python API: a path, and a signal already in memory.
    import npspeech
    from npspeech import audio

    model = npspeech.Model.load(run_dir / "model.npz")
    assert model.transcribe(wav) == TRANSCRIPT
    assert (
        model.transcribe(audio.load(wav, sample_rate=model.sample_rate)) == TRANSCRIPT
    )
    assert npspeech.transcribe(wav, run_dir / "model.npz") == TRANSCRIPT
    assert model.training["dev_wer"] == 0.0

    # Beam search with DeepSpeech's scorer, and alpha/beta tuned for this model on its
    # own utterance (the smoke LM was built by DeepSpeech from text that includes it).
    scorer = tmp_path / "tuned.scorer"
    scorer.write_bytes((smoke / "lm" / "pruned_lm.scorer").read_bytes())
    code = main(
        [
            "lm", "tune", str(scorer), "--model", str(run_dir / "model.npz"),
            "--dev", csv, "--alphas", "0.5", "1.0", "--betas", "1.0", "2.0",
            "--beam-width", "32", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    assert "WER 0.0000" in capsys.readouterr().out
    code = main(
        [
            "decode", "--model", str(run_dir / "model.npz"), "--decoder", "beam",
            "--scorer", str(scorer), wav,
        ]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.strip() == TRANSCRIPT
