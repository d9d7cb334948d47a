"""Prefix beam search: compiled against the oracle and brute force; LM, hot-words,
n-best, timings, streaming, batches and input checks."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import kenlm
import numpy as np
import pytest
from helpers.tolerances import DECODER_SCORE_ATOL

from npspeech.alphabet import Alphabet, english
from npspeech.decoder import beam as beam_module
from npspeech.decoder._beam_ref import viterbi_align_reference
from npspeech.decoder.beam import BeamSearchDecoder, to_deepspeech_json
from npspeech.decoder.greedy import best_path
from npspeech.decoder.scorer import Scorer, read_arpa_unigrams
from npspeech.errors import ConfigError, DecoderError, ScorerError
from npspeech.metrics import cer
from npspeech.nn import activations

TINY_ARPA = Path(__file__).parent / "data" / "tiny_bigram.arpa"
SMALL = Alphabet([" ", "a", "b", "c"])  # V = 5, blank 4; spells the fixture's words
needs_compiled = pytest.mark.skipif(
    beam_module._compiled is None, reason="ctc_beam extension not built"
)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of float64 logits (computed in float64)."""
    return activations.log_softmax(logits).astype(np.float32)


def random_log_probs(rng, T: int, V: int, scale: float = 2.0) -> np.ndarray:
    """(T, V) float32 log-softmax of Gaussian logits."""
    return log_softmax(rng.normal(0.0, scale, size=(T, V)))


def peaky_log_probs(
    rng, alphabet: Alphabet, text: str, noise: float = 0.5, peak: float = 8.0
) -> np.ndarray:
    """Each label held 2 frames then 2 blank frames; Gaussian noise on all logits."""
    blank = alphabet.blank
    path = [blank]
    for label in alphabet.encode(text):
        path += [int(label), int(label), blank, blank]
    logits = rng.normal(0.0, noise, size=(len(path), alphabet.n_classes))
    logits[np.arange(len(path)), path] += peak
    return log_softmax(logits)


@pytest.fixture(scope="module")
def tiny_scorer():
    return Scorer(
        kenlm.Model(str(TINY_ARPA)),
        alpha=0.8,
        beta=0.5,
        vocabulary=read_arpa_unigrams(TINY_ARPA),
        oov_penalty=-3.0,
    )


def assert_same_search(decoder: BeamSearchDecoder, log_probs: np.ndarray, n_best: int):
    compiled = decoder.new_search()
    compiled.feed(log_probs)
    oracle = decoder.new_search(reference=True)
    oracle.feed(log_probs)
    got, want = compiled.best(n_best), oracle.best(n_best)
    assert [tuple(labels) for labels, _ in got] == [tuple(labels) for labels, _ in want]
    np.testing.assert_allclose(
        [score for _, score in got],
        [score for _, score in want],
        atol=DECODER_SCORE_ATOL,
    )
    return got


# -- compiled search == Python oracle --------------------------------------------------
@needs_compiled
@pytest.mark.parametrize(
    ("beam_width", "cutoff_top_n", "cutoff_prob"),
    [(1, 40, 1.0), (4, 40, 1.0), (8, 3, 1.0), (8, 40, 0.9), (32, 2, 0.95)],
)
def test_compiled_equals_oracle_without_lm(rng, beam_width, cutoff_top_n, cutoff_prob):
    decoder = BeamSearchDecoder(
        SMALL, beam_width=beam_width, cutoff_top_n=cutoff_top_n, cutoff_prob=cutoff_prob
    )
    for T in (1, 7, 25):
        assert_same_search(decoder, random_log_probs(rng, T, SMALL.n_classes), n_best=8)


def with_covering_vocabulary(scorer: Scorer, covers: bool) -> Scorer:
    """``scorer`` with ``vocabulary_covers_lm`` set (the fixture ARPA's vocabulary is
    its own 1-grams, so True is the truth)."""
    return Scorer(
        scorer.language_model,
        scorer.alpha,
        scorer.beta,
        vocabulary=scorer.vocabulary,
        oov_penalty=scorer.oov_penalty,
        oov_word_penalty=scorer.oov_word_penalty,
        vocabulary_covers_lm=covers,
    )


