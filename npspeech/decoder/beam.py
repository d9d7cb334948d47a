"""CTC prefix beam search: the public API over the compiled ``csrc/ctc_beam.pyx``.

Input is what a model's log-softmax gives: per-frame natural-log probabilities, shape
``(T, V)``, float32 (other float dtypes are converted), with the blank at class
``V - 1`` unless told otherwise. This layer validates everything; the compiled core
trusts it.

Scores
------
A prefix's score is ``ln P_ctc`` (summed over its alignments) plus, when a
:class:`~npspeech.decoder.scorer.Scorer` is given, ``alpha * ln P_lm(word | history) +
beta`` for every completed word, where a word completes at a space and the last word at
the end of the utterance, followed by ``alpha * ln P_lm(</s> | history)``. Hot-words add
their boost per matched character (rules in :mod:`npspeech.decoder.hotwords`); each
letter spelled outside the scorer's vocabulary trie (and outside a hot-word) adds the
scorer's ``oov_penalty``, and a word outside the vocabulary adds its
``oov_word_penalty`` once: at the letter where it leaves the trie, or where it ends
when it stops on a prefix of vocabulary words that is no word itself ("acros"). With a
scorer, a space only ends a word: a space that would start the text or double another is
folded into the prefix like a blank.

Results
-------
``confidence`` of a candidate is its posterior over the returned n-best: the softmax of
their final scores (1.0 for a single best). Token timings come from the best CTC
alignment of the candidate's labels to the frames (forced Viterbi alignment, computed
after the search): a token's ``frame`` is the first frame it occupies on that alignment,
``start_time = frame * frame_step_seconds``. Word ``start_time`` is its first token's;
``duration`` runs to the start of the token that ends it (the following space, or the
word's own last letter at the end of the text), as DeepSpeech's client computes it. A
word's ``confidence`` is the geometric mean, over its letters, of each letter's largest
per-frame probability on the alignment.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import constants
from .._native import load_extension
from ..alphabet import Alphabet
from ..errors import AlphabetError, ConfigError, DecoderError
from ._beam_ref import ReferenceBeamSearch, viterbi_align_reference
from .hotwords import LabelTrie, empty_trie, hotword_trie, vocabulary_trie
from .results import (  # noqa: F401 - re-exported: the decoder's result types
    CandidateTranscript,
    Token,
    Word,
    make_candidate,
    to_deepspeech_json,
)
from .scorer import Scorer

_compiled = load_extension("ctc_beam")

# Largest log-probability accepted: log-softmax gives <= 0 up to float32 rounding.
_LOG_PROB_CEILING = 1e-3
# The LM sees words as one byte per class id.
_MAX_CLASSES_WITH_LM = 256


class _LanguageModelBridge:
    """What the compiled search calls on an LM-cache miss: ids -> text -> KenLM."""

    def __init__(self, scorer: Scorer, class_text: Sequence[str]):
        self.scorer = scorer
        self.class_text = list(class_text)

    def score_word(self, state: int, word: bytes) -> tuple[float, int]:
        text = "".join([self.class_text[c] for c in word])
        return self.scorer.word_log_prob(state, text)

    def score_unknown(self, state: int) -> tuple[float, int]:
        return self.scorer.unknown_word_log_prob(state)

    def score_end(self, state: int) -> float:
        return self.scorer.end_log_prob(state)


class BeamSearchDecoder:
    """CTC prefix beam search with an optional KenLM scorer and hot-words.

    Parameters
    ----------
    alphabet
        The labels; the model has ``alphabet.n_classes`` outputs (labels plus blank).
    beam_width
        Prefixes kept per frame.
    cutoff_top_n
        Classes considered per frame (the likeliest ones).
    cutoff_prob
        Among those, the fewest whose probabilities sum to this; 1.0 switches it off.
    scorer
        A :class:`~npspeech.decoder.scorer.Scorer`, or None for acoustic scores only.
    hotwords
        ``{phrase: boost per character}`` or a list of phrases (``HOTWORD_BOOST`` each).
    frame_step_seconds
        Time between model output frames (0.02 s for DeepSpeech models).
    blank
        Class id of the blank; None means the last class, as in DeepSpeech. Labels fill
        the other classes in order.

    Raises
    ------
    ConfigError
        An option outside its range.
    DecoderError
        A hot-word the alphabet cannot spell.
    """

    def __init__(
        self,
        alphabet: Alphabet,
        beam_width: int = constants.BEAM_WIDTH,
        cutoff_top_n: int = constants.CUTOFF_TOP_N,
        cutoff_prob: float = constants.CUTOFF_PROB,
        scorer: Scorer | None = None,
        hotwords: Mapping[str, float] | Sequence[str] | None = None,
        frame_step_seconds: float = constants.FRAME_STEP_SECONDS,
        blank: int | None = None,
    ):
        if not isinstance(alphabet, Alphabet):
            raise ConfigError(
                f"alphabet must be an Alphabet, got {type(alphabet).__name__}"
            )
        n_classes = alphabet.n_classes
        blank = n_classes - 1 if blank is None else blank
        _check_int("beam_width", beam_width, 1)
        _check_int("cutoff_top_n", cutoff_top_n, 1)
        _check_int("blank", blank, 0)
        if blank >= n_classes:
            raise ConfigError(f"blank {blank} is outside the {n_classes} classes")
        if not 0.0 < cutoff_prob <= 1.0:
            raise ConfigError(f"cutoff_prob must be in (0, 1], got {cutoff_prob}")
        if not (math.isfinite(frame_step_seconds) and frame_step_seconds > 0):
            raise ConfigError(
                f"frame_step_seconds must be > 0, got {frame_step_seconds}"
            )
        if scorer is not None and not isinstance(scorer, Scorer):
            raise ConfigError(f"scorer must be a Scorer, got {type(scorer).__name__}")
        if scorer is not None and n_classes > _MAX_CLASSES_WITH_LM:
            raise ConfigError(
                f"a scorer needs at most {_MAX_CLASSES_WITH_LM} classes, "
                f"got {n_classes}"
            )
        self.alphabet = alphabet
        self.beam_width = int(beam_width)
        self.cutoff_top_n = int(cutoff_top_n)
        self.cutoff_prob = float(cutoff_prob)
        self.scorer = scorer
        self.frame_step_seconds = float(frame_step_seconds)
        self.blank = int(blank)
        self.n_classes = n_classes
        # class id -> label text ("" for the blank), and label id -> class id
        self._label_class = np.asarray(
            [k for k in range(n_classes) if k != blank], dtype=np.int32
        )
        self._class_text = [""] * n_classes
        for label_id, class_id in enumerate(self._label_class):
            self._class_text[class_id] = alphabet.labels[label_id]
        space = alphabet.space
        self.space = -1 if space is None else int(self._label_class[space])
        self.hotwords = empty_trie() if not hotwords else self._hotword_trie(hotwords)
        self.vocabulary = empty_trie()
        self._use_vocabulary = False
        if scorer is not None and scorer.vocabulary is not None:
            if scorer.oov_penalty is not None:
                words = vocabulary_trie(alphabet, scorer.vocabulary)
                self.vocabulary = self._to_classes(words)
                self._use_vocabulary = True
        self._bridge = (
            None if scorer is None else _LanguageModelBridge(scorer, self._class_text)
        )
        # LM caches not in use, lent to one search at a time (see _lend_lm_cache)
        self._idle_lm_caches: list[Any] = []
        self._lm_cache_lock = threading.Lock()

    # -- public API --------------------------------------------------------------------
    def decode(
        self, log_probs: np.ndarray, n_best: int = 1
    ) -> list[CandidateTranscript]:
        """Decode one utterance.

        Parameters
        ----------
        log_probs : array, shape (T, V), float
            Per-frame natural-log class probabilities (log-softmax output). T may be 0.
        n_best : int
            How many transcripts to return (fewer when the beam holds fewer).

        Returns
        -------
        list of CandidateTranscript
            Best first; confidences sum to 1.

        Raises
        ------
        DecoderError
            Wrong shape or dtype, NaN or +inf, a frame with no finite value, positive
            values (probabilities or logits instead of log-probabilities), a bad
            ``n_best``.
        """
        log_probs = self.validate(log_probs)
        _check_n_best(n_best)
        return self._decode_checked(log_probs, n_best)

    def decode_text(self, log_probs: np.ndarray) -> str:
        """The best transcript's text alone.

        :meth:`decode` without the timings and confidences, so without the forced
        alignment they need (as DeepSpeech's ``stt`` beside ``sttWithMetadata``);
        the text is the same as ``decode(log_probs)[0].text``. Raises as
        :meth:`decode`.
        """
        log_probs = self.validate(log_probs)
        labels, _ = self._search(log_probs, 1)[0]
        return "".join([self._class_text[c] for c in labels.tolist()])

    def stream(self) -> BeamDecoderStream:
        """A stream: feed frames chunk by chunk, ask for the current best, finish."""
        return BeamDecoderStream(self)

    def set_beam_width(self, beam_width: int) -> None:
        """Keep ``beam_width`` prefixes per frame in searches started from now on."""
        _check_int("beam_width", beam_width, 1)
        self.beam_width = int(beam_width)

    def set_hotwords(
        self, hotwords: Mapping[str, float] | Sequence[str] | None
    ) -> None:
        """Replace the hot-words of searches started from now on.

        The scorer, the vocabulary trie and the LM caches are kept (the cached KenLM
        answers do not depend on hot-words). Raises :class:`DecoderError` for a
        hot-word the alphabet cannot spell, leaving the old ones in place.
        """
        self.hotwords = empty_trie() if not hotwords else self._hotword_trie(hotwords)

    def set_scorer_weights(self, alpha: float, beta: float) -> None:
        """Set the scorer's ``alpha`` (LM weight) and ``beta`` (word bonus).

        Searches started from now on use them; the LM caches stay valid.

        Raises
        ------
        ConfigError
            Without a scorer, or for a weight that is not a finite number.
        """
        if self.scorer is None:
            raise ConfigError("alpha and beta need a scorer; enable one first")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating, np.integer))
                or not math.isfinite(value)
            ):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        self.scorer.alpha = float(alpha)
        self.scorer.beta = float(beta)

    def decode_batch(
        self,
        batch: Sequence[np.ndarray],
        n_best: int = 1,
        num_threads: int | None = None,
    ) -> list[list[CandidateTranscript]]:
        """Decode many utterances on a thread pool (the search runs without the GIL).

        Parameters
        ----------
        batch : sequence of arrays, each shape (T_i, V), float
            One log-probability matrix per utterance.
        n_best : int
            Transcripts per utterance.
        num_threads : int, optional
            Worker threads; default ``os.cpu_count()``.

        Returns
        -------
        list of list of CandidateTranscript
            In the order of ``batch``.

        Raises
        ------
        DecoderError
            Naming the index of the first bad utterance.
        """
        _check_n_best(n_best)
        checked = []
        for index, log_probs in enumerate(batch):
            try:
                checked.append(self.validate(log_probs))
            except DecoderError as error:
                raise DecoderError(f"utterance {index}: {error}") from None
        workers = num_threads if num_threads is not None else (os.cpu_count() or 1)
        if not isinstance(workers, int) or workers < 1:
            raise DecoderError(
                f"num_threads must be a positive integer, got {num_threads}"
            )
        if workers == 1 or len(checked) <= 1:
            return [self._decode_checked(item, n_best) for item in checked]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(
                pool.map(lambda item: self._decode_checked(item, n_best), checked)
            )

    def validate(self, log_probs: np.ndarray) -> np.ndarray:
        """Check ``log_probs`` and return it as C-contiguous float32 of shape (T, V)."""
        if not isinstance(log_probs, np.ndarray):
            try:
                log_probs = np.asarray(log_probs)
            except (TypeError, ValueError) as error:
                raise DecoderError(f"log_probs is not an array: {error}") from None
        if log_probs.ndim != 2:
            raise DecoderError(
                f"log_probs must have shape (T, {self.n_classes}), "
                f"got {log_probs.shape}"
            )
        if log_probs.shape[1] != self.n_classes:
            raise DecoderError(
                f"log_probs has {log_probs.shape[1]} classes per frame, but the "
                f"alphabet has {self.n_classes} (its {self.alphabet.size} labels and "
                "the blank)"
            )
        if not np.issubdtype(log_probs.dtype, np.floating):
            raise DecoderError(
                f"log_probs must be floating point, got {log_probs.dtype}"
            )
        log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
        if log_probs.shape[0] == 0:
            return log_probs
        bad = np.isnan(log_probs) | (log_probs == np.inf)
        if bad.any():
            frame, label = np.argwhere(bad)[0]
            raise DecoderError(
                f"log_probs[{frame}, {label}] is {log_probs[frame, label]}: NaN and "
                "+inf are not log-probabilities"
            )
        row_max = log_probs.max(axis=1)  # (T,)
        if (row_max == -np.inf).any():
            frame = int(np.flatnonzero(row_max == -np.inf)[0])
            raise DecoderError(f"frame {frame} gives every class probability 0 (-inf)")
        if (row_max > _LOG_PROB_CEILING).any():
            frame = int(np.flatnonzero(row_max > _LOG_PROB_CEILING)[0])
            raise DecoderError(
                f"frame {frame} has a log-probability of {row_max[frame]:.4g} > 0: "
                "pass natural-log probabilities (log-softmax), not probabilities or "
                "logits"
            )
        return log_probs

    def new_search(self, reference: bool = False, lm_cache: Any = None):
        """A fresh search: compiled, or the Python oracle (when asked or not built).

        ``lm_cache`` (compiled search only): an ``LmCache`` that no other search is
        using; by default the search gets its own.
        """
        arguments = dict(
            n_classes=self.n_classes,
            blank=self.blank,
            space=self.space,
            beam_width=self.beam_width,
            cutoff_top_n=self.cutoff_top_n,
            cutoff_prob=self.cutoff_prob,
            lm=self._bridge,
            alpha=0.0 if self.scorer is None else self.scorer.alpha,
            beta=0.0 if self.scorer is None else self.scorer.beta,
            oov_penalty=_oov_penalty(self.scorer),
            oov_word_penalty=_oov_word_penalty(self.scorer),
            use_vocabulary=self._use_vocabulary,
        )
        if reference or _compiled is None:
            return ReferenceBeamSearch(
                **arguments, vocabulary=self.vocabulary, hotwords=self.hotwords
            )
        vocabulary, hot = self.vocabulary, self.hotwords
        return _compiled.PrefixBeamSearch(
            **arguments,
            vocab_start=vocabulary.child_start,
            vocab_label=vocabulary.child_label,
            vocab_node=vocabulary.child_node,
            vocab_terminal=vocabulary.terminal,
            hot_start=hot.child_start,
            hot_label=hot.child_label,
            hot_node=hot.child_node,
            hot_boost=hot.boost,
            hot_terminal=hot.terminal,
            lm_cache=lm_cache,
            # words outside a vocabulary that lists every LM word share one LM query
            # per history (the oracle asks KenLM each word, which gives the same)
            unknown_words_alike=self._use_vocabulary
            and self.scorer.vocabulary_covers_lm,
        )

    # -- internals ---------------------------------------------------------------------
    def _decode_checked(
        self, log_probs: np.ndarray, n_best: int
    ) -> list[CandidateTranscript]:
        return self._results(self._search(log_probs, n_best), log_probs)

    def _search(
        self, log_probs: np.ndarray, n_best: int
    ) -> list[tuple[np.ndarray, float]]:
        """The ``n_best`` best ``(class ids, final score)`` of validated log-probs."""
        cache = self._lend_lm_cache()
        try:
            search = self.new_search(lm_cache=cache)
            search.feed(log_probs)
            return _best(search, n_best)
        finally:
            self._give_back_lm_cache(cache)

    def _lend_lm_cache(self) -> Any:
        """An idle LM cache (a new one if all are lent), or None without an LM.

        The caches keep KenLM's answers from one utterance to the next; each serves
        one search at a time, so ``decode_batch``'s threads (or callers' own threads)
        each get their own.
        """
        if self._bridge is None or _compiled is None:
            return None
        with self._lm_cache_lock:
            if self._idle_lm_caches:
                return self._idle_lm_caches.pop()
        return _compiled.LmCache()

    def _give_back_lm_cache(self, cache: Any) -> None:
        if cache is not None:
            with self._lm_cache_lock:
                self._idle_lm_caches.append(cache)

    def _results(
        self, ranked: list[tuple[np.ndarray, float]], log_probs: np.ndarray
    ) -> list[CandidateTranscript]:
        """Turn ``(class ids, final score)`` pairs into transcripts with timings."""
        scores = np.asarray([score for _, score in ranked], dtype=np.float64)
        confidences = np.exp(scores - scores.max())
        confidences /= confidences.sum()
        return [
            self._candidate(labels, float(score), float(confidence), log_probs)
            for (labels, score), confidence in zip(ranked, confidences, strict=True)
        ]

    def _candidate(
        self, labels: np.ndarray, score: float, confidence: float, log_probs: np.ndarray
    ) -> CandidateTranscript:
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        fold_space = self.space if self.scorer is not None else -1
        frames, token_log_probs = align(log_probs, labels, self.blank, fold_space)
        return make_candidate(
            labels,
            frames,
            token_log_probs,
            self._class_text,
            self.space,
            self.frame_step_seconds,
            confidence,
            score,
        )

    def _hotword_trie(self, hotwords) -> LabelTrie:
        try:
            return self._to_classes(hotword_trie(self.alphabet, hotwords))
        except AlphabetError as error:
            raise DecoderError(f"hot-word cannot be spelled: {error}") from None

    def _to_classes(self, trie: LabelTrie) -> LabelTrie:
        """A label-id trie moved to class ids (they differ unless blank is last)."""
        # label -> class is increasing, so each node's edges stay sorted
        return LabelTrie(
            child_start=trie.child_start,
            child_label=np.ascontiguousarray(self._label_class[trie.child_label]),
            child_node=trie.child_node,
            boost=trie.boost,
            terminal=trie.terminal,
        )


def _best(search: Any, n_best: int) -> list[tuple[np.ndarray, float]]:
    """A search's ``n_best`` best ``(class ids, final score)``, never none."""
    best = search.best(n_best)
    if not best:  # every frame keeps a finite path, so the beam is never empty
        raise DecoderError("internal error: the beam search kept no prefix")
    return best


