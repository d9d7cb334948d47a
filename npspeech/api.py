"""The public model: DeepSpeech 0.9's Python API over an npspeech model file.

::

    import npspeech
    model = npspeech.Model("model.npz")           # loaded once
    model.enable_external_scorer("kenlm.scorer")  # the KenLM model is loaded once too
    text = model.stt("audio.wav")                  # a path, int16/float array or bytes
    meta = model.stt_with_metadata(signal, num_results=3)
    stream = model.create_stream()

One decoder, scorer and LM cache are kept by the model between calls; the setters
(scorer, alpha/beta, hot-words, beam width) change that decoder in place, so KenLM's
cached answers survive them.

Decoding semantics, as DeepSpeech's: every transcription runs the CTC prefix beam
search with DeepSpeech's settings (width 500, ``cutoff_top_n`` 40, ``cutoff_prob`` 1.0:
:data:`npspeech.constants.DS_BEAM_WIDTH` and its neighbours), with
the external scorer when one is enabled and on acoustic scores alone when none is, as
DeepSpeech's ``stt`` does without a scorer. Best-path (greedy) decoding, faster and
without an LM, is chosen with ``set_decoder(DecodeConfig(decoder="greedy"))``; the
DeepSpeech setters (``set_beam_width``, ``enable_external_scorer``, ``add_hot_word``)
go back to the beam search.

``Metadata.transcripts[i].confidence`` means what DeepSpeech means: the transcript's
summed log score (larger is better, not a probability). npspeech's normalised n-best
posterior is ``Metadata.transcripts[i].posterior`` and the ``confidence`` of the
:class:`~npspeech.decoder.results.CandidateTranscript` that ``transcribe_full``
returns.

Audio: a path (any rate, channels mixed down), bytes of 16-bit little-endian PCM, an
int16 array or a float array with samples in [-1, 1], at :attr:`Model.sample_rate`;
bytes or an array at another rate take ``sample_rate=`` and are resampled. Anything
that could be misread (a float array outside [-1, 1], a 2-D array, a list) raises
:class:`~npspeech.errors.AudioError`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from . import constants
from .config import DecodeConfig
from .decoder.results import Metadata
from .errors import ConfigError, DecoderError
from .inference import Model as _BaseModel
from .stream import Stream

__all__ = ["Model", "Stream", "Metadata", "transcribe"]


class Model(_BaseModel):
    """A model file loaded for transcription, with DeepSpeech 0.9's API.

    Parameters
    ----------
    model_path : str or path-like, optional
        An npspeech model file (``npspeech train`` writes them), or ``"bundled"`` /
        ``"bundled:NAME"``. Left out, the default bundled model (``npspeech models``)
        is loaded with its scorer enabled.
    backend : str, optional
        Kernel backend (``numpy``, ``numba``, ``cupy``); None for the default.

    Raises
    ------
    ModelFileError
        For a missing, truncated, foreign, newer or modified file.
    """

    def __init__(
        self, model_path: str | os.PathLike | None = None, backend: str | None = None
    ):
        from . import modelfile
        from .bundled import resolve_model

        path, bundled = resolve_model(None if model_path is None else str(model_path))
        loaded = modelfile.load(path)
        self._setup(loaded.network, loaded.features, loaded.alphabet, loaded.training)
        self.backend = backend
        if bundled is not None and bundled.scorer_path is not None:
            self.enable_external_scorer(bundled.scorer_path)

    def _setup(self, network, features, alphabet, training) -> None:
        super().__init__(network, features, alphabet, training)
        # DeepSpeech's decoder settings, not npspeech's faster defaults: this class
        # emulates DeepSpeech's API, so it searches as DeepSpeech does.
        self.decode_config = DecodeConfig(
            decoder="beam",
            beam_width=constants.DS_BEAM_WIDTH,
            cutoff_top_n=constants.DS_CUTOFF_TOP_N,
            cutoff_prob=constants.DS_CUTOFF_PROB,
        )
        self._scorer: Any = None  # the loaded Scorer, kept while enabled
        self._hotwords: dict[str, float] = {}

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, backend: str | None = None
    ) -> Model:
        """``Model(path, backend)``: the constructor under the base class's name."""
        return cls(path, backend=backend)

    @classmethod
    def from_network(
        cls, network, features, alphabet, training=None, backend=None
    ) -> Model:
        """A model from its parts (a network just trained, or built in a test)."""
        model = cls.__new__(cls)
        model._setup(network, features, alphabet, training)
        model.backend = backend
        return model

    # -- transcription -----------------------------------------------------------------
    def stt(self, audio: Any, sample_rate: int | None = None) -> str:
        """The best transcript's text (see the module docstring for ``audio``)."""
        from . import segment

        if segment.is_long(audio, self.sample_rate, sample_rate):
            return self.transcribe_full(audio, sample_rate=sample_rate)[0].text
        log_probs = self.utterance_log_probs(self.compute_features(audio, sample_rate))
        return self.decoder.decode_text(log_probs)

    def stt_with_metadata(
        self, audio: Any, num_results: int = 1, sample_rate: int | None = None
    ) -> Metadata:
        """The ``num_results`` best transcripts with tokens, timings and scores."""
        _check_count("num_results", num_results)
        return Metadata.from_candidates(
            self.transcribe_full(audio, n_best=num_results, sample_rate=sample_rate)
        )

    def create_stream(self) -> Stream:
        """A :class:`~npspeech.stream.Stream` decoding with the current settings.

        Raises
        ------
        ConfigError
            For a bidirectional (``ds2``) model, which cannot stream.
        """
        return Stream(self)

    # -- decoder settings --------------------------------------------------------------
    def set_decoder(self, config: DecodeConfig) -> None:
        """Use ``config`` from now on (its scorer is loaded now, once)."""
        super().set_decoder(config)
        self._scorer = getattr(self._decoder, "scorer", None)
        self._hotwords = _parse_pairs(config.hotwords)

    @property
    def beam_width(self) -> int:
        """Prefixes the beam search keeps per frame."""
        return int(self.decode_config.beam_width)

    def set_beam_width(self, beam_width: int) -> None:
        """Keep ``beam_width`` prefixes per frame (and use the beam search)."""
        if (
            isinstance(beam_width, bool)
            or not isinstance(beam_width, int)
            or beam_width < 1
        ):
            raise ConfigError(f"beam_width must be an integer >= 1, got {beam_width!r}")
        self._beam_decoder().set_beam_width(beam_width)
        self.decode_config = dataclasses.replace(
            self.decode_config, beam_width=int(beam_width)
        )

    def enable_external_scorer(self, scorer_path: str | os.PathLike) -> None:
        """Load a KenLM scorer (DeepSpeech ``.scorer``, npspeech package, ARPA or
        KenLM binary) and decode with it; its own alpha and beta apply.

        Raises
        ------
        ScorerError
            A missing or unreadable file (the current scorer stays in use).
        """
        from .decoder.scorer import Scorer

        scorer = Scorer.from_file(scorer_path)
        self._scorer = scorer
        self.decode_config = dataclasses.replace(
            self.decode_config,
            decoder="beam",
            scorer=str(scorer_path),
            alpha=None,
            beta=None,
        )
        self._rebuild()

    def disable_external_scorer(self) -> None:
        """Decode on acoustic scores alone (the beam search stays)."""
        self._scorer = None
        self.decode_config = dataclasses.replace(
            self.decode_config, scorer="", alpha=None, beta=None
        )
        self._rebuild()

    def set_scorer_alpha_beta(self, alpha: float, beta: float) -> None:
        """Set the LM weight ``alpha`` and the word bonus ``beta`` of the scorer.

        Raises
        ------
        ConfigError
            Without an enabled scorer, or for a weight that is not finite.
        """
        if self._scorer is None:
            raise ConfigError(
                "set_scorer_alpha_beta needs a scorer: call enable_external_scorer "
                "first"
            )
        self._beam_decoder().set_scorer_weights(alpha, beta)
        self.decode_config = dataclasses.replace(
            self.decode_config, alpha=float(alpha), beta=float(beta)
        )

    def add_hot_word(self, word: str, boost: float) -> None:
        """Boost ``word`` (a word or phrase) by ``boost`` per character; adding it
        again replaces its boost. A negative boost makes it less likely.

        Raises
        ------
        ConfigError
            An empty word or a boost that is not a finite number.
        DecoderError
            A word the alphabet cannot spell.
        """
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"hot-word must be a non-empty string, got {word!r}")
        if (
            isinstance(boost, bool)
            or not isinstance(boost, (int, float))
            or not math.isfinite(boost)
        ):
            raise ConfigError(
                f"hot-word {word!r}: boost must be a finite number, got {boost!r}"
            )
        for character in word:
            # normalising drops what the alphabet lacks; a hot-word must not shrink
            if not character.isspace() and not self.alphabet.normalize(character):
                raise DecoderError(
                    f"hot-word {word!r} cannot be spelled: {character!r} is not in "
                    "the alphabet"
                )
        self._set_hotwords({**self._hotwords, word: float(boost)})

    def erase_hot_word(self, word: str) -> None:
        """Forget the hot-word ``word``.

        Raises
        ------
        ConfigError
            When ``word`` is not a hot-word.
        """
        if word not in self._hotwords:
            raise ConfigError(f"{word!r} is not a hot-word")
        self._set_hotwords({k: v for k, v in self._hotwords.items() if k != word})

    def clear_hot_words(self) -> None:
        """Forget every hot-word."""
        self._set_hotwords({})

    @property
    def hot_words(self) -> dict[str, float]:
        """The hot-words and their boosts (a copy)."""
        return dict(self._hotwords)

    # -- DeepSpeech 0.9's names --------------------------------------------------------
    def sampleRate(self) -> int:  # noqa: N802
        """DeepSpeech's name of :attr:`sample_rate`."""
        return self.sample_rate

    def beamWidth(self) -> int:  # noqa: N802
        """DeepSpeech's name of :attr:`beam_width`."""
        return self.beam_width

    def setBeamWidth(self, beam_width: int) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`set_beam_width` (returns 0, its success code)."""
        self.set_beam_width(beam_width)
        return 0

    def sttWithMetadata(  # noqa: N802
        self, audio_buffer: Any, num_results: int = 1
    ) -> Metadata:
        """DeepSpeech's name of :meth:`stt_with_metadata`."""
        return self.stt_with_metadata(audio_buffer, num_results)

    def createStream(self) -> Stream:  # noqa: N802
        """DeepSpeech's name of :meth:`create_stream`."""
        return self.create_stream()

    def enableExternalScorer(self, scorer_path: str | os.PathLike) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`enable_external_scorer` (returns 0)."""
        self.enable_external_scorer(scorer_path)
        return 0

    def disableExternalScorer(self) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`disable_external_scorer` (returns 0)."""
        self.disable_external_scorer()
        return 0

    def setScorerAlphaBeta(self, alpha: float, beta: float) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`set_scorer_alpha_beta` (returns 0)."""
        self.set_scorer_alpha_beta(alpha, beta)
        return 0

    def addHotWord(self, word: str, boost: float) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`add_hot_word` (returns 0)."""
        self.add_hot_word(word, boost)
        return 0

    def eraseHotWord(self, word: str) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`erase_hot_word` (returns 0)."""
        self.erase_hot_word(word)
        return 0

    def clearHotWords(self) -> int:  # noqa: N802
        """DeepSpeech's name of :meth:`clear_hot_words` (returns 0)."""
        self.clear_hot_words()
        return 0

    # -- internals ---------------------------------------------------------------------
    def _beam_decoder(self) -> Any:
        """The kept beam decoder, switching from best path to the beam search first."""
        if self.decode_config.decoder != "beam":
            self.decode_config = dataclasses.replace(self.decode_config, decoder="beam")
            self._rebuild()
        return self.decoder

    def _rebuild(self) -> None:
        """A new decoder from ``decode_config`` around the already-loaded scorer."""
        from .decoder.beam import BeamSearchDecoder

        config = self.decode_config
        if config.decoder != "beam":
            self._decoder = None  # built from the config on next use
            return
        if self._scorer is not None and (config.alpha is not None):
            self._scorer.alpha, self._scorer.beta = config.alpha, config.beta
        self._decoder = BeamSearchDecoder(
            self.alphabet,
            config.beam_width,
            config.cutoff_top_n,
            config.cutoff_prob,
            scorer=self._scorer,
            hotwords=self._hotwords or None,
            frame_step_seconds=self.frame_seconds,
        )

    def _set_hotwords(self, hotwords: dict[str, float]) -> None:
        self._beam_decoder().set_hotwords(hotwords or None)
        self._hotwords = hotwords
        self.decode_config = dataclasses.replace(
            self.decode_config,
            hotwords=tuple(f"{word}:{boost!r}" for word, boost in hotwords.items()),
        )


def _parse_pairs(pairs) -> dict[str, float]:
    from .inference import _parse_hotwords

    return _parse_hotwords(pairs)


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DecoderError(f"{name} must be an integer >= 1, got {value!r}")


def transcribe(
    audio: Any,
    model: Model | str | os.PathLike | None = None,
    *,
    sample_rate: int | None = None,
    scorer: str | os.PathLike | None = None,
) -> str:
    """Text of ``audio`` (a path, bytes or array) with ``model`` (a :class:`Model`,
    a model file's path, or None for the bundled model with its scorer); ``scorer``
    enables an external scorer first."""
    if not isinstance(model, _BaseModel):
        model = Model(model)
    if scorer is not None:
        if not isinstance(model, Model):
            raise ConfigError("scorer= needs an npspeech.Model")
        model.enable_external_scorer(scorer)
    return model.transcribe(audio, sample_rate=sample_rate)