@needs_compiled
@pytest.mark.parametrize("blank", [None, 0, 2])
@pytest.mark.parametrize("covers", [False, True])
def test_compiled_equals_oracle_with_lm_and_hotwords(rng, tiny_scorer, blank, covers):
    # with ``covers`` the compiled search asks the LM once per history for all the
    # words outside the vocabulary; the oracle asks KenLM about each word
    scorer = with_covering_vocabulary(tiny_scorer, covers)
    hotwords = {"ab": 1.0, "cab ba": 0.7, "bb": 0.5, "c": 0.2}
    for options in ({}, {"hotwords": hotwords}):
        decoder = BeamSearchDecoder(
            SMALL, beam_width=10, scorer=scorer, blank=blank, **options
        )
        for T in (0, 9, 30):
            assert_same_search(decoder, random_log_probs(rng, T, SMALL.n_classes), 10)
        peaky = peaky_log_probs(rng, SMALL, "ab ba cab", noise=1.5, peak=3.0)
        if blank is None:
            assert_same_search(decoder, peaky, 10)


@pytest.mark.data
@needs_compiled
def test_compiled_equals_oracle_with_the_deepspeech_scorer(data_dir):
    alphabet = Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")
    scorer = Scorer.from_file(data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer")
    rng = np.random.default_rng(3)
    log_probs = peaky_log_probs(rng, alphabet, "all the women", noise=1.5, peak=3.0)
    hotwords = {"women": 1.0, "the mothers": 0.5, "zyx": 2.0}
    for options in ({}, {"hotwords": hotwords, "cutoff_prob": 0.99}):
        decoder = BeamSearchDecoder(alphabet, beam_width=8, scorer=scorer, **options)
        assert_same_search(decoder, log_probs, 8)


# -- the sum over alignments -----------------------------------------------------------
def brute_force_prefix_scores(log_probs: np.ndarray, blank: int) -> dict:
    """ln of the summed probability of all V**T alignments, per collapsed sequence."""
    T, V = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        collapsed = [
            c for k, c in enumerate(path) if c != blank and (k == 0 or path[k - 1] != c)
        ]
        value = float(sum(log_probs[t, c] for t, c in enumerate(path)))
        key = tuple(collapsed)
        totals[key] = np.logaddexp(totals.get(key, -np.inf), value)
    return totals


@pytest.mark.parametrize("T", [1, 3, 5])
def test_wide_beam_equals_sum_over_all_alignments(rng, T):
    alphabet = Alphabet([" ", "a", "b"])  # V = 4
    log_probs = random_log_probs(rng, T, alphabet.n_classes, scale=1.0)
    expected = brute_force_prefix_scores(log_probs, alphabet.blank)
    decoder = BeamSearchDecoder(alphabet, beam_width=10_000)
    results = decoder.decode(log_probs, n_best=10_000)
    got = {tuple(alphabet.encode(r.text)): r.log_score for r in results}
    assert set(got) == set(expected)
    for prefix, value in expected.items():
        assert got[prefix] == pytest.approx(value, abs=DECODER_SCORE_ATOL)
    best = max(expected, key=expected.get)
    assert results[0].text == alphabet.decode(best)


def test_peaky_input_decodes_like_greedy(rng):
    alphabet = english()
    log_probs = peaky_log_probs(rng, alphabet, "it was my reports from the north")
    labels, _ = best_path(log_probs, alphabet.blank)
    result = BeamSearchDecoder(alphabet, beam_width=8).decode(log_probs)[0]
    assert result.text == alphabet.decode(labels) == "it was my reports from the north"


# -- language model --------------------------------------------------------------------
def test_lm_score_is_added_per_word(rng, tiny_scorer):
    log_probs = peaky_log_probs(rng, SMALL, "ab ba", noise=0.1, peak=12.0)
    plain = BeamSearchDecoder(SMALL, beam_width=16).decode(log_probs)[0]
    with_lm = BeamSearchDecoder(SMALL, beam_width=16, scorer=tiny_scorer).decode(
        log_probs
    )[0]
    assert plain.text == with_lm.text == "ab ba"
    alpha, beta = tiny_scorer.alpha, tiny_scorer.beta
    # ln P(ab ba </s>) weighted by alpha, plus beta per word
    lm = tiny_scorer.sentence_log_prob("ab ba")
    assert with_lm.log_score - plain.log_score == pytest.approx(
        alpha * lm + 2 * beta, abs=1e-3
    )


def test_oov_penalty_is_per_letter_outside_the_vocabulary(rng):
    model = kenlm.Model(str(TINY_ARPA))
    vocabulary = read_arpa_unigrams(TINY_ARPA)
    # "c" starts the vocabulary word "cab"; the next two letters leave the trie
    log_probs = peaky_log_probs(rng, SMALL, "ccc", noise=0.1, peak=12.0)

    def decode(penalty, hotwords=None):
        # no per-word penalty, so that the per-letter one is measured alone
        scorer = Scorer(
            model,
            1.0,
            0.0,
            vocabulary=vocabulary,
            oov_penalty=penalty,
            oov_word_penalty=0.0,
        )
        # DeepSpeech's cutoff_prob 1.0: every class is tried, so the vocabulary-only
        # (-inf) search below can still reach an in-vocabulary path
        decoder = BeamSearchDecoder(
            SMALL, beam_width=16, cutoff_prob=1.0, scorer=scorer, hotwords=hotwords
        )
        return decoder.decode(log_probs)[0]

    free = decode(None)
    assert free.text == "ccc"
    assert decode(-2.0).log_score - free.log_score == pytest.approx(2 * -2.0, abs=1e-3)
    # a hot-word is exempt from the penalty: only its boost is added
    boosted = decode(-2.0, hotwords={"ccc": 0.5})
    assert boosted.log_score - free.log_score == pytest.approx(3 * 0.5, abs=1e-3)
    # -inf admits vocabulary words only, as DeepSpeech's decoder does
    assert decode(-math.inf).text != "ccc"


def test_vocabulary_only_search_at_default_cutoff_keeps_a_prefix(rng):
    # cutoff_prob < 1 would prune the blank on these peaky frames; the blank is always
    # tried, so a vocabulary-only (-inf) search keeps a finite prefix
    model = kenlm.Model(str(TINY_ARPA))
    vocabulary = read_arpa_unigrams(TINY_ARPA)
    log_probs = peaky_log_probs(rng, SMALL, "ccc", noise=0.1, peak=12.0)
    scorer = Scorer(model, 1.0, 0.0, vocabulary=vocabulary, oov_penalty=-math.inf)
    decoder = BeamSearchDecoder(SMALL, beam_width=16, scorer=scorer)
    assert decoder.cutoff_prob < 1.0  # the library default
    best = decoder.decode(log_probs)[0]
    assert best.text != "ccc" and math.isfinite(best.log_score)
    oracle = decoder.new_search(reference=True)
    oracle.feed(decoder.validate(log_probs))
    labels, score = oracle.best(1)[0]
    assert "".join(decoder._class_text[c] for c in labels) == best.text
    assert score == pytest.approx(best.log_score, abs=1e-4)


def _decode_with_word_penalty(model, vocabulary, log_probs, word_penalty):
    """The best candidate with oov_penalty -2 and the given oov_word_penalty, after
    checking that the compiled search and the oracle agree."""
    scorer = Scorer(
        model,
        1.0,
        0.0,
        vocabulary=vocabulary,
        oov_penalty=-2.0,
        oov_word_penalty=word_penalty,
    )
    decoder = BeamSearchDecoder(SMALL, beam_width=16, scorer=scorer)
    assert_same_search(decoder, log_probs, 3)
    return decoder.decode(log_probs)[0]


def test_oov_word_penalty_is_charged_once_where_a_word_leaves_the_vocabulary(rng):
    model = kenlm.Model(str(TINY_ARPA))
    vocabulary = read_arpa_unigrams(TINY_ARPA)
    # "c" starts the vocabulary word "cab": "ccc" leaves the trie once (second letter)
    log_probs = peaky_log_probs(rng, SMALL, "ccc", noise=0.1, peak=12.0)

    per_letter_only = _decode_with_word_penalty(model, vocabulary, log_probs, 0.0)
    assert per_letter_only.text == "ccc"
    charged = _decode_with_word_penalty(model, vocabulary, log_probs, -1.5)
    assert charged.text == "ccc"
    assert charged.log_score - per_letter_only.log_score == pytest.approx(
        -1.5, abs=1e-3
    )
    with pytest.raises(ScorerError, match="oov_word_penalty"):
        Scorer(model, 1.0, 0.0, vocabulary=vocabulary, oov_word_penalty=1.0)


@pytest.mark.parametrize(
    ("text", "truncations"), [("ca", 1), ("ab ca", 1), ("ca ab", 1), ("ca ca", 2)]
)
def test_oov_word_penalty_is_charged_where_a_word_ends_short_of_a_word(
    rng, text, truncations
):
    model = kenlm.Model(str(TINY_ARPA))
    vocabulary = read_arpa_unigrams(TINY_ARPA)
    # "ca" is a prefix of the vocabulary word "cab" but no word itself: it never
    # leaves the trie, so only its end (a space or the end of the text) can charge it
    log_probs = peaky_log_probs(rng, SMALL, text, noise=0.1, peak=12.0)

    free = _decode_with_word_penalty(model, vocabulary, log_probs, 0.0)
    charged = _decode_with_word_penalty(model, vocabulary, log_probs, -1.5)
    assert free.text == charged.text == text
    assert charged.log_score - free.log_score == pytest.approx(
        -1.5 * truncations, abs=1e-3
    )


@pytest.mark.data
def test_lm_repairs_a_noisy_sentence(data_dir):
    alphabet = Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")
    scorer = Scorer.from_file(data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer")
    # every word is in the scorer's vocabulary; the sentence is not a test utterance
    text = "my son had been in the world center"
    for seed in range(3):
        rng = np.random.default_rng(seed)
        log_probs = peaky_log_probs(rng, alphabet, text, noise=1.2, peak=4.5)
        plain = BeamSearchDecoder(alphabet, beam_width=64).decode(log_probs)[0].text
        decoder = BeamSearchDecoder(alphabet, beam_width=64, scorer=scorer)
        fixed = decoder.decode(log_probs)[0].text
        # the noise misspells the acoustic-only result; the language model repairs it
        # (up to a stray apostrophe, which the synthetic noise can make likely)
        assert cer(text, fixed) <= 0.03 < cer(text, plain)
        if seed == 0:
            assert fixed == text


# -- hot-words -------------------------------------------------------------------------
def test_hotword_boost_is_per_character_and_withdrawn_when_broken(rng):
    alphabet = english()
    log_probs = peaky_log_probs(rng, alphabet, "cat sat", noise=0.1, peak=12.0)

    def decode(hotwords):
        decoder = BeamSearchDecoder(alphabet, beam_width=16, hotwords=hotwords)
        return decoder.decode(log_probs)[0]

    base = decode(None)
    assert base.text == "cat sat"
    whole = decode({"cat": 1.5})
    assert whole.text == "cat sat"
    assert whole.log_score - base.log_score == pytest.approx(3 * 1.5, abs=1e-3)
    phrase = decode({"cat sat": 0.5})
    assert phrase.log_score - base.log_score == pytest.approx(7 * 0.5, abs=1e-3)
    # "cats" is spelled up to "cat" then broken by the space; "ca" is broken by "t"
    for partial in ({"cats": 1.5}, {"ca": 1.5}, {"at": 1.5}):
        assert decode(partial).log_score == pytest.approx(base.log_score, abs=1e-3)


def test_hotword_changes_an_ambiguous_word(rng):
    alphabet = english()
    log_probs = peaky_log_probs(rng, alphabet, "cap", noise=0.0, peak=10.0)
    t, p = alphabet.encode("tp")
    # the frames of "p" now slightly prefer "t"
    log_probs[-4:-2, t] = log_probs[-4:-2, p] + 0.5
    log_probs = log_softmax(log_probs)
    assert BeamSearchDecoder(alphabet, beam_width=8).decode(log_probs)[0].text == "cat"
    boosted = BeamSearchDecoder(alphabet, beam_width=8, hotwords={"cap": 1.0})
    assert boosted.decode(log_probs)[0].text == "cap"


def test_a_thousand_hotwords_keep_results(rng, tiny_scorer):
    phrases = ["".join(rng.choice(list("abc"), size=6)) for _ in range(1000)]
    decoder = BeamSearchDecoder(
        SMALL, beam_width=8, scorer=tiny_scorer, hotwords=phrases
    )
    log_probs = random_log_probs(rng, 20, SMALL.n_classes)
    assert_same_search(decoder, log_probs, 4)


# -- n-best, confidences, timings, JSON ------------------------------------------------
def test_n_best_confidences(rng):
    log_probs = random_log_probs(rng, 20, SMALL.n_classes)
    results = BeamSearchDecoder(SMALL, beam_width=16).decode(log_probs, n_best=5)
    assert len(results) == 5
    assert len({r.text for r in results}) == 5
    assert sum(r.confidence for r in results) == pytest.approx(1.0, abs=1e-12)
    scores = [r.log_score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert [r.confidence for r in results] == sorted(
        (r.confidence for r in results), reverse=True
    )
    softmax = np.exp(np.asarray(scores) - max(scores))
    np.testing.assert_allclose([r.confidence for r in results], softmax / softmax.sum())
    single = BeamSearchDecoder(SMALL, beam_width=16).decode(log_probs)
    assert len(single) == 1 and single[0].confidence == 1.0


def test_token_and_word_timings():
    alphabet = Alphabet([" ", "a", "b"])
    blank = alphabet.blank
    a, b, space = 1, 2, 0
    path = [blank, a, a, blank, b, blank, space, space, a, blank, blank]
    log_probs = np.full((len(path), alphabet.n_classes), math.log(0.02 / 3))
    log_probs[np.arange(len(path)), path] = math.log(0.98)
    decoder = BeamSearchDecoder(alphabet, beam_width=8, frame_step_seconds=0.02)
    result = decoder.decode(log_probs.astype(np.float32))[0]
    assert result.text == "ab a"
    assert [token.frame for token in result.tokens] == [1, 4, 6, 8]
    for token in result.tokens:
        assert token.start_time == pytest.approx(token.frame * 0.02)
    first, second = result.words
    assert (first.word, second.word) == ("ab", "a")
    assert first.start_time == pytest.approx(0.02)
    assert first.duration == pytest.approx(0.12 - 0.02)  # to the space's start
    assert second.start_time == pytest.approx(0.16) and second.duration == 0.0
    assert first.confidence == pytest.approx(0.98, rel=1e-5)


def test_timings_are_monotone_on_noisy_input(rng):
    alphabet = english()
    log_probs = peaky_log_probs(
        rng, alphabet, "new home in the stars", noise=1.0, peak=5
    )
    decoder = BeamSearchDecoder(alphabet, beam_width=32, frame_step_seconds=0.03)
    for result in decoder.decode(log_probs, n_best=3):
        frames = [token.frame for token in result.tokens]
        assert frames == sorted(set(frames))
        assert all(0 <= frame < log_probs.shape[0] for frame in frames)
        starts = [word.start_time for word in result.words]
        assert starts == sorted(starts)
        for word in result.words:
            assert word.duration >= 0 and 0 < word.confidence <= 1
            assert round(word.start_time / 0.03, 6) == int(
                round(word.start_time / 0.03)
            )
        assert " ".join(word.word for word in result.words) == " ".join(
            result.text.split()
        )


def test_deepspeech_json_structure(rng):
    log_probs = peaky_log_probs(rng, english(), "we must find", noise=0.5)
    results = BeamSearchDecoder(english(), beam_width=8).decode(log_probs, n_best=2)
    document = json.loads(json.dumps(to_deepspeech_json(results)))
    assert list(document) == ["transcripts"] and len(document["transcripts"]) == 2
    first = document["transcripts"][0]
    assert set(first) == {"confidence", "words"}
    assert [w["word"] for w in first["words"]] == ["we", "must", "find"]
    assert all(set(w) == {"word", "start_time", "duration"} for w in first["words"])
    assert results[0].to_deepspeech_json()["transcripts"] == [first]


def test_viterbi_alignment_matches_reference(rng):
    if beam_module._compiled is None:
        pytest.skip("ctc_beam extension not built")
    for (T, L), fold in itertools.product([(1, 1), (6, 2), (30, 8), (30, 14)], [-1, 0]):
        log_probs = random_log_probs(rng, T, 5)
        labels = rng.integers(0, 4, size=L).astype(np.int32)
        try:
            want = viterbi_align_reference(log_probs, labels, 4, fold)
        except ValueError:
            with pytest.raises(ValueError):
                beam_module._compiled.viterbi_align(log_probs, labels, 4, fold)
            continue
        got = beam_module._compiled.viterbi_align(log_probs, labels, 4, fold)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
    with pytest.raises(ValueError):
        beam_module.align(random_log_probs(rng, 2, 5), np.array([1, 1], np.int32), 4)
    # a folded space frame (class 0) before the text aligns like a blank
    frames = np.full((3, 5), -np.inf, np.float32)
    frames[0, 0] = frames[1, 1] = frames[2, 4] = 0.0
    with pytest.raises(ValueError):
        beam_module.align(frames, np.array([1], np.int32), 4)
    assert beam_module.align(frames, np.array([1], np.int32), 4, 0)[0].tolist() == [1]
    ref = viterbi_align_reference(frames, np.array([1], np.int32), 4, 0)
    assert ref[0].tolist() == [1]


# -- streaming and batches -------------------------------------------------------------
def test_stream_equals_decoding_at_once(rng, tiny_scorer):
    decoder = BeamSearchDecoder(
        SMALL, beam_width=12, scorer=tiny_scorer, hotwords=["cab"]
    )
    log_probs = peaky_log_probs(rng, SMALL, "ab cab ba abc", noise=1.5, peak=4.0)
    whole = decoder.decode(log_probs, n_best=3)
    stream = decoder.stream()
    cuts = np.sort(rng.choice(np.arange(1, len(log_probs)), size=5, replace=False))
    for chunk in np.split(log_probs, cuts):
        stream.feed(chunk)
        partial = stream.intermediate()
        assert len(partial) == 1 and isinstance(partial[0].text, str)
    stream.feed(log_probs[:0])
    assert stream.n_frames == len(log_probs)
    final = stream.finish(n_best=3)
    assert final == whole
    with pytest.raises(DecoderError, match="finished"):
        stream.feed(log_probs)


def test_batch_equals_one_by_one(rng, tiny_scorer):
    decoder = BeamSearchDecoder(SMALL, beam_width=8, scorer=tiny_scorer)
    batch = [random_log_probs(rng, T, SMALL.n_classes) for T in (0, 5, 17, 40, 23)]
    expected = [decoder.decode(item, n_best=2) for item in batch]
    assert decoder.decode_batch(batch, n_best=2, num_threads=3) == expected
    assert decoder.decode_batch(batch, n_best=2, num_threads=1) == expected
    bad = batch[:2] + [np.zeros((3, 2), np.float32)]
    with pytest.raises(DecoderError, match="utterance 2"):
        decoder.decode_batch(bad)


@needs_compiled
def test_lm_cache_is_kept_between_utterances_without_changing_results(rng, tiny_scorer):
    """The decoder lends one LM cache to its searches in turn: the second pass over the
    same utterances asks the LM nothing, and every result equals a fresh search's,
    also with a cache so small that it keeps being emptied."""
    decoder = BeamSearchDecoder(SMALL, beam_width=8, scorer=tiny_scorer)
    batch = [random_log_probs(rng, T, SMALL.n_classes) for T in (5, 17, 40, 23)]
    fresh = []
    for item in batch:
        search = decoder.new_search()
        search.feed(item)
        fresh.append(search.best(3))

    def plain(best):
        return [(tuple(labels), score) for labels, score in best]

    assert [decoder.decode(item, n_best=3) for item in batch] == [
        decoder._results(best, item) for best, item in zip(fresh, batch)
    ]
    cache = decoder._lend_lm_cache()
    assert len(cache) > 0  # the answers outlived the utterances
    for item, want in zip(batch, fresh):
        search = decoder.new_search(lm_cache=cache)
        search.feed(item)
        assert plain(search.best(3)) == plain(want)
        assert search.lm_misses == 0
    tiny = beam_module._compiled.LmCache(max_entries=2)
    for item, want in zip(batch, fresh):
        search = decoder.new_search(lm_cache=tiny)
        search.feed(item)
        assert plain(search.best(3)) == plain(want)
        assert len(tiny) <= 2
    with pytest.raises(ValueError, match="max_entries"):
        beam_module._compiled.LmCache(max_entries=0)


@needs_compiled
def test_unknown_words_share_one_lm_query_per_history(rng, tiny_scorer):
    """With a vocabulary that lists every LM word, words outside it are KenLM's <unk>:
    the search asks the LM once per history for all of them, with the same results
    as asking about each word."""
    batch = [random_log_probs(rng, T, SMALL.n_classes) for T in (9, 30, 60)]
    results, misses = {}, {}
    for covers in (False, True):
        decoder = BeamSearchDecoder(
            SMALL, beam_width=10, scorer=with_covering_vocabulary(tiny_scorer, covers)
        )
        results[covers], misses[covers] = [], 0
        for item in batch:
            search = decoder.new_search()
            search.feed(item)
            results[covers].append(
                [(tuple(labels), score) for labels, score in search.best(10)]
            )
            misses[covers] += search.lm_misses
    assert results[True] == results[False]
    assert misses[True] < misses[False]
    # KenLM's own answer for a word it does not know is the <unk> one
    unknown = tiny_scorer.unknown_word_log_prob(0)
    assert tiny_scorer.word_log_prob(0, "bcb") == unknown
    assert tiny_scorer.word_log_prob(0, "ab") != unknown


def test_vocabulary_covers_the_lm_only_when_read_from_the_lm():
    from_arpa = Scorer.from_file(TINY_ARPA)
    assert from_arpa.vocabulary_covers_lm
    # a vocabulary given by the caller may leave LM words out: no shortcut
    narrower = Scorer.from_file(TINY_ARPA, vocabulary=["ab"])
    assert not narrower.vocabulary_covers_lm
    assert not Scorer(from_arpa.language_model, 1.0, 0.0).vocabulary_covers_lm


@pytest.mark.parametrize("with_lm", [False, True])
def test_decode_text_is_the_best_transcripts_text(rng, tiny_scorer, with_lm):
    decoder = BeamSearchDecoder(
        SMALL, beam_width=8, scorer=tiny_scorer if with_lm else None
    )
    for T in (0, 1, 9, 40):
        log_probs = random_log_probs(rng, T, SMALL.n_classes)
        assert decoder.decode_text(log_probs) == decoder.decode(log_probs)[0].text
    peaky = peaky_log_probs(rng, SMALL, "ab ba cab", noise=0.1, peak=12.0)
    assert decoder.decode_text(peaky) == "ab ba cab"
    with pytest.raises(DecoderError, match="NaN"):
        decoder.decode_text(np.full((3, SMALL.n_classes), np.nan, np.float32))


# -- input checks ----------------------------------------------------------------------
def test_empty_input_gives_an_empty_transcript(tiny_scorer):
    for scorer in (None, tiny_scorer):
        decoder = BeamSearchDecoder(SMALL, scorer=scorer)
        (result,) = decoder.decode(np.zeros((0, SMALL.n_classes), np.float32), n_best=3)
        assert result.text == "" and result.words == [] and result.confidence == 1.0
    # with an LM the empty sentence still pays ln P(</s> | <s>)
    assert result.log_score == pytest.approx(
        tiny_scorer.alpha * tiny_scorer.end_log_prob(0), abs=1e-9
    )


def _frames(values):
    return np.asarray(values, dtype=np.float32)


@pytest.mark.parametrize(
    ("log_probs", "message"),
    [
        (np.zeros((3,), np.float32), "shape"),
        (np.zeros((3, 4), np.float32), "4 classes"),
        (np.zeros((2, 5), np.int32), "floating"),
        (_frames([[0, np.nan, -1, -1, -1]]), "NaN"),
        (_frames([[np.inf, -1, -1, -1, -1]]), r"\+inf"),
        (_frames([[-np.inf] * 5]), "frame 0"),
        (_frames([[-1, -1, -1, -1, -1], [0.2, 0.2, 0.2, 0.2, 0.2]]), "frame 1"),
        ("not an array", "shape"),
    ],
)
def test_bad_input_raises_decoder_error(log_probs, message):
    with pytest.raises(DecoderError, match=message):
        BeamSearchDecoder(SMALL).decode(log_probs)


def test_float64_and_non_contiguous_input_are_accepted(rng):
    log_probs = random_log_probs(rng, 12, SMALL.n_classes)
    decoder = BeamSearchDecoder(SMALL, beam_width=6)
    expected = decoder.decode(log_probs)
    assert decoder.decode(log_probs.astype(np.float64)) == expected
    wide = np.zeros((12, 2 * SMALL.n_classes), np.float32)
    wide[:, ::2] = log_probs
    assert decoder.decode(wide[:, ::2]) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"beam_width": 0},
        {"cutoff_top_n": 0},
        {"cutoff_prob": 0.0},
        {"cutoff_prob": 1.5},
        {"frame_step_seconds": 0.0},
        {"blank": 5},
        {"scorer": "lm.arpa"},
    ],
)
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        BeamSearchDecoder(SMALL, **options)


def test_bad_n_best_and_hotwords():
    decoder = BeamSearchDecoder(SMALL)
    with pytest.raises(DecoderError, match="n_best"):
        decoder.decode(np.zeros((0, 5), np.float32), n_best=0)
    with pytest.raises(DecoderError, match="hot-word"):
        BeamSearchDecoder(SMALL, hotwords={"abc": 1.0, "xyz": 1.0})


@needs_compiled
def test_search_releases_the_gil(rng):
    """Another Python thread keeps running while a long search is fed."""
    import threading
    import time

    alphabet = english()
    log_probs = random_log_probs(rng, 400, alphabet.n_classes, scale=1.0)
    search = BeamSearchDecoder(alphabet, beam_width=256).new_search()
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (search.feed(log_probs), finished.set()))
    start = last = time.perf_counter()
    worker.start()
    longest_gap = 0.0
    while not finished.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
    worker.join()
    duration = time.perf_counter() - start
    assert duration > 0.05  # long enough for a held GIL to show as one long gap
    # a search holding the GIL would stall this loop for its whole duration
    assert longest_gap < 0.5 * duration
