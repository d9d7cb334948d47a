"""KenLM adapter for the prefix beam search: natural-log word scores, cached by state.

The beam search asks the language model for ``ln P(word | history)`` only when a word
completes (at a space, and for the last word at the end of the utterance, followed by
``</s>``). Histories are KenLM states; each distinct state gets a small integer id so
that the compiled search can carry it in its prefix nodes and cache
``(state id, word)``.

KenLM reports log10 probabilities; :func:`log10_to_ln` is the one place they become
natural logs (``npspeech.lm`` imports it rather than redefining it).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import kenlm

from .. import constants
from ..errors import ScorerError

# ln(10): multiply a log10 score by this to get a natural-log score.
LOG10_TO_LN = math.log(10.0)

# Words of an ARPA file's 1-grams that are markers, not vocabulary.
UNKNOWN_WORD = "<unk>"  # KenLM's id 0: where every word outside its vocabulary maps
_MARKERS = frozenset({"<s>", "</s>", UNKNOWN_WORD})


def log10_to_ln(value: float) -> float:
    """Natural log of a probability given as KenLM's log10."""
    return value * LOG10_TO_LN


# One capture of file descriptor 2 at a time: it is the whole process's.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[list[str]]:
    """Send what C code writes to file descriptor 2 into a list, while inside.

    KenLM writes its loading chatter ("Loading the LM will be faster if you build a
    binary file.", the file name, a bar of 100 progress stars) with C++'s ``std::cerr``,
    which Python's ``sys.stderr`` does not see, so only redirecting the descriptor
    silences it. The list receives the captured text when the block ends, so that a
    caller can show it after a failure. Where descriptor 2 cannot be duplicated (a
    process started without one), nothing is captured.
    """
    captured: list[str] = []
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            yield captured
            return
        try:
            with tempfile.TemporaryFile() as sink:
                sys.stderr.flush()  # Python's buffered text goes out before the swap
                os.dup2(sink.fileno(), 2)
                try:
                    yield captured
                finally:
                    os.dup2(saved, 2)
                    sink.seek(0)
                    captured.append(sink.read().decode("utf-8", errors="replace"))
        finally:
            os.close(saved)


def load_language_model(path: str | os.PathLike) -> kenlm.Model:
    """``kenlm.Model(path)`` without KenLM's loading chatter on the terminal.

    What KenLM prints while it loads (progress, the advice to build a binary) is
    dropped; when loading fails, it is written to ``sys.stderr`` after all, since it may
    say why.

    Raises
    ------
    ScorerError
        Naming the file when KenLM cannot read it.
    """
    with _native_stderr_captured() as captured:
        try:
            model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as error:
            failure = error
        else:
            failure = None
    if failure is not None:
        if captured and captured[0].strip():
            sys.stderr.write(captured[0])
        raise ScorerError(f"{path}: KenLM cannot read it ({failure})") from None
    return model


