import numpy as np
import pytest

from npspeech._native import load_extension
from npspeech.decoder.greedy import best_path, best_path_reference
from npspeech.errors import DecoderError


def one_hot_frames(classes, n_classes):
    log_probs = np.full((len(classes), n_classes), -10.0, dtype=np.float32)
    log_probs[np.arange(len(classes)), classes] = 0.0
    return log_probs


def test_merges_repeats_and_drops_blanks():
    blank = 3
    log_probs = one_hot_frames([0, 0, 3, 0, 1, 1, 3, 3, 2], 4)
    labels, frames = best_path(log_probs, blank)
    assert labels.tolist() == [0, 0, 1, 2]
    assert frames.tolist() == [0, 3, 4, 8]


def test_compiled_kernel_equals_reference(rng):
    if load_extension("ctc_greedy") is None:
        pytest.skip("compiled extension not built")
    for _ in range(20):
        T, V = rng.integers(0, 60), rng.integers(2, 30)
        # few distinct values so that ties and repeats are common
        log_probs = rng.integers(-3, 1, size=(T, V)).astype(np.float32)
        blank = int(rng.integers(0, V))
        expected = best_path_reference(log_probs, blank)
        actual = best_path(log_probs, blank)
        for a, e in zip(actual, expected):
            assert a.dtype == np.int32
            np.testing.assert_array_equal(a, e)


def test_empty_input_gives_empty_result():
    labels, frames = best_path(np.zeros((0, 5), dtype=np.float32), 4)
    assert labels.size == 0 and frames.size == 0


@pytest.mark.parametrize(
    ("log_probs", "blank", "message"),
    [
        (np.zeros(5), 0, "shape"),
        (np.zeros((3, 4)), 4, "outside"),
        (np.full((2, 3), np.nan), 2, "NaN"),
    ],
)
def test_bad_input_raises(log_probs, blank, message):
    with pytest.raises(DecoderError, match=message):
        best_path(log_probs, blank)


def test_greedy_decode_gives_text_timings_and_words():
    from npspeech.alphabet import english
    from npspeech.decoder.greedy import greedy_decode

    alphabet = english()
    blank = alphabet.blank
    ids = alphabet.encode("ab c")
    classes = [ids[0], ids[0], blank, ids[1], ids[2], blank, ids[3], ids[3]]
    candidate = greedy_decode(
        one_hot_frames(classes, alphabet.n_classes), alphabet, 0.02
    )
    assert candidate.text == "ab c" and candidate.confidence == 1.0
    assert [token.frame for token in candidate.tokens] == [0, 3, 4, 6]
    assert [(w.word, w.start_time) for w in candidate.words] == [
        ("ab", 0.0),
        ("c", 0.12),
    ]
    assert candidate.words[0].duration == pytest.approx(0.08)  # up to the space's start
    assert candidate.log_score == pytest.approx(0.0)
    entry = candidate.to_deepspeech_dict()
    assert entry["words"][1] == {"word": "c", "start_time": 0.12, "duration": 0.0}
