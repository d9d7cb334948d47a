import math

import pytest

from npspeech.metrics import cer, corpus_error_counts, error_counts, wer


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
