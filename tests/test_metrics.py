import math

import pytest

from npspeech.metrics import (
    cer,
    corpus_error_counts,
    error_counts,
    paired_bootstrap,
    wer,
)


def test_word_errors_count_substitution_insertion_deletion():
    counts = error_counts("the cat sat on the mat", "the bat sat the mat down")
    # substitution cat->bat, deletion of "on", insertion of "down"
    assert counts.word_edits == 3 and counts.words == 6
    assert counts.wer == pytest.approx(0.5)


def test_character_errors_include_spaces():
    assert cer("ab cd", "abcd") == pytest.approx(1 / 5)
    assert error_counts("ab  cd ", " ab cd").char_edits == 0  # whitespace collapsed


def test_corpus_rate_is_total_edits_over_total_words():
    references = ["a b c d", "e"]
    hypotheses = ["a b c d", "f"]
    assert wer(references, hypotheses) == pytest.approx(1 / 5)  # not the mean 0.5
    assert corpus_error_counts(references, hypotheses).words == 5


def test_empty_reference():
    assert wer("", "") == 0.0
    assert math.isinf(wer("", "word"))


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


# -- paired bootstrap ------------------------------------------------------------------
REFERENCES = [
    "the cat sat on the mat",
    "a quick brown fox",
    "jumps over the lazy dog",
    "hello world",
    "speech to text",
    "one two three four",
] * 5


def test_paired_bootstrap_of_a_system_against_itself_is_exactly_zero():
    hypotheses = [r.replace("t", "d") for r in REFERENCES]
    wer_diff, cer_diff = paired_bootstrap(REFERENCES, hypotheses, hypotheses, 500)
    for diff in (wer_diff, cer_diff):
        assert diff.difference == diff.low == diff.high == 0.0
        assert diff.a_better == 0.0


def test_paired_bootstrap_difference_is_the_corpus_rates_difference():
    better = list(REFERENCES)
    better[0] = "the cat sat on a mat"  # one word, one character wrong
    worse = [r.replace("o", "u") for r in REFERENCES]
    wer_diff, cer_diff = paired_bootstrap(REFERENCES, better, worse, 2000, seed=1)
    assert wer_diff.difference == pytest.approx(
        wer(REFERENCES, better) - wer(REFERENCES, worse)
    )
    assert cer_diff.difference == pytest.approx(
        cer(REFERENCES, better) - cer(REFERENCES, worse)
    )
    # A is better on every utterance but one: every resample says so
    for diff in (wer_diff, cer_diff):
        assert diff.low <= diff.difference <= diff.high < 0.0
        assert diff.a_better == 1.0
    # swapping the systems mirrors the interval
    wer_swapped, _ = paired_bootstrap(REFERENCES, worse, better, 2000, seed=1)
    assert wer_swapped.low == pytest.approx(-wer_diff.high)
    assert wer_swapped.high == pytest.approx(-wer_diff.low)
    assert wer_swapped.a_better == 0.0


def test_paired_bootstrap_interval_straddles_zero_for_a_trade():
    # A wins one utterance, B another, by the same amount: no winner
    a = list(REFERENCES)
    b = list(REFERENCES)
    a[0] = "the cat sat on the hat"
    b[1] = "a quick brown box"
    wer_diff, _ = paired_bootstrap(REFERENCES, a, b, 4000, seed=2)
    assert wer_diff.difference == pytest.approx(0.0)
    assert wer_diff.low < 0.0 < wer_diff.high
    assert 0.2 < wer_diff.a_better < 0.6


def test_paired_bootstrap_rejects_misaligned_lists():
    with pytest.raises(ValueError, match="references"):
        paired_bootstrap(["a b"], ["a b", "c"], ["a b"])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [], [])
