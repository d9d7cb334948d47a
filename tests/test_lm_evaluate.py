"""Array ARPA reading, vectorised backoff queries and perplexity against the dictionary
oracle and KenLM (npspeech.lm.arpa, npspeech.lm.evaluate)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from npspeech.errors import DataError, ScorerError
from npspeech.lm.arpa import Lookup, read_arpa, read_language_model
from npspeech.lm.build import ArpaModel, build_arpa, write_arpa
from npspeech.lm.evaluate import evaluate, read_sentences

DATA = Path(__file__).parent / "data"
ARPAS = [DATA / "mix_pets.arpa", DATA / "mix_weather.arpa", DATA / "tiny_bigram.arpa"]
SENTENCES = [
    "the cat sat on the mat",
    "a zebra is on the hill",
    "ab ba cab abc",
    "rain",
    "the the the dog and the sun is hot",
]


@pytest.mark.parametrize("path", ARPAS, ids=lambda p: p.name)
def test_lookup_matches_the_oracle_on_every_history(path, rng):
    model, oracle = read_arpa(path), ArpaModel.read(path)
    lookup = Lookup(model)
    words = model.vocabulary
    Q = 400
    contexts = rng.integers(0, len(words), size=(Q, 3)).astype(np.int32)  # (Q, 3)
    lengths = rng.integers(0, 4, size=Q)
    contexts[np.arange(3)[None, :] < 3 - lengths[:, None]] = -1
    targets = rng.integers(0, len(words), size=Q).astype(np.int32)
    targets[targets == 1] = 2  # <s> is never predicted
    got = lookup.log10_probs(contexts, targets)
    for q in range(Q):
        history = [words[i] for i in contexts[q] if i >= 0]
        assert got[q] == pytest.approx(
            oracle.log10_prob(words[targets[q]], history), abs=1e-9
        )


@pytest.mark.parametrize("path", ARPAS, ids=lambda p: p.name)
def test_perplexity_and_oov_match_kenlm(path):
    kenlm = pytest.importorskip("kenlm")
    loaded = kenlm.Model(str(path))
    sentences = [s.split() for s in SENTENCES]
    result = evaluate(Lookup(read_arpa(path)), sentences)
    total = sum(loaded.score(" ".join(s)) for s in sentences)
    assert result.log10_prob == pytest.approx(total, abs=1e-4)
    tokens = sum(len(s) + 1 for s in sentences)
    assert result.tokens == tokens and result.words == tokens - len(sentences)
    assert result.perplexity == pytest.approx(10 ** (-total / tokens), rel=1e-5)
    oov = sum(1 for s in sentences for w in s if w not in loaded)
    assert result.oov == oov
    assert result.oov_rate == pytest.approx(oov / result.words)
    # Without OOVs: KenLM's full_scores flags them; leave out their scores.
    kept = [
        score
        for s in sentences
        for score, _, is_oov in loaded.full_scores(" ".join(s))
        if not is_oov
    ]
    expected = 10 ** (-sum(kept) / len(kept))
    assert result.perplexity_without_oov == pytest.approx(expected, rel=1e-5)


def test_a_built_model_round_trips_through_read_arpa(tmp_path):
    built = build_arpa(["the cat sat", "the dog sat on the cat", "a cat"], 3)
    path = tmp_path / "m.arpa.gz"
    write_arpa(built, tmp_path / "m.arpa")
    with open(tmp_path / "m.arpa", "rb") as source, gzip.open(path, "wb") as target:
        target.write(source.read())
    read = read_arpa(path)
    assert read.counts() == built.counts()
    assert sorted(read.vocabulary) == sorted(built.vocabulary)
    lookup_built, lookup_read = Lookup(built), Lookup(read)
    sentences = [["the", "cat", "sat", "on", "a", "dog"], ["unknown", "cat"]]
    assert evaluate(lookup_read, sentences).log10_prob == pytest.approx(
        evaluate(lookup_built, sentences).log10_prob, abs=1e-7
    )


def test_text_sources_gzip_and_corpus_csvs(tmp_path):
    text = tmp_path / "dev.txt.gz"
    with gzip.open(text, "wt", encoding="utf-8") as handle:
        handle.write("The Cat, sat!\n\nON the mat.\n")
    csv = tmp_path / "dev.csv"
    csv.write_text(
        "wav_filename,wav_filesize,transcript\na.wav,10,the dog sat\nb.wav,12,a cat\n"
    )
    sentences = read_sentences([text, csv])
    assert sentences == [["the", "cat", "sat"], ["on", "the", "mat"]] + [
        ["the", "dog", "sat"],
        ["a", "cat"],
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("wav_filename,text\na.wav,hello\n")
    with pytest.raises(DataError, match="bad.csv: a corpus CSV needs a 'transcript'"):
        read_sentences([bad])
    short = tmp_path / "short.csv"
    short.write_text("wav_filename,wav_filesize,transcript\na.wav,hello\n")
    with pytest.raises(DataError, match="short.csv:2: 2 fields"):
        read_sentences([short])


def test_a_model_without_unk_gets_kenlms_unk(tmp_path):
    path = tmp_path / "no_unk.arpa"
    path.write_text(
        "\\data\\\nngram 1=3\n\n\\1-grams:\n-99\t<s>\n-0.30103\t</s>\n-0.30103\thi\n"
        "\n\\end\\\n"
    )
    model = read_arpa(path)
    assert model.vocabulary[:3] == ["<unk>", "<s>", "</s>"]
    result = evaluate(Lookup(model), [["hi", "zebra"]])
    assert result.log10_prob == pytest.approx(-0.30103 - 100.0 - 0.30103)
    assert math.isclose(result.oov_rate, 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t<s>\n\n\\end\\\n", "no </s> unigram"),
        (
            "\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n-1\tx\n\n\\end\\\n",
            "2 1-grams.*3",
        ),
        (
            "\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\nx </s>\n\\end\\\n",
            "not a number",
        ),
        (
            "\\data\\\nngram 1=2\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n\n"
            "\\2-grams:\n-1\t<s> cat\n\n\\end\\\n",
            "'cat', which is not a unigram",
        ),
        ("hello\n", "not an ARPA file|not a language model"),
    ],
)
def test_malformed_arpa_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(ScorerError, match=message):
        read_language_model(path)


def test_an_empty_text_has_no_perplexity():
    with pytest.raises(DataError, match="no sentence"):
        evaluate(Lookup(read_arpa(ARPAS[0])), [])