class BeamDecoderStream:
    """Incremental decoding: ``finish`` gives what decoding all frames at once gives.

    Created by :meth:`BeamSearchDecoder.stream`. Work per :meth:`feed` is proportional
    to the frames fed. The frames are kept (float32, T x V, 116 bytes a frame for 29
    classes) because the word timings align the final transcript to all of them;
    :meth:`intermediate_text` and :meth:`finish_text` give the text without that
    alignment. The stream borrows one of the decoder's LM caches and gives it back
    when it finishes (or is closed), so consecutive streams share KenLM's answers.
    """

    def __init__(self, decoder: BeamSearchDecoder):
        self.decoder = decoder
        self._lm_cache = decoder._lend_lm_cache()
        self._search = decoder.new_search(lm_cache=self._lm_cache)
        self._chunks: list[np.ndarray] = []
        self._n_frames = 0
        self._finished = False

    @property
    def n_frames(self) -> int:
        """Frames fed so far."""
        return self._n_frames

    @property
    def finished(self) -> bool:
        """True once :meth:`finish`, :meth:`finish_text` or :meth:`close` ran."""
        return self._finished

    def feed(self, log_probs: np.ndarray) -> None:
        """Advance by a chunk of frames, shape (T_chunk, V) (T_chunk may be 0)."""
        self._check_open()
        log_probs = self.decoder.validate(log_probs)
        if log_probs.shape[0] == 0:
            return
        self._search.feed(log_probs)
        self._chunks.append(log_probs)
        self._n_frames += log_probs.shape[0]

    def intermediate_text(self) -> str:
        """The current best text, as if the utterance ended now, without timings.

        Costs the ranking of the beam only (no alignment over the frames so far), as
        DeepSpeech's ``intermediateDecode``.
        """
        self._check_open()
        labels, _ = _best(self._search, 1)[0]
        return "".join([self.decoder._class_text[c] for c in labels.tolist()])

    def intermediate(self, n_best: int = 1) -> list[CandidateTranscript]:
        """The current best transcripts, as if the utterance ended now."""
        self._check_open()
        _check_n_best(n_best)
        return self.decoder._results(_best(self._search, n_best), self._frames())

    def finish(self, n_best: int = 1) -> list[CandidateTranscript]:
        """The final transcripts; the stream accepts no more frames afterwards."""
        results = self.intermediate(n_best)
        self.close()
        return results

    def finish_text(self) -> str:
        """The final best text (``finish()[0].text`` without the alignment)."""
        text = self.intermediate_text()
        self.close()
        return text

    def close(self) -> None:
        """End the stream without a result, returning its LM cache to the decoder."""
        if not self._finished:
            self._finished = True
            self._chunks = []
            self.decoder._give_back_lm_cache(self._lm_cache)
            self._lm_cache = None

    def _check_open(self) -> None:
        if self._finished:
            raise DecoderError("this stream is finished; start a new one")

    def _frames(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros((0, self.decoder.n_classes), dtype=np.float32)
        if len(self._chunks) > 1:  # join once, so that repeated calls stay cheap
            self._chunks = [np.concatenate(self._chunks, axis=0)]
        return self._chunks[0]


def align(
    log_probs: np.ndarray, labels: np.ndarray, blank: int, fold_space: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Best CTC alignment of ``labels``: first frame and peak log-prob of each label.

    Parameters
    ----------
    log_probs : float32 array, shape (T, V)
    labels : int32 array, shape (L,)
    blank : int
    fold_space : int
        The space class when the search ran with a scorer (spaces that end no word
        count as blanks there), else -1.

    Returns
    -------
    frames : int32 array, shape (L,)
    token_log_probs : float64 array, shape (L,)
    """
    if _compiled is None:
        return viterbi_align_reference(log_probs, labels, blank, fold_space)
    return _compiled.viterbi_align(log_probs, labels, blank, fold_space)


def _oov_word_penalty(scorer: Scorer | None) -> float:
    if scorer is None or scorer.oov_penalty is None:
        return 0.0
    return scorer.oov_word_penalty


def _oov_penalty(scorer: Scorer | None) -> float:
    if scorer is None or scorer.oov_penalty is None:
        return 0.0
    return scorer.oov_penalty


def _check_int(name: str, value, minimum: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_n_best(n_best) -> None:
    if (
        isinstance(n_best, bool)
        or not isinstance(n_best, (int, np.integer))
        or n_best < 1
    ):
        raise DecoderError(f"n_best must be an integer >= 1, got {n_best!r}")
