"""`npspeech lm`: build, info, package and tune through cli.main, in process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from npspeech.cli import main
from npspeech.lm.package import open_scorer
from npspeech.lm.tune import save_log_probs

CORPUS = Path(__file__).parent / "data" / "lm" / "tiny_corpus.txt"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPSPEECH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def arpa(tmp_path):
    output = tmp_path / "tiny.arpa"
    assert main(["lm", "build", str(CORPUS), "-o", str(output), "--order", "3"]) == 0
    return output


def test_build_writes_a_kenlm_readable_arpa(capsys, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    arpa = tmp_path / "built.arpa"
    assert main(["lm", "build", str(CORPUS), "-o", str(arpa), "--order", "3"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {arpa}: order 3, 20 sentences" in captured.out
    assert "fallback discounts" in captured.err  # a 20-line corpus is too small for KN
    assert kenlm.Model(str(arpa)).order == 3
    # Several inputs, gzip among them, pruning and a vocabulary cap.
    extra = tmp_path / "extra.txt.gz"
    with gzip.open(extra, "wt", encoding="utf-8") as handle:
        handle.write("The zebra sat on the mat.\n")
    pruned = tmp_path / "pruned.arpa"
    code = main(
        [
            "lm",
            "build",
            str(CORPUS),
            str(extra),
            "-o",
            str(pruned),
            "--order",
            "3",
            "--prune",
            "0",
            "1",
            "--vocab-size",
            "20",
            "--no-progress",
        ]
    )
    assert code == 0
    scorer = open_scorer(pruned)
    assert len(scorer.vocabulary) == 20
    assert "zebra" not in scorer.vocabulary


def test_build_with_an_alphabet_file(tmp_path):
    alphabet = tmp_path / "alphabet.txt"
    alphabet.write_text(" \na\nb\nc\nd\ne\nt\n")
    text = tmp_path / "t.txt"
    text.write_text("A cat ate BEEF\n")
    output = tmp_path / "abc.arpa"
    assert (
        main(
            [
                "lm",
                "build",
                str(text),
                "-o",
                str(output),
                "--order",
                "2",
                "--alphabet",
                str(alphabet),
            ]
        )
        == 0
    )
    assert open_scorer(output).vocabulary == ("a", "ate", "bee", "cat")


def test_info_on_arpa_and_json(arpa, capsys):
    capsys.readouterr()
    assert main(["lm", "info", str(arpa)]) == 0
    out = capsys.readouterr().out
    assert "kind: arpa" in out and "order: 3" in out and "alpha: -" in out
    assert main(["lm", "info", str(arpa), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocabulary_size"] == len(open_scorer(arpa).vocabulary)


@pytest.mark.data
def test_info_on_the_deepspeech_scorer(data_dir, capsys):
    scorer = data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
    assert main(["lm", "info", str(scorer)]) == 0
    out = capsys.readouterr().out
    assert "kind: deepspeech" in out
    assert "alpha: 0.75" in out
    assert "vocabulary size: 3540" in out
    assert "order: 4" in out


def test_package_then_info(arpa, tmp_path, capsys):
    package = tmp_path / "tiny.npscorer"
    assert (
        main(
            [
                "lm",
                "package",
                str(arpa),
                "-o",
                str(package),
                "--alpha",
                "0.5",
                "--beta",
                "1.25",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["lm", "info", str(package)]) == 0
    out = capsys.readouterr().out
    assert "kind: npspeech" in out and "alpha: 0.5" in out and "beta: 1.25" in out


def _dev_set(tmp_path, alphabet_size=29):
    # Confident frames spelling "the cat" (letter, blank, letter, ...).
    from npspeech.alphabet import english

    alphabet = english()
    frames = []
    for character in "the cat":
        for label in (alphabet.labels.index(character), alphabet.blank):
            probs = np.full(alphabet_size, 0.01 / (alphabet_size - 1))
            probs[label] = 0.99
            frames.append(np.log(probs))
    return save_log_probs(
        tmp_path / "dev.npz", [np.asarray(frames, np.float32)], ["the cat"]
    )


def test_tune_writes_the_best_point(arpa, tmp_path, capsys):
    pytest.importorskip("npspeech.decoder.beam")
    dev = _dev_set(tmp_path)
    package = tmp_path / "tuned.npscorer"
    table = tmp_path / "table.csv"
    code = main(
        [
            "lm",
            "tune",
            str(arpa),
            "--log-probs",
            str(dev),
            "-o",
            str(package),
            "--alphas",
            "0",
            "0.5",
            "--betas",
            "1",
            "2",
            "--beam-width",
            "8",
            "--table",
            str(table),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "WER 0.0000" in out
    tuned = open_scorer(package)
    assert tuned.kind == "npspeech"
    # Every point decodes the clear audio right, so the first point wins the tie.
    assert (tuned.alpha, tuned.beta) == (0.0, 1.0)
    rows = np.loadtxt(table, delimiter=",", skiprows=1)
    assert rows.shape == (4, 4)
    # Tuning the package again rewrites it in place.
    assert (
        main(
            [
                "lm",
                "tune",
                str(package),
                "--log-probs",
                str(dev),
                "--alphas",
                "0.25",
                "--betas",
                "0.5",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (open_scorer(package).alpha, open_scorer(package).beta) == (0.25, 0.5)
    # A dry run reports without writing.
    assert (
        main(
            [
                "lm",
                "tune",
                str(package),
                "--log-probs",
                str(dev),
                "--dry-run",
                "--alphas",
                "3",
                "--betas",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert open_scorer(package).alpha == 0.25


def test_tune_arpa_without_output_fails_with_a_message(arpa, tmp_path, capsys):
    pytest.importorskip("npspeech.decoder.beam")
    dev = _dev_set(tmp_path)
    code = main(
        [
            "lm",
            "tune",
            str(arpa),
            "--log-probs",
            str(dev),
            "--alphas",
            "1",
            "--betas",
            "1",
            "--no-progress",
        ]
    )
    assert code == 1
    assert "cannot hold alpha/beta" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lm", "build", "{tmp}/absent.txt", "-o", "{tmp}/o.arpa"], "absent.txt"),
        (
            ["lm", "build", "{corpus}", "-o", "{tmp}/o.arpa", "--prune", "1"],
            "unigrams cannot be pruned",
        ),
        (["lm", "build", "{corpus}", "-o", "{tmp}/o.arpa", "--order", "0"], "order"),
        (
            [
                "lm",
                "build",
                "{corpus}",
                "-o",
                "{tmp}/o.arpa",
                "--alphabet",
                "{tmp}/no.txt",
            ],
            "no.txt: alphabet file not found",
        ),
        (["lm", "info", "{tmp}/absent.scorer"], "absent.scorer"),
        (
            ["lm", "tune", "{corpus}", "--log-probs", "{tmp}/dev.npz"],
            "not a language model",
        ),
        (
            ["lm", "package", "{tmp}/absent.arpa", "-o", "{tmp}/p.npscorer"],
            "absent.arpa",
        ),
        (["lm", "tune", "{corpus}", "--model", "{tmp}/m.npz"], "--model needs --dev"),
        (
            ["lm", "tune", "{corpus}", "--log-probs", "x.npz", "--dev", "a.csv"],
            "--dev is used with --model",
        ),
        (
            ["lm", "tune", "{corpus}", "--model", "{tmp}/m.npz", "--dev", "a.csv"],
            "m.npz",
        ),
    ],
)
def test_bad_input_exits_nonzero_naming_the_culprit(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, corpus=CORPUS) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("npspeech lm: error:")
    assert message in err


def test_help_and_bare_subcommand(capsys):
    for argv in (
        ["lm", "--help"],
        ["lm", "build", "--help"],
        ["lm", "tune", "--help"],
        ["lm", "info", "--help"],
        ["lm", "package", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--vocab-size" in out and "--log-probs" in out and "(default: 5)" in out
    assert main(["lm"]) == 2


@pytest.mark.data
def test_tune_a_deepspeech_scorer_in_place(data_dir, tmp_path, capsys):
    import shutil

    pytest.importorskip("npspeech.decoder.beam")
    scorer = tmp_path / "smoke.scorer"
    shutil.copyfile(data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer", scorer)
    dev = _dev_set(tmp_path)
    code = main(
        [
            "lm",
            "tune",
            str(scorer),
            "--log-probs",
            str(dev),
            "--alphas",
            "0.5",
            "1.0",
            "--betas",
            "0.25",
            "--beam-width",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0
    tuned = open_scorer(scorer)
    assert (tuned.kind, tuned.alpha, tuned.beta) == ("deepspeech", 0.5, 0.25)
    assert len(tuned.vocabulary) == 3540
    assert f"wrote {scorer}" in capsys.readouterr().out


@pytest.mark.data
def test_tune_runs_the_bundled_model_over_dev(data_dir, tmp_path, capsys):
    # `--model bundled` names the shipped model, as in `npspeech eval` and `train`.
    pytest.importorskip("npspeech.decoder.beam")
    code = main(
        [
            "lm",
            "tune",
            str(Path(__file__).parent / "data" / "tiny_bigram.arpa"),
            "--model",
            "bundled",
            "--dev",
            str(data_dir / "deepspeech_smoke" / "ldc93s1.csv"),
            "--alphas",
            "0.5",
            "--betas",
            "1",
            "--beam-width",
            "8",
            "--dry-run",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "best alpha 0.5" in capsys.readouterr().out


# --- mix, prune, eval -----------------------------------------------------------------
PETS = Path(__file__).parent / "data" / "mix_pets.arpa"
WEATHER = Path(__file__).parent / "data" / "mix_weather.arpa"


def _dev_text(tmp_path) -> Path:
    dev = tmp_path / "dev.csv"
    dev.write_text(
        "wav_filename,wav_filesize,transcript\n"
        "a.wav,1,the cat is on the hill\n"
        "b.wav,1,the sun is on the mat\n"
        "c.wav,1,a dog and the rain\n"
    )
    return dev


def test_mix_tunes_prints_and_writes_a_kenlm_readable_mixture(tmp_path, capsys):
    from npspeech.lm.arpa import read_arpa
    from npspeech.lm.evaluate import read_sentences
    from npspeech.lm.interpolate import tune_weights

    dev, output = _dev_text(tmp_path), tmp_path / "mixed.arpa"
    code = main(
        ["lm", "mix", str(PETS), str(WEATHER), "--dev", str(dev), "-o", str(output)]
    )
    assert code == 0
    out = capsys.readouterr().out
    expected = tune_weights(
        [read_arpa(PETS), read_arpa(WEATHER)], read_sentences([dev])
    )
    for path, weight in zip((PETS, WEATHER), expected.weights, strict=True):
        assert f"  {weight:.6f}  {path}" in out
    assert f"wrote {output}: order 3" in out
    assert "dev under the mixture: perplexity" in out
    kenlm = pytest.importorskip("kenlm")
    assert kenlm.Model(str(output)).order == 3


def test_mix_with_given_weights_then_prune_eval_and_package(tmp_path, capsys):
    mixed, pruned = tmp_path / "mixed.arpa", tmp_path / "pruned.arpa"
    argv = ["lm", "mix", str(PETS), str(WEATHER), "--weights", "0.6", "0.4"]
    assert main([*argv, "-o", str(mixed), "--no-progress"]) == 0
    assert "  0.600000  " in capsys.readouterr().out
    assert (
        main(["lm", "prune", str(mixed), "--max-size", "2kB", "-o", str(pruned)]) == 0
    )
    out = capsys.readouterr().out
    assert pruned.stat().st_size <= 2000 < mixed.stat().st_size
    assert f"wrote {pruned}: {pruned.stat().st_size} bytes" in out
    # A package budget: the package made of the result, alpha/beta included, fits.
    argv = ["lm", "prune", str(mixed), "--max-package-size", "2500", "-o", str(pruned)]
    assert main(argv) == 0
    package = tmp_path / "budget.npscorer"
    argv = ["lm", "package", str(pruned), "-o", str(package), "--alpha", "0.123456789"]
    assert main([*argv, "--beta", "1.23456789e-05"]) == 0
    assert package.stat().st_size <= 2500
    assert (
        main(["lm", "prune", str(mixed), "--max-ngrams", "40", "-o", str(pruned)]) == 0
    )
    capsys.readouterr()
    dev = _dev_text(tmp_path)
    assert main(["lm", "eval", str(pruned), "--text", str(dev), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["sentences"] == 3 and figures["words"] == 17
    assert figures["oov"] == 0 and figures["perplexity"] > 1
    kenlm = pytest.importorskip("kenlm")
    loaded = kenlm.Model(str(pruned))
    sentences = [
        "the cat is on the hill",
        "the sun is on the mat",
        "a dog and the rain",
    ]
    total = sum(loaded.score(s) for s in sentences)
    assert figures["perplexity"] == pytest.approx(10 ** (-total / 20), rel=1e-5)
    # The pruned mixture packages with alpha/beta (tune them with `lm tune`).
    package = tmp_path / "mixed.npscorer"
    code = main(
        [
            "lm",
            "package",
            str(pruned),
            "-o",
            str(package),
            "--alpha",
            "1",
            "--beta",
            "2",
        ]
    )
    assert code == 0
    assert main(["lm", "eval", str(package), "--text", str(dev)]) == 0
    assert "perplexity" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["lm", "mix", str(PETS), "-o", "{tmp}/m.arpa", "--weights", "1"],
            "two models",
        ),
        (["lm", "mix", str(PETS), str(WEATHER), "-o", "{tmp}/m.arpa"], "--dev TEXT"),
        (
            ["lm", "mix", str(PETS), str(WEATHER), "--weights", "0.5", "-o", "{tmp}/m"],
            "2 models need 2 weights",
        ),
        (
            [
                "lm",
                "mix",
                str(PETS),
                "{tmp}/none.arpa",
                "--weights",
                "0.5",
                "0.5",
                "-o",
                "{tmp}/m",
            ],
            "none.arpa",
        ),
        (["lm", "prune", str(PETS), "--max-size", "ten", "-o", "{tmp}/p"], "'ten'"),
        (["lm", "prune", str(PETS), "--max-size", "100", "-o", "{tmp}/p"], "unigrams"),
        (
            ["lm", "prune", str(PETS), "--max-package-size", "1kB", "-o", "{tmp}/p"],
            "word list alone",
        ),
        (
            ["lm", "prune", str(PETS), "--max-ngrams", "0", "-o", "{tmp}/p"],
            "--max-ngrams",
        ),
        (["lm", "eval", str(PETS), "--text", "{tmp}/missing.txt"], "missing.txt"),
        (["lm", "eval", "{tmp}/dev.csv", "--text", "{tmp}/dev.csv"], "not a language"),
    ],
)
def test_mix_prune_eval_errors_exit_nonzero(argv, message, tmp_path, capsys):
    _dev_text(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.data
def test_eval_of_a_deepspeech_scorer_says_it_needs_arpa(data_dir, tmp_path, capsys):
    scorer = data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
    dev = _dev_text(tmp_path)
    assert main(["lm", "eval", str(scorer), "--text", str(dev)]) == 1
    err = capsys.readouterr().err
    assert "deepspeech file holds no ARPA text" in err and "Traceback" not in err
