"""The bundled model: its files and record, the commands and API that default to it, and
its accuracy on kathleen_arctic/test.csv against the figures its record states."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from npspeech import bundled
from npspeech.cli import main
from npspeech.config import tomllib
from npspeech.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

KATHLEEN_TEST = "kathleen_arctic/test.csv"
#: The bundle's figures are measured on the machine that builds it; another CPU's BLAS
#: sums in another order, which can move a near-tie between two characters. A changed
#: model or decoder moves the rates by far more than this.
RATE_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def default():
    return bundled.get()


def test_manifest_lists_loadable_files_within_the_size_budget(default):
    from npspeech import modelfile
    from npspeech.decoder.scorer import Scorer

    assert bundled.names()[0] == default.name
    for name in bundled.names():
        model = bundled.get(name)
        loaded = modelfile.load(model.model_path)
        assert loaded.network.config.architecture == model.architecture
        assert model.streaming == (model.architecture != "ds2")
        assert model.scorer_path is not None
        scorer = Scorer.from_file(model.scorer_path)
        assert scorer.alpha > 0 and scorer.vocabulary  # tuned, with its word list
        assert model.size_bytes < 20_000_000
        assert model.result(KATHLEEN_TEST, "greedy") is not None
        assert model.result(KATHLEEN_TEST, "beam+scorer") is not None
        assert model.training["data"] and model.training["command"]


def test_package_data_ships_every_bundled_file(default):
    # `pip install .` copies only what pyproject's package-data names.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["npspeech"]
    shipped = [default.model_path, default.scorer_path, bundled.MANIFEST]
    for path in shipped:
        relative = path.relative_to(REPO / "npspeech").as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_model_option_names_a_bundled_model_or_a_path(default):
    assert bundled.resolve_model(None) == (str(default.model_path), default)
    assert bundled.resolve_model("bundled")[0] == str(default.model_path)
    assert bundled.resolve_model(f"bundled:{default.name}")[1] == default
    assert bundled.resolve_model("runs/x/model.npz") == ("runs/x/model.npz", None)
    with pytest.raises(ConfigError, match="no bundled model is called 'nope'"):
        bundled.resolve_model("bundled:nope")
    assert bundled.resolve_scorer("bundled") == str(default.scorer_path)
    assert bundled.resolve_scorer(f"bundled:{default.name}") == str(default.scorer_path)
    assert bundled.resolve_scorer("my.scorer") == "my.scorer"


def test_models_command_prints_the_record(default, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"{default.name}  (default)" in out
    greedy = default.result(KATHLEEN_TEST, "greedy")
    assert f"{KATHLEEN_TEST:<28} {'greedy':<12} {greedy.wer:>6.3f}" in out
    assert main(["models", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["name"] for record in records] == bundled.names()
    assert main(["models", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(default.model_path)
    assert main(["models", "--path", "nope"]) == 1
    assert "no bundled model is called 'nope'" in capsys.readouterr().err


def test_models_command_stops_quietly_when_its_reader_goes():
    # `npspeech models | head -1`: the pipe closes before the table is written.
    process = subprocess.Popen(
        [sys.executable, "-m", "npspeech", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert stderr == ""


def test_train_init_from_bundled_resolves_to_its_file(default, capsys, tmp_path):
    argv = ["train", "--init-from", "bundled", "--output-dir", str(tmp_path / "run")]
    assert main([*argv, "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["train"]["init_from"] == str(default.model_path)


def test_quantize_takes_the_bundled_model(default, capsys, tmp_path):
    from npspeech import modelfile
    from npspeech.quantize import QuantizedNetwork

    output = tmp_path / "int8.npz"
    assert main(["quantize", "bundled", "-o", str(output)]) == 0
    assert str(output) in capsys.readouterr().out
    network = modelfile.load(output).network
    assert isinstance(network, QuantizedNetwork)
    assert network.config == modelfile.load(default.model_path).network.config


def test_api_model_without_a_path_is_the_bundled_model_with_its_scorer(
    data_dir, default
):
    import npspeech

    audio = str(data_dir / "kathleen_arctic" / _first_audio(data_dir / KATHLEEN_TEST))
    implicit = npspeech.Model()
    explicit = npspeech.Model(default.model_path)
    explicit.enable_external_scorer(default.scorer_path)
    assert implicit.network.config.n_hidden == default.training["n_hidden"]
    text = implicit.stt(audio)
    assert text.strip() and text == explicit.stt(audio)
    assert npspeech.transcribe(audio) == text


def test_decode_without_model_is_the_bundled_model_with_its_scorer(data_dir, default):
    audio = str(data_dir / "kathleen_arctic" / _first_audio(data_dir / KATHLEEN_TEST))

    def decode(*options: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "npspeech", "decode", audio, *options],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    implicit = decode()
    assert implicit.strip()
    model, scorer = str(default.model_path), str(default.scorer_path)
    assert implicit == decode("--model", model, "--scorer", scorer)
    assert implicit == decode("--model", model, "--scorer", "bundled")
    assert decode("--decoder", "greedy") == decode("--model", model)  # no scorer


def test_eval_without_model_scores_the_bundled_model(data_dir, default, capsys):
    test_csv = "an4_mini/test.csv"
    argv = ["eval", "--csv", str(data_dir / test_csv), "--no-progress", "--worst", "0"]
    for options, decoder in (([], "beam+scorer"), (["--decoder", "greedy"], "greedy")):
        assert main([*argv, *options]) == 0
        recorded = default.result(test_csv, decoder)
        out = capsys.readouterr().out
        wer, cer = map(float, re.search(r"WER ([\d.]+), CER ([\d.]+)", out).groups())
        assert wer == pytest.approx(recorded.wer, abs=RATE_TOLERANCE)
        assert cer == pytest.approx(recorded.cer, abs=RATE_TOLERANCE)


@pytest.mark.parametrize("decoder", ["greedy", "beam+scorer"])
def test_bundled_model_reaches_its_recorded_accuracy(data_dir, default, decoder):
    from npspeech.config import DecodeConfig
    from npspeech.inference import Model

    config = (
        DecodeConfig(decoder="greedy")
        if decoder == "greedy"
        else DecodeConfig(decoder="beam", scorer=str(default.scorer_path))
    )
    result = Model.load(default.model_path).evaluate_csvs(
        [data_dir / KATHLEEN_TEST], config
    )
    recorded = default.result(KATHLEEN_TEST, decoder)
    assert len(result.utterances) == recorded.utterances
    assert result.wer == pytest.approx(recorded.wer, abs=RATE_TOLERANCE)
    assert result.cer == pytest.approx(recorded.cer, abs=RATE_TOLERANCE)


def _first_audio(csv_path) -> str:
    lines = csv_path.read_text().splitlines()
    return lines[1].split(",")[0]
