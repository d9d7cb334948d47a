"""KenLM adapter: hand-computed scores on a tiny ARPA fixture, caching, files, tries."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import kenlm
import numpy as np
import pytest

from npspeech import constants
from npspeech.alphabet import Alphabet, english
from npspeech.decoder.hotwords import LabelTrie, hotword_trie, vocabulary_trie
from npspeech.decoder.scorer import (
    LOG10_TO_LN,
    Scorer,
    load_language_model,
    log10_to_ln,
    read_arpa_unigrams,
)
from npspeech.errors import DecoderError, ScorerError

TINY_ARPA = Path(__file__).parent / "data" / "tiny_bigram.arpa"
LN10 = math.log(10.0)


@pytest.fixture(scope="module")
def tiny_model():
    return kenlm.Model(str(TINY_ARPA))


@pytest.fixture
def tiny_scorer(tiny_model):
    return Scorer(
        tiny_model, alpha=1.0, beta=0.0, vocabulary=read_arpa_unigrams(TINY_ARPA)
    )


def test_log10_to_ln_is_the_one_conversion():
    assert LOG10_TO_LN == pytest.approx(2.302585092994046, abs=1e-15)
    assert log10_to_ln(-2.0) == pytest.approx(math.log(0.01), abs=1e-12)
    assert log10_to_ln(0.0) == 0.0


# Hand-computed from tests/data/tiny_bigram.arpa (log10):
#   P(ab | <s>) = -0.30103 (bigram)       P(ba | ab) = -0.47712 (bigram)
#   P(abc | ab) = bo(ab) + P(abc) = -0.22185 - 1.30103 = -1.52288 (backoff)
#   P(cab | ba) = bo(ba) + P(cab) = -0.17609 - 1.0 = -1.17609 (backoff)
#   P(</s> | ba) = -0.39794 (bigram)      P(</s> | <s>) = bo(<s>) + P(</s>) = -1.0
#   P(zzz | <s>) = bo(<s>) + P(<unk>) = -0.30103 - 1.0 = -1.30103
@pytest.mark.parametrize(
    ("history", "word", "log10"),
    [
        ([], "ab", -0.30103),
        (["ab"], "ba", -0.47712),
        (["ab"], "abc", -0.22185 - 1.30103),
        (["ab", "ba"], "cab", -0.17609 - 1.0),
        ([], "zzz", -0.30103 - 1.0),
    ],
)
def test_word_scores_match_hand_computed_values(tiny_scorer, history, word, log10):
    state = 0
    for previous in history:
        _, state = tiny_scorer.word_log_prob(state, previous)
    value, _ = tiny_scorer.word_log_prob(state, word)
    assert value == pytest.approx(log10 * LN10, abs=1e-5)


def test_end_of_sentence_scores(tiny_scorer):
    assert tiny_scorer.end_log_prob(0) == pytest.approx(-1.0 * LN10, abs=1e-5)
    _, state = tiny_scorer.word_log_prob(0, "ab")
    _, state = tiny_scorer.word_log_prob(state, "ba")
    assert tiny_scorer.end_log_prob(state) == pytest.approx(-0.39794 * LN10, abs=1e-5)
    silent = Scorer(tiny_scorer.language_model, 1.0, 0.0, end_of_sentence=False)
    assert silent.end_log_prob(0) == 0.0


def test_sentence_score_matches_kenlm(tiny_scorer, tiny_model):
    for text in ["ab ba", "cab ab abc", "zzz ab", "ba ba ba cab"]:
        expected = tiny_model.score(text, bos=True, eos=True) * LN10
        assert tiny_scorer.sentence_log_prob(text) == pytest.approx(expected, abs=1e-5)
    hand = (-0.30103 - 0.47712 - 0.39794) * LN10
    assert tiny_scorer.sentence_log_prob("ab ba") == pytest.approx(hand, abs=1e-5)


def test_identical_histories_share_a_state_id(tiny_scorer):
    _, after_ab = tiny_scorer.word_log_prob(0, "ab")
    _, again = tiny_scorer.word_log_prob(0, "ab")
    assert after_ab == again != 0
    # a bigram model forgets all but the last word: "ba ab" and "ab" end in one state
    _, after_ba = tiny_scorer.word_log_prob(0, "ba")
    _, after_ba_ab = tiny_scorer.word_log_prob(after_ba, "ab")
    assert after_ba_ab == after_ab
    count = tiny_scorer.n_states
    assert tiny_scorer.word_log_prob(after_ab, "ba")[1] == after_ba
    assert tiny_scorer.n_states == count  # no new state registered


def test_unk_score_replaces_kenlm_unk(tiny_model):
    scorer = Scorer(tiny_model, 1.0, 0.0, unk_score=-20.0)
    assert scorer.word_log_prob(0, "zzz")[0] == -20.0
    assert scorer.word_log_prob(0, "ab")[0] == pytest.approx(-0.30103 * LN10, abs=1e-5)


def test_read_arpa_unigrams_drops_markers():
    assert read_arpa_unigrams(TINY_ARPA) == ("ab", "ba", "cab", "abc")


def test_read_arpa_unigrams_rejects_other_files(tmp_path):
    path = tmp_path / "not.arpa"
    path.write_text("hello\n")
    with pytest.raises(ScorerError, match="not.arpa"):
        read_arpa_unigrams(path)


def test_from_file_reads_arpa_with_default_weights():
    scorer = Scorer.from_file(TINY_ARPA)
    assert scorer.alpha == constants.DEFAULT_ALPHA
    assert scorer.beta == constants.DEFAULT_BETA
    assert set(scorer.vocabulary) == {"ab", "ba", "cab", "abc"}
    scorer = Scorer.from_file(TINY_ARPA, alpha=0.5, beta=2.0)
    assert (scorer.alpha, scorer.beta) == (0.5, 2.0)


def test_from_file_errors_name_the_file(tmp_path):
    with pytest.raises(ScorerError, match="missing.scorer"):
        Scorer.from_file(tmp_path / "missing.scorer")


def _run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, whose file descriptor 2 is a pipe we read."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )


def test_loading_an_arpa_prints_nothing_on_stderr():
    # Unsilenced, KenLM writes "Loading the LM will be faster if you build a binary
    # file.", the path and 100 progress stars to descriptor 2 while it reads an ARPA.
    loud = _run_python(f"import kenlm; kenlm.Model({str(TINY_ARPA)!r})")
    assert loud.returncode == 0 and "****" in loud.stderr  # the test can fail
    quiet = _run_python(
        "from npspeech.decoder.scorer import Scorer\n"
        f"scorer = Scorer.from_file({str(TINY_ARPA)!r})\n"
        "print(scorer.language_model.order)\n"
        "import sys; print('after', file=sys.stderr)"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "2"
    assert quiet.stderr == "after\n"  # and descriptor 2 works again afterwards


def test_a_failed_load_still_shows_what_kenlm_said(tmp_path, capfd):
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\tab\n\\end\\\n")
    with pytest.raises(ScorerError, match="broken.arpa"):
        load_language_model(broken)
    err = capfd.readouterr().err
    assert "broken.arpa" in err  # KenLM's own words, shown because the load failed


@pytest.mark.parametrize(
    "options",
    [
        {"alpha": math.nan},
        {"beta": math.inf},
        {"oov_penalty": 1.0},
        {"oov_penalty": math.nan},
        {"unk_score": math.nan},
    ],
)
def test_non_finite_weights_are_rejected(tiny_model, options):
    arguments = {"alpha": 1.0, "beta": 0.0} | options
    with pytest.raises(ScorerError):
        Scorer(tiny_model, **arguments)


def test_scorer_needs_a_kenlm_model():
    with pytest.raises(ScorerError, match="kenlm.Model"):
        Scorer("model.arpa", 1.0, 0.0)


@pytest.mark.data
def test_deepspeech_scorer_loads_and_scores(data_dir):
    path = data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
    model = kenlm.Model(str(path))
    scorer = Scorer(model, constants.DEFAULT_ALPHA, constants.DEFAULT_BETA)
    text = "she had your dark suit in greasy wash water all year"
    expected = model.score(text, bos=True, eos=True) * LN10
    assert scorer.sentence_log_prob(text) == pytest.approx(expected, abs=1e-4)
    # the LM prefers the real sentence to a scrambled one
    assert scorer.sentence_log_prob(text) > scorer.sentence_log_prob(
        "year all water wash greasy in suit dark your had she"
    )


# -- tries -----------------------------------------------------------------------------
def test_label_trie_structure():
    trie = LabelTrie.build([((1, 2), 1.0), ((1, 3), 2.0), ((4,), 0.5)])
    a = trie.child(0, 1)
    assert a > 0 and trie.child(0, 2) == -1
    assert trie.boost[a] == 2.0  # the largest boost among phrases through the node
    end = trie.child(a, 3)
    assert trie.terminal[end] == 1 and trie.terminal[a] == 0
    assert trie.n_nodes == 5 and trie.max_boost == 2.0
    for node in range(trie.n_nodes):
        edges = trie.child_label[trie.child_start[node] : trie.child_start[node + 1]]
        assert list(edges) == sorted(edges)


def test_vocabulary_trie_skips_unspellable_words():
    alphabet = Alphabet([" ", "a", "b"])
    trie = vocabulary_trie(alphabet, ["ab", "b", "abc", "", "a b"])
    ab = trie.child(trie.child(0, 1), 2)
    assert trie.terminal[ab] == 1 and trie.terminal[trie.child(0, 2)] == 1
    assert trie.n_nodes == 4


@pytest.mark.parametrize("labels", [[" ", "a", "b", "c", "'"], [" ", "a", "b", "ch"]])
def test_vocabulary_trie_equals_the_dictionary_build(labels):
    # The one-pass layout of sorted words is the trie LabelTrie.build makes when it is
    # given the same words in the same order, for one-character labels (table lookup)
    # and multi-character ones (alphabet.encode).
    alphabet = Alphabet(labels)
    rng = np.random.default_rng(7)
    letters = [label for label in labels if label != " "]
    words = ["".join(rng.choice(letters, rng.integers(1, 7))) for _ in range(400)]
    words += ["", "a b", "x", "ab", "ab"]  # empty, two words, unspellable, repeated
    trie = vocabulary_trie(alphabet, words)
    spellable = set()
    for word in words:
        if word and " " not in word and "x" not in word:
            spellable.add(tuple(int(i) for i in alphabet.encode(word)))
    reference = LabelTrie.build([(ids, 0.0) for ids in sorted(spellable)])
    for field in ("child_start", "child_label", "child_node", "boost", "terminal"):
        np.testing.assert_array_equal(getattr(trie, field), getattr(reference, field))
    assert int(trie.terminal.sum()) == len(spellable)


def test_hotword_trie_normalises_and_validates():
    alphabet = english()
    trie = hotword_trie(alphabet, {"New York": 1.5})
    node = 0
    for label in alphabet.encode("new york"):
        node = trie.child(node, int(label))
        assert node > 0 and trie.boost[node] == 1.5
    assert trie.terminal[node] == 1
    default = hotword_trie(alphabet, ["zork"])
    assert default.max_boost == constants.HOTWORD_BOOST
    with pytest.raises(DecoderError, match="empty"):
        hotword_trie(alphabet, ["!!!"])
    with pytest.raises(DecoderError, match="finite"):
        hotword_trie(alphabet, {"zork": np.inf})
    with pytest.raises(DecoderError, match="list"):
        hotword_trie(alphabet, "zork")
