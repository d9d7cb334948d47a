"""``npspeech train`` / ``eval`` / ``decode`` as commands: options, layering, errors."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from npspeech.cli import build_parser, main
from npspeech.cli import train as train_command


def _subparser(name):
    parser = build_parser()
    action = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return action.choices[name]


@pytest.mark.parametrize("command", ["train", "eval", "decode"])
def test_help_gives_every_option_a_default(command):
    parser = _subparser(command)
    for action in parser._actions:
        if action.option_strings and action.dest != "help" and not action.required:
            assert "default" in (action.help or ""), (
                f"{command} {action.option_strings}"
            )


def _print_config(argv, capsys):
    assert main(["train", *argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_settings_are_layered(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CORPUS_ROOT", str(tmp_path))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'preset = "ds2"\n'
        "[model]\nn_hidden = 64\nrnn_layers = 3\n"
        "[train]\nepochs = 7\nlearning_rate = 0.01\n"
        'train_csv = "${CORPUS_ROOT}/a.csv"\n'
        "[augment]\nspec_augment_probability = 0.5\n"
    )
    resolved = _print_config(
        [
            "--config",
            str(recipe),
            "--set",
            "train.epochs=8",
            "--set",
            "model.rnn_layers=2",
            "--set",
            'train.dev_csv=["d1.csv", "d2.csv"]',
            "--epochs",
            "9",
        ],
        capsys,
    )
    train, augment = resolved["train"], resolved["augment"]
    assert train["epochs"] == 9  # flag over --set over recipe
    assert train["learning_rate"] == 0.01  # recipe over default
    assert train["model"]["architecture"] == "ds2"  # the recipe's preset
    assert train["features"]["kind"] == "spectrogram"  # from the ds2 preset
    assert train["model"]["n_hidden"] == 64
    assert train["model"]["rnn_layers"] == 2
    assert train["model"]["conv_kernels"] == [[11, 41], [11, 21]]
    assert train["train_csv"] == [str(tmp_path / "a.csv")]  # environment expanded
    assert train["dev_csv"] == ["d1.csv", "d2.csv"]
    assert augment["spec_augment_probability"] == 0.5
    defaults = _print_config([], capsys)["train"]
    assert defaults["model"]["architecture"] == "deepspeech"
    assert defaults["model"]["n_hidden"] == 2048
    assert defaults["epochs"] == 75


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "epochs=3"], "SECTION.KEY=VALUE"),
        (["--set", "train.epoch=3"], "unknown setting"),
        (["--set", "model.architecture=rnnt"], "architecture"),
        (["--learning-rate", "-1", "--train-csv", "x.csv"], "learning_rate"),
        ([], "train_csv is required"),
    ],
)
def test_bad_settings_fail_with_a_message(argv, message, tmp_path, capsys):
    code = main(
        ["train", *argv, "--output-dir", str(tmp_path / "run"), "--no-progress"]
    )
    assert code == 1
    assert message in capsys.readouterr().err


def test_unknown_recipe_table(tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[trian]\nepochs = 1\n")
    assert main(["train", "--config", str(recipe), "--print-config"]) == 1
    assert "unknown table [trian]" in capsys.readouterr().err


def test_presets_ship_with_the_package():
    assert {"deepspeech", "ds2", "ds2-stream"} <= set(train_command.available_presets())


@pytest.mark.data
def test_ds2_stream_trains_resumes_evaluates_and_decodes(data_dir, tmp_path, capsys):
    """A tiny streaming DS2 through the commands: 2 steps, resume to the end, eval."""
    smoke = data_dir / "deepspeech_smoke"
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--preset",
        "ds2-stream",
        "--train-csv",
        str(smoke / "test.csv"),
        "--dev-csv",
        str(smoke / "ldc93s1.csv"),
        "--alphabet",
        str(smoke / "alphabet.txt"),
        "--n-hidden",
        "8",
        "--set",
        "model.rnn_layers=1",
        "--set",
        "model.conv_channels=[2]",
        "--set",
        "model.conv_kernels=[[5, 11]]",
        "--set",
        "model.conv_strides=[[2, 4]]",
        "--set",
        "model.conv_padding=[[2, 5]]",
        "--set",
        "model.lookahead_context=3",
        "--max-batch-size",
        "1",
        "--epochs",
        "1",
        "--output-dir",
        str(run_dir),
        "--no-progress",
    ]
    assert main([*argv, "--max-steps", "2"]) == 0
    assert "stopped (max_steps)" in capsys.readouterr().out
    assert main([*argv, "--resume"]) == 0
    assert "stopped (epochs) after 1 epochs, 3 steps" in capsys.readouterr().out
    model = run_dir / "model.npz"
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(model),
                "--csv",
                str(smoke / "test.csv"),
                "--report",
                str(report),
                "--worst",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("ref:") == 2
    result = json.loads(report.read_text())
    assert result["n_utterances"] == 3
    assert {"reference", "hypothesis", "wer", "cer", "loss", "source"} <= set(
        result["utterances"][0]
    )
    assert (
        main(["decode", "--model", str(model), "--csv", str(smoke / "test.csv")]) == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    (run_dir / "curves.png").unlink()
    assert main(["train", "--plot-only", str(run_dir)]) == 0
    assert (run_dir / "curves.png").is_file()


@pytest.mark.data
def test_beam_decoder_option(data_dir, tmp_path, capsys):
    """``--decoder beam`` goes through the beam search (without a scorer)."""
    pytest.importorskip("npspeech.decoder.beam")
    smoke = data_dir / "deepspeech_smoke"
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--train-csv",
                str(smoke / "ldc93s1.csv"),
                "--alphabet",
                str(smoke / "alphabet.txt"),
                "--n-hidden",
                "8",
                "--set",
                "model.n_context=1",
                "--epochs",
                "1",
                "--output-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    wav = str(smoke / "wav" / "LDC93S1.wav")
    assert (
        main(
            [
                "decode",
                "--model",
                str(run_dir / "model.npz"),
                "--decoder",
                "beam",
                "--beam-width",
                "8",
                "--json",
                "--candidate-transcripts",
                "2",
                wav,
            ]
        )
        == 0
    )
    output = json.loads(capsys.readouterr().out)  # as DeepSpeech's client writes it
    assert 1 <= len(output["transcripts"]) <= 2
    assert {"confidence", "words"} <= set(output["transcripts"][0])
    assert (
        main(
            [
                "decode",
                "--model",
                str(run_dir / "model.npz"),
                "--scorer",
                "x.scorer",
                wav,
            ]
        )
        == 1
    )
    assert "x.scorer" in capsys.readouterr().err  # a scorer selects the beam search


def test_eval_and_decode_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.npz"
    assert main(["eval", "--model", str(missing), "--csv", "x.csv"]) == 1
    assert str(missing) in capsys.readouterr().err
    assert main(["decode", "--model", str(missing)]) == 1
    assert "nothing to decode" in capsys.readouterr().err


def _tiny_run(smoke, run_dir, *extra):
    """A two-epoch run of a tiny model on the LDC93S1 utterance, dev on it too."""
    csv = str(smoke / "ldc93s1.csv")
    return [
        "train",
        "--train-csv",
        csv,
        "--dev-csv",
        csv,
        "--alphabet",
        str(smoke / "alphabet.txt"),
        "--n-hidden",
        "8",
        "--set",
        "model.n_context=1",
        "--epochs",
        "2",
        "--output-dir",
        str(run_dir),
        "--no-progress",
        *extra,
    ]


@pytest.mark.data
def test_a_folder_holding_a_run_needs_resume_or_overwrite(data_dir, tmp_path, capsys):
    smoke = data_dir / "deepspeech_smoke"
    run_dir = tmp_path / "run"
    assert main(_tiny_run(smoke, run_dir)) == 0
    printed = capsys.readouterr().out
    # A line per epoch with its dev error rates, as the run goes.
    lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all(re.search(r"WER \d\.\d{4}  CER \d\.\d{4}", line) for line in lines)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert {"model.npz", "checkpoint_last.npz", "checkpoint_best.npz"} <= set(before)

    assert main(_tiny_run(smoke, run_dir, "--seed", "5")) == 1
    error = capsys.readouterr().err
    assert str(run_dir) in error and "--resume" in error and "--overwrite" in error
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before

    # --overwrite removes nothing when the new run cannot start ...
    broken = _tiny_run(smoke, run_dir, "--seed", "5", "--overwrite")
    broken[broken.index("--train-csv") + 1] = str(tmp_path / "missing.csv")
    assert main(broken) == 1
    capsys.readouterr()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before

    # ... and replaces the run once it can: no file of the old run is left behind.
    assert main([*_tiny_run(smoke, run_dir, "--seed", "5"), "--overwrite"]) == 0
    capsys.readouterr()
    after = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in after)
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temps
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 5

    assert main([*_tiny_run(smoke, run_dir), "--resume", "--overwrite"]) == 1
    assert "exclude each other" in capsys.readouterr().err


@pytest.mark.data
def test_overwrite_stopped_early_leaves_no_old_model(data_dir, tmp_path, capsys):
    """A replacing run stopped before its first epoch ends must not export the old
    run's best checkpoint as its model."""
    smoke = data_dir / "deepspeech_smoke"
    run_dir = tmp_path / "run"
    assert main(_tiny_run(smoke, run_dir)) == 0
    old_model = (run_dir / "model.npz").read_bytes()
    argv = [*_tiny_run(smoke, run_dir, "--seed", "5"), "--overwrite"]
    assert main([*argv, "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert not (run_dir / "checkpoint_best.npz").exists()
    assert (run_dir / "model.npz").read_bytes() != old_model
    steps = [json.loads(line) for line in (run_dir / "log.jsonl").open()]
    assert [e["step"] for e in steps] == [1]


def test_epoch_line_format():
    entry = {
        "event": "epoch",
        "epoch": 2,
        "step": 30,
        "train_loss": 12.3456,
        "lr": 0.0005,
        "dev_loss": 10.5,
        "dev_wer": 0.25,
        "dev_cer": 0.125,
    }
    assert train_command.format_epoch(entry, 10) == (
        "epoch 3/10  step 30  train loss 12.346  dev loss 10.500  WER 0.2500  "
        "CER 0.1250  lr 0.0005"
    )
    del entry["dev_loss"], entry["dev_wer"], entry["dev_cer"]
    assert "WER" not in train_command.format_epoch(entry, 10)
