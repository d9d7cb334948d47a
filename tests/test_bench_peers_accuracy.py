"""The pocketsphinx accuracy peer (``benchmarks/bench_peers_accuracy.py``): its text
normalisation and scoring on hand-made strings, and pocketsphinx itself on real test
files, scored the way ``npspeech eval`` scores."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from npspeech import metrics
from npspeech.errors import DataError

pytestmark = pytest.mark.peers

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks/bench_peers_accuracy.py"
# Two read sentences of the kathleen test set: pocketsphinx's general English model
# gets 3 of their 20 words wrong, so a WER bound of 0.5 separates working from broken.
KATHLEEN_ROWS = 2
KATHLEEN_MAX_WER = 0.5


def _bench():
    """The script as a module, from its file (``benchmarks`` is not a package)."""
    name = "npspeech_bench_peers_accuracy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return sys.modules[name]


def _pocketsphinx():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed")


# -- normalisation ---------------------------------------------------------------------
def test_normalise_drops_tags_fillers_and_alternate_marks():
    bench = _bench()
    alphabet = bench.transcript_alphabet(["i'm playing"])
    raw = "<s> I'm [NOISE] playing <sil> to(2) ++UM++ the(3) </s>"
    assert bench.normalise_hypothesis(raw, alphabet) == "i'm playing to the"


def test_normalise_spells_dictionary_entries_in_the_transcript_alphabet():
    bench = _bench()
    alphabet = bench.transcript_alphabet(["a b"])
    raw = "able-bodied a.m. new_york it's"
    assert bench.normalise_hypothesis(raw, alphabet) == "able bodied am new york it's"


def test_normalise_keeps_english_words_on_a_narrow_set():
    # FSDD's references never use "y": a recognised "you" must stay a word.
    bench = _bench()
    alphabet = bench.transcript_alphabet(["zero", "one", "two"])
    assert "y" in alphabet and "q" in alphabet
    assert bench.normalise_hypothesis("you know", alphabet) == "you know"


def test_transcript_alphabet_adds_the_references_own_characters():
    bench = _bench()
    alphabet = bench.transcript_alphabet(["café 3"])
    assert {"é", "3"} <= alphabet
    assert bench.normalise_hypothesis("CAFÉ 3 naïve", alphabet) == "café 3 nave"


def test_normalise_of_nothing_is_the_empty_string():
    bench = _bench()
    alphabet = bench.transcript_alphabet(["x"])
    assert bench.normalise_hypothesis("", alphabet) == ""
    assert bench.normalise_hypothesis("<s> <sil> [breath] </s>", alphabet) == ""


# -- scoring ---------------------------------------------------------------------------
def test_score_counts_edits_over_the_corpus():
    bench = _bench()
    references = ["the cat sat", "hello"]
    hypotheses = ["the  bat sat", ""]
    result = bench.score(references, hypotheses)
    # words: cat->bat, hello deleted = 2 of 4; chars: c->b, 5 deleted = 6 of 11 + 5
    assert (result.word_edits, result.words) == (2, 4)
    assert (result.char_edits, result.chars) == (6, 16)
    assert result.wer == pytest.approx(0.5)
    assert result.cer == pytest.approx(6 / 16)
    assert result.empty_hypotheses == 1
    assert result.wer == pytest.approx(metrics.wer(references, hypotheses))


def test_score_refuses_missing_hypotheses():
    bench = _bench()
    with pytest.raises(DataError, match="2 references but 1 hypotheses"):
        bench.score(["a", "b"], ["a"])
    with pytest.raises(DataError, match="hypothesis 1 is None"):
        bench.score(["a", "b"], ["a", None])


# -- command line ----------------------------------------------------------------------
def test_missing_csv_is_an_error_message(tmp_path, capsys):
    missing = tmp_path / "absent.csv"
    assert _bench().main(["--csv", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_missing_pocketsphinx_lm_names_the_option(tmp_path, capsys):
    missing = tmp_path / "absent.lm"
    assert _bench().main(["--ps-lm", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "--ps-lm" in err and str(missing) in err


# -- real decoding ---------------------------------------------------------------------
def test_pocketsphinx_and_npspeech_on_real_files(
    data_dir, trained_model_path, tmp_path
):
    _pocketsphinx()
    bench = _bench()
    csv = data_dir / "kathleen_arctic" / "test.csv"
    out = tmp_path / "result.json"
    argv = ["--csv", str(csv), "--limit", str(KATHLEEN_ROWS), "--json-out", str(out)]
    assert bench.main([*argv, "--model", str(trained_model_path)]) == 0
    report = json.loads(out.read_text())
    (entry,) = report["sets"]
    assert entry["rows"] == KATHLEEN_ROWS
    ps = entry["systems"]["pocketsphinx"]
    rows = ps["utterances"]
    assert len(rows) == KATHLEEN_ROWS
    assert all(row["hypothesis"].strip() for row in rows)
    references = [row["reference"] for row in rows]
    hypotheses = [row["hypothesis"] for row in rows]
    assert ps["wer"] == pytest.approx(metrics.wer(references, hypotheses))
    assert ps["cer"] == pytest.approx(metrics.cer(references, hypotheses))
    assert ps["wer"] < KATHLEEN_MAX_WER
    assert ps["audio_seconds"] > 1.0 and ps["rtf"] > 0.0
    ns = entry["systems"]["npspeech"]
    assert [row["reference"] for row in ns["utterances"]] == references
    assert entry["ratios"]["wer"] == pytest.approx(ns["wer"] / ps["wer"])


def test_worker_processes_give_the_same_hypotheses(data_dir):
    _pocketsphinx()
    bench = _bench()
    from npspeech.data import read_csvs

    rows = read_csvs([data_dir / "an4_mini" / "test.csv"])[:3]
    spec = bench.PocketSphinxSpec()
    texts = []
    for jobs in (1, 2):
        runner = bench.Runner(spec, jobs)
        try:
            texts.append(runner.run(rows).hypotheses)
        finally:
            runner.close()
    assert texts[0] == texts[1]
    assert len(texts[0]) == len(rows)