class Scorer:
    """A KenLM model with the decoder's weights and a vocabulary.

    Parameters
    ----------
    language_model
        A loaded ``kenlm.Model`` (ARPA, KenLM binary or DeepSpeech ``.scorer``).
    alpha
        Weight of the language model: a completed word adds ``alpha * ln P(word | h)``.
    beta
        Bonus (natural log) per completed word, balancing the LM's bias to short texts.
    vocabulary
        The words the LM knows. It builds the decoder's vocabulary trie: every letter of
        a word that no vocabulary word starts with costs ``oov_penalty``. None (unknown
        vocabulary) switches that check off.
    oov_penalty
        Natural-log penalty per letter spelled outside the vocabulary trie, <= 0;
        ``-inf`` allows vocabulary words only (as DeepSpeech); None switches the
        vocabulary check off.
    oov_word_penalty
        Natural-log penalty added once per word outside the vocabulary, <= 0: at the
        letter where it leaves the vocabulary trie (so short out-of-vocabulary
        fragments are expensive from their first letter, where the per-letter penalty
        alone favours run-on spellings), or where it ends when it stops on a prefix of
        vocabulary words that is no word itself (a truncation such as "acros", which
        no letter penalty reaches).
    unk_score
        Natural-log score given to a word the LM does not know instead of KenLM's
        ``<unk>`` probability; None keeps KenLM's.
    end_of_sentence
        Score ``</s>`` after the last word at the end of the utterance (as DeepSpeech).
    vocabulary_covers_lm
        True when ``vocabulary`` lists every word the LM knows (``from_file`` sets it
        when the vocabulary was read from the LM file itself). The decoder then scores
        every word outside the vocabulary with one LM query per history: KenLM maps
        all unknown words to ``<unk>``, so their scores and next states are the same.

    Notes
    -----
    ``alpha`` and ``beta`` are read when a search starts, so a tuner may change them
    between decodes; the cached KenLM answers do not depend on them.
    """

    def __init__(
        self,
        language_model: kenlm.Model,
        alpha: float,
        beta: float,
        vocabulary: Iterable[str] | None = None,
        oov_penalty: float | None = constants.OOV_PENALTY,
        oov_word_penalty: float = constants.OOV_WORD_PENALTY,
        unk_score: float | None = None,
        end_of_sentence: bool = True,
        vocabulary_covers_lm: bool = False,
    ):
        if not hasattr(language_model, "BaseScore"):
            raise ScorerError(
                "language_model must be a kenlm.Model, "
                f"got {type(language_model).__name__}"
            )
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not math.isfinite(value):
                raise ScorerError(f"{name} must be finite, got {value}")
        if oov_penalty is not None and (math.isnan(oov_penalty) or oov_penalty > 0):
            raise ScorerError(f"oov_penalty must be <= 0 (or None), got {oov_penalty}")
        if math.isnan(oov_word_penalty) or oov_word_penalty > 0:
            raise ScorerError(f"oov_word_penalty must be <= 0, got {oov_word_penalty}")
        if unk_score is not None and not math.isfinite(unk_score):
            raise ScorerError(f"unk_score must be finite or None, got {unk_score}")
        self.language_model = language_model
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.vocabulary = None if vocabulary is None else tuple(vocabulary)
        self.oov_penalty = None if oov_penalty is None else float(oov_penalty)
        self.oov_word_penalty = float(oov_word_penalty)
        self.unk_score = None if unk_score is None else float(unk_score)
        self.end_of_sentence = bool(end_of_sentence)
        self.vocabulary_covers_lm = (
            bool(vocabulary_covers_lm) and vocabulary is not None
        )
        start = kenlm.State()
        language_model.BeginSentenceWrite(start)
        # state id -> kenlm.State; id 0 is the start of a sentence
        self._states: list[kenlm.State] = [start]
        self._state_ids: dict[kenlm.State, int] = {start: 0}
        self._word_cache: dict[tuple[int, str], tuple[float, int]] = {}
        self._end_cache: dict[int, float] = {}
        # Batch decoding calls in from several threads; a miss writes the shared tables.
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        alpha: float | None = None,
        beta: float | None = None,
        **options,
    ) -> Scorer:
        """Load an ARPA file, KenLM binary, DeepSpeech ``.scorer`` or npspeech package.

        ``alpha``/``beta`` default to the file's, then to DeepSpeech's released values
        (``constants.DEFAULT_ALPHA``/``DEFAULT_BETA``). Other keywords go to
        ``__init__``.

        Raises
        ------
        ScorerError
            Naming the file when it is missing or KenLM cannot read it.
        """
        path = Path(path)
        if not path.is_file():
            raise ScorerError(f"{path}: scorer file not found")
        file_alpha = file_beta = None
        vocabulary = None
        covers_lm = False
        model_path = path
        try:
            from ..lm.package import open_scorer
        except ImportError:
            open_scorer = None
        if open_scorer is not None:
            package = open_scorer(path)
            file_alpha, file_beta = package.alpha, package.beta
            vocabulary = package.vocabulary
            covers_lm = package.vocabulary_is_the_lms
            model_path = Path(package.language_model_path)
        elif _looks_like_arpa(path):
            vocabulary = read_arpa_unigrams(path)
            covers_lm = True
        model = load_language_model(model_path)
        if "vocabulary" not in options:
            options["vocabulary"] = vocabulary
            options.setdefault("vocabulary_covers_lm", covers_lm)
        return cls(
            model,
            alpha=_first(alpha, file_alpha, constants.DEFAULT_ALPHA),
            beta=_first(beta, file_beta, constants.DEFAULT_BETA),
            **options,
        )

    # -- queries -----------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        """Number of distinct LM states seen so far."""
        return len(self._states)

    def word_log_prob(self, state_id: int, word: str) -> tuple[float, int]:
        """``ln P(word | state)`` and the id of the state after the word (cached).

        A word outside the LM gets ``unk_score`` when set, else KenLM's ``<unk>`` score.
        """
        key = (state_id, word)
        hit = self._word_cache.get(key)
        if hit is not None:
            return hit
        with self._lock:
            model = self.language_model
            after = kenlm.State()
            log10 = model.BaseScore(self._states[state_id], word, after)
            value = log10_to_ln(log10)
            if self.unk_score is not None and word not in model:
                value = self.unk_score
            result = (value, self._state_id(after))
            self._word_cache[key] = result
        return result

    def unknown_word_log_prob(self, state_id: int) -> tuple[float, int]:
        """``word_log_prob`` of every word the LM does not know (all are ``<unk>``)."""
        return self.word_log_prob(state_id, UNKNOWN_WORD)

    def end_log_prob(self, state_id: int) -> float:
        """``ln P(</s> | state)``, or 0 when ``end_of_sentence`` is off (cached)."""
        if not self.end_of_sentence:
            return 0.0
        hit = self._end_cache.get(state_id)
        if hit is not None:
            return hit
        with self._lock:
            after = kenlm.State()
            value = log10_to_ln(
                self.language_model.BaseScore(self._states[state_id], "</s>", after)
            )
            self._end_cache[state_id] = value
        return value

    def sentence_log_prob(self, text: str) -> float:
        """``ln P`` of a sentence, ``<s>`` to ``</s>`` (even if not end_of_sentence)."""
        state, total = 0, 0.0
        for word in text.split():
            value, state = self.word_log_prob(state, word)
            total += value
        after = kenlm.State()
        end = self.language_model.BaseScore(self._states[state], "</s>", after)
        return total + log10_to_ln(end)

    def _state_id(self, state: kenlm.State) -> int:
        """Id of ``state``, registering it when new (called under the lock)."""
        found = self._state_ids.get(state)
        if found is None:
            found = len(self._states)
            self._states.append(state)
            self._state_ids[state] = found
        return found


def read_arpa_unigrams(path: str | os.PathLike) -> tuple[str, ...]:
    """The words of an ARPA file's ``\\1-grams:``, less ``<s>``, ``</s>``, ``<unk>``.

    Raises
    ------
    ScorerError
        When the file has no 1-gram section.
    """
    words = []
    inside = False
    found = False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line == "\\1-grams:":
                inside = found = True
                continue
            if inside:
                if not line or line.startswith("\\"):
                    break
                fields = line.split()
                if len(fields) >= 2 and fields[1] not in _MARKERS:
                    words.append(fields[1])
    if not found:
        raise ScorerError(f"{path}: no \\1-grams: section (not an ARPA file)")
    return tuple(words)


def _looks_like_arpa(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(64)
    return head.lstrip().startswith(b"\\data\\")


def _first(*values):
    return next(value for value in values if value is not None)
