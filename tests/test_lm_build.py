"""ARPA builder: modified Kneser-Ney by hand, normalisation, agreement with KenLM."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from helpers.tolerances import ARPA_TEXT_ATOL, KENLM_SCORE_ATOL, LM_SUM_ATOL
from hypothesis import given, settings
from hypothesis import strategies as st

from npspeech import constants as C
from npspeech.errors import ConfigError, DataError
from npspeech.lm.build import (
    ArpaModel,
    build_arpa,
    build_arpa_file,
    normalize_sentences,
    perplexity,
    read_text_lines,
    write_arpa,
)

CORPUS = Path(__file__).parent / "data" / "lm" / "tiny_corpus.txt"

# The hand-computed example: four sentences, a bigram model.
#   <s> a b </s> | <s> a b </s> | <s> b a </s> | <s> a </s>
HAND_CORPUS = ["a b", "a b", "b a", "a"]


def _prob(model: ArpaModel, word: str, *context: str) -> float:
    return 10.0 ** model.log10_prob(word, context)


def _histories(model: ArpaModel) -> list[tuple[str, ...]]:
    """Every stored context, the empty one, and a few never seen."""
    histories = [()]
    for table in model.log10_probs[:-1]:
        histories += list(table)
    histories += [("zebra",), ("<s>", "zebra"), ("zebra", "the")][: model.order - 1]
    return [h[len(h) - (model.order - 1) :] if h else h for h in histories]


def _assert_normalised(model: ArpaModel, atol: float) -> None:
    targets = [w for w in model.words if w != "<s>"]
    for history in _histories(model):
        if history and history[-1] == "</s>":
            continue  # nothing follows the end of a sentence
        total = sum(10.0 ** model.log10_prob(w, history) for w in targets)
        assert total == pytest.approx(1.0, abs=atol), history


def test_hand_computed_bigram_model():
    model = build_arpa(HAND_CORPUS, order=2, normalize=False)
    arpa = ArpaModel.from_model(model)

    # Bigram counts (highest order: adjusted = raw): <s> a 3, a b 2, b </s> 2, a </s> 2,
    # <s> b 1, b a 1. Count-of-counts n1 = 2, n2 = 3, n3 = 1, n4 = 0:
    #   Y = n1 / (n1 + 2 n2) = 2 / 8 = 0.25
    #   D1 = 1 - 2 Y n2 / n1 = 1 - 2 * 0.25 * 3 / 2 = 0.25
    #   D2 = 2 - 3 Y n3 / n2 = 2 - 3 * 0.25 * 1 / 3 = 1.75
    #   D3+ = 3 - 4 Y n4 / n3 = 3
    assert model.discounts[1] == pytest.approx((0.25, 1.75, 3.0))
    assert not model.fallback[1]
    # Unigram continuation counts: a after {<s>, b} = 2, b after {a, <s>} = 2, </s>
    # after {b, a} = 2, <unk> 0. No unigram has count 1, so n1 = 0 and the discounts
    # fall back to lmplz's --discount_fallback (0.5, 1, 1.5).
    assert model.fallback[0]
    assert model.discounts[0] == pytest.approx(C.KN_FALLBACK_DISCOUNTS)

    # Unigrams: total adjusted count 6; u(a) = (2 - D2) / 6 = 1/6;
    # gamma() = D2 * N2 / 6 = 1 * 3 / 6 = 1/2, spread uniformly over the 4 targets
    # (a, b, </s>, <unk>): p(a) = 1/6 + (1/2) / 4 = 7/24, p(<unk>) = 1/8.
    p_a = 7 / 24
    assert _prob(arpa, "a") == pytest.approx(p_a, rel=1e-12)
    assert _prob(arpa, "b") == pytest.approx(p_a, rel=1e-12)
    assert _prob(arpa, "</s>") == pytest.approx(p_a, rel=1e-12)
    assert _prob(arpa, "<unk>") == pytest.approx(1 / 8, rel=1e-12)
    assert arpa.log10_probs[0][("<s>",)] == -99.0

    # Context <s>: a (3), b (1); total 4. u(a|<s>) = (3 - 3) / 4 = 0,
    # u(b|<s>) = (1 - 0.25) / 4 = 0.1875; gamma(<s>) = (D1 * 1 + D3 * 1) / 4 = 0.8125.
    gamma_bos = 0.8125
    assert _prob(arpa, "a", "<s>") == pytest.approx(0 + gamma_bos * p_a, rel=1e-12)
    assert _prob(arpa, "b", "<s>") == pytest.approx(0.1875 + gamma_bos * p_a, rel=1e-12)
    assert 10 ** arpa.log10_backoffs[0][("<s>",)] == pytest.approx(gamma_bos, rel=1e-12)
    # Context a: b (2), </s> (2); total 4. u = (2 - 1.75) / 4 = 0.0625 each;
    # gamma(a) = 1.75 * 2 / 4 = 0.875.
    assert _prob(arpa, "b", "a") == pytest.approx(0.0625 + 0.875 * p_a, rel=1e-12)
    # Context b: </s> (2), a (1); total 3. u(a|b) = (1 - 0.25) / 3 = 0.25;
    # gamma(b) = (0.25 + 1.75) / 3 = 2/3.
    assert _prob(arpa, "a", "b") == pytest.approx(0.25 + (2 / 3) * p_a, rel=1e-12)
    # An unseen bigram backs off: p(b | b) = gamma(b) p(b).
    assert _prob(arpa, "b", "b") == pytest.approx((2 / 3) * p_a, rel=1e-12)
    _assert_normalised(arpa, atol=1e-12)


def test_hand_computed_trigram_continuation_counts():
    model = build_arpa(HAND_CORPUS, order=3, normalize=False)
    words = model.vocabulary
    bigrams = {
        tuple(words[i] for i in row): int(a)
        for row, a in zip(
            model.orders[1].ngrams.tolist(), model.orders[1].adjusted, strict=True
        )
    }
    # Below the highest order, an n-gram's count is its number of distinct left
    # neighbours, except n-grams starting with <s>, which keep their raw counts.
    assert bigrams[("a", "b")] == 1  # only "<s> a b"
    assert bigrams[("b", "</s>")] == 1  # only "a b </s>"
    assert bigrams[("a", "</s>")] == 2  # "b a </s>" and "<s> a </s>"
    assert bigrams[("<s>", "a")] == 3  # raw count
    assert bigrams[("<s>", "b")] == 1
    trigrams = {
        tuple(words[i] for i in row): int(a)
        for row, a in zip(
            model.orders[2].ngrams.tolist(), model.orders[2].adjusted, strict=True
        )
    }
    assert trigrams[("<s>", "a", "b")] == 2  # highest order: raw counts
    assert ("<s>", "<s>", "a") not in trigrams  # <s> is never padded twice


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_sums_to_one(order):
    model = build_arpa(read_text_lines([CORPUS]), order=order)
    _assert_normalised(ArpaModel.from_model(model), atol=LM_SUM_ATOL)


def test_pruned_model_is_normalised_and_closed():
    model = build_arpa(read_text_lines([CORPUS]), order=3, prune=[0, 1, 1])
    full = build_arpa(read_text_lines([CORPUS]), order=3)
    assert model.counts()[0] == full.counts()[0]
    assert model.counts()[1] < full.counts()[1]
    assert model.counts()[2] < full.counts()[2]
    arpa = ArpaModel.from_model(model)
    _assert_normalised(arpa, atol=LM_SUM_ATOL)
    # Highest order: only counts above the threshold survive.
    assert np.all(model.orders[2].raw_counts > 1)
    # Every prefix and suffix of a stored n-gram is stored.
    for k in (1, 2):
        for ngram in arpa.log10_probs[k]:
            assert ngram[:-1] in arpa.log10_probs[k - 1]
            assert ngram[1:] in arpa.log10_probs[k - 1]


def test_written_arpa_loads_in_kenlm_and_scores_agree(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    model = build_arpa(read_text_lines([CORPUS]), order=3)
    path = write_arpa(model, tmp_path / "tiny.arpa")
    ours = ArpaModel.read(path)
    # The file keeps nine significant digits of every value.
    full = ArpaModel.from_model(model)
    for ngram, value in full.log10_probs[2].items():
        assert ours.log10_probs[2][ngram] == pytest.approx(value, abs=ARPA_TEXT_ATOL)
    language_model = kenlm.Model(str(path))
    assert language_model.order == 3
    sentences = [
        "the cat sat on the mat",
        "a bird slept on the road",
        "the zebra sat on the cat",  # zebra is unknown
        "",
    ]
    for sentence in sentences:
        assert language_model.score(sentence) == pytest.approx(
            ours.score(sentence), abs=KENLM_SCORE_ATOL
        )
    # Every full-word probability agrees too, including backed-off ones.
    state_words = ["the", "dog", "sat", "in", "the", "tree"]
    kenlm_scores = [s[0] for s in language_model.full_scores(" ".join(state_words))]
    context = ["<s>"]
    for word, expected in zip(state_words + ["</s>"], kenlm_scores, strict=True):
        assert ours.log10_prob(word, context) == pytest.approx(
            expected, abs=KENLM_SCORE_ATOL
        )
        context.append(word)


def test_pruned_arpa_loads_in_kenlm(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    model = build_arpa(read_text_lines([CORPUS]), order=4, prune=[0, 0, 1])
    path = write_arpa(model, tmp_path / "pruned.arpa")
    language_model = kenlm.Model(str(path))
    ours = ArpaModel.read(path)
    for sentence in ["the cat sat on the mat", "the old dog ran down the road"]:
        assert language_model.score(sentence) == pytest.approx(
            ours.score(sentence), abs=KENLM_SCORE_ATOL
        )


def test_vocab_size_maps_rare_words_to_unk():
    model = build_arpa(read_text_lines([CORPUS]), order=2, vocab_size=5)
    assert len(model.vocabulary) == 5 + 3
    assert model.vocabulary[3] == "the"  # the most frequent word comes first
    arpa = ArpaModel.from_model(model)
    unigram_unk = arpa.log10_probs[0][("<unk>",)]
    # <unk> stands for every dropped word now, so it is likelier than the uniform share.
    assert 10**unigram_unk > 0.2
    assert arpa.log10_prob("bird") == unigram_unk  # an unknown word scores as <unk>
    _assert_normalised(arpa, atol=LM_SUM_ATOL)


def test_text_is_normalised_to_the_alphabet(tmp_path):
    gz = tmp_path / "text.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.write("Héllo, World! It’s a TEST-case.\n\n  \nsecond line\n")
    lines = list(read_text_lines([gz]))
    assert [" ".join(words) for words in normalize_sentences(lines)] == [
        "hello world it's a test case",
        "second line",
    ]
    model = build_arpa(lines, order=2)
    assert set(model.vocabulary[3:]) == {
        "hello",
        "world",
        "it's",
        "a",
        "test",
        "case",
        "second",
        "line",
    }
    assert model.n_sentences == 2
    assert model.n_words == 8


def test_build_arpa_file_and_atomic_output(tmp_path):
    output = tmp_path / "out.arpa"
    output.write_text("old contents")
    model = build_arpa_file([CORPUS], output, order=2)
    assert output.read_text().startswith("\\data\\\nngram 1=")
    assert [p.name for p in tmp_path.iterdir()] == ["out.arpa"]  # no temporary left
    assert ArpaModel.read(output).order == model.order == 2
    assert perplexity(ArpaModel.read(output), ["the cat sat on the mat"]) < 30


def test_bad_arguments_raise_typed_errors(tmp_path):
    with pytest.raises(ConfigError, match="order"):
        build_arpa(["a b"], order=0)
    with pytest.raises(ConfigError, match="unigrams cannot be pruned"):
        build_arpa(["a b"], order=2, prune=[1, 1])
    with pytest.raises(ConfigError, match="must not decrease"):
        build_arpa(["a b"], order=3, prune=[0, 2, 1])
    with pytest.raises(ConfigError, match="vocab_size"):
        build_arpa(["a b"], order=2, vocab_size=0)
    with pytest.raises(DataError, match="no sentence"):
        build_arpa(["", "!!!", "  "], order=2)
    with pytest.raises(DataError, match="reserved"):
        build_arpa(["a <unk> b"], order=2, normalize=False)
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match="missing.txt"):
        list(read_text_lines([missing]))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match="latin1.txt:1"):
        list(read_text_lines([bad]))


def test_unigram_model_is_the_interpolated_unigram_distribution():
    model = build_arpa(HAND_CORPUS, order=1, normalize=False)
    arpa = ArpaModel.from_model(model)
    # Highest order: raw counts a 4, b 3, </s> 4 (total 11); n1 = n2 = 0, so fallback.
    d3 = C.KN_FALLBACK_DISCOUNTS[2]
    gamma = 3 * d3 / 11
    assert _prob(arpa, "b") == pytest.approx((3 - d3) / 11 + gamma / 4, rel=1e-12)
    assert math.isclose(sum(_prob(arpa, w) for w in ("a", "b", "</s>", "<unk>")), 1.0)


@pytest.mark.parametrize(
    "line",
    [
        "Héllo, World! It’s a TEST-case.",
        "  tabs\tand\u00a0no-break spaces / slashes_and_underscores ",
        "ÀÉÎÕÜ ÇA-VA? «Œuvre» naïve café 42 x²",
        "ΟΔΟΣ straße İstanbul",
        "",
    ],
)
def test_token_cached_normalisation_equals_line_normalisation(line):
    from npspeech.alphabet import english

    expected = english().normalize(line).split()
    assert list(normalize_sentences([line, line])) == (
        [expected] * 2 if expected else []
    )


def test_key_encodings_sort_alike(rng):
    from npspeech.lm.build import _keys

    rows = rng.integers(0, 50, size=(400, 3)).astype(np.int32)
    packed = _keys(rows, bits=6)  # 18 bits: one uint64 per row
    raw = _keys(rows, bits=32)  # 96 bits: big-endian bytes
    assert packed.dtype == np.uint64 and raw.dtype.kind == "V"
    expected = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(
        rows[np.argsort(packed, kind="stable")], rows[expected]
    )
    np.testing.assert_array_equal(rows[np.argsort(raw, kind="stable")], rows[expected])


def test_high_order_model_uses_byte_keys_and_stays_normalised():
    # 57 word ids need 6 bits; 11 words x 6 bits exceed a uint64, so keys are bytes.
    model = build_arpa(read_text_lines([CORPUS]), order=11)
    assert model.orders[0].bits * 11 > 64
    _assert_normalised(ArpaModel.from_model(model), atol=LM_SUM_ATOL)


@settings(max_examples=30, deadline=None)
@given(
    corpus=st.lists(
        st.lists(st.sampled_from("abcdef"), min_size=1, max_size=8).map(" ".join),
        min_size=1,
        max_size=12,
    ),
    order=st.integers(1, 4),
    prune=st.sampled_from([None, [0, 1], [0, 0, 1], [0, 1, 2]]),
)
def test_random_corpora_give_normalised_models(corpus, order, prune):
    model = build_arpa(corpus, order=order, prune=prune, normalize=False)
    arpa = ArpaModel.from_model(model)
    assert all(np.all(np.isfinite(t.log10_backoff)) for t in model.orders)
    _assert_normalised(arpa, atol=LM_SUM_ATOL)


def test_progress_bar_for_large_inputs(tmp_path, monkeypatch, capsys):
    import npspeech.lm.build as build_module

    monkeypatch.setattr(build_module, "_PROGRESS_MIN_BYTES", 0)  # every input is large
    gz = tmp_path / "more.txt.gz"
    gz.write_bytes(gzip.compress(b"one more line\n"))
    lines = list(read_text_lines([CORPUS, gz], progress=True))
    assert len(lines) == 21 and lines[-1] == "one more line\n"
    assert "reading text" in capsys.readouterr().err
    assert list(read_text_lines([CORPUS], progress=False)) == lines[:20]
