"""Inference: a loaded model, transcription of audio, and evaluation of a corpus.

:class:`Model` is a loaded model with its decoder (the public ``npspeech.Model`` in
:mod:`npspeech.api` adds DeepSpeech's API to it); ``Model.load(path).transcribe(
"audio.wav")`` goes from a model file to text. :func:`evaluate` runs a model over
corpus rows in padded batches and scores the transcripts (WER/CER); the training
loop's dev pass and ``npspeech eval`` share it.

Shape legend: T frames, B batch, F features, V classes (the blank last).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import models
from .alphabet import Alphabet
from .config import DecodeConfig, FeatureConfig, ModelConfig
from .decoder.results import CandidateTranscript
from .errors import AudioError, ConfigError, DecoderError
from .nn.activations import log_softmax

# -- decoders --------------------------------------------------------------------------


class GreedyDecoder:
    """Best-path decoding (:func:`npspeech.decoder.greedy.greedy_decode`)."""

    def __init__(self, alphabet: Alphabet, frame_seconds: float):
        self.alphabet = alphabet
        self.frame_seconds = frame_seconds

    def decode(
        self, log_probs: np.ndarray, n_best: int = 1
    ) -> list[CandidateTranscript]:
        """Decode ``(T, V)`` log-probabilities; greedy has exactly one candidate."""
        from .decoder.greedy import greedy_decode

        return [greedy_decode(log_probs, self.alphabet, self.frame_seconds)]

    def decode_text(self, log_probs: np.ndarray) -> str:
        """The transcript's text alone (the beam decoder's interface)."""
        return self.decode(log_probs)[0].text

    def stream(self):
        """A :class:`~npspeech.decoder.greedy.GreedyDecoderStream`."""
        from .decoder.greedy import GreedyDecoderStream

        return GreedyDecoderStream(self.alphabet, self.frame_seconds)


def _beam_decoder(alphabet: Alphabet, config: DecodeConfig, frame_seconds: float):
    """The prefix beam search that ``config`` describes (scorer and hot-words)."""
    from .decoder.beam import BeamSearchDecoder

    scorer = None
    if config.scorer:
        from .decoder.scorer import Scorer

        scorer = Scorer.from_file(config.scorer, alpha=config.alpha, beta=config.beta)
    return BeamSearchDecoder(
        alphabet,
        config.beam_width,
        config.cutoff_top_n,
        config.cutoff_prob,
        scorer=scorer,
        hotwords=_parse_hotwords(config.hotwords) or None,
        frame_step_seconds=frame_seconds,
    )


def _parse_hotwords(pairs: Sequence[str]) -> dict[str, float]:
    """``["word:boost", "word", ...]`` -> ``{"word": boost}`` (a bare word gets the
    default boost); a bad pair names itself."""
    from .constants import HOTWORD_BOOST

    hotwords = {}
    for pair in pairs:
        if ":" not in pair:
            hotwords[pair] = HOTWORD_BOOST
            continue
        word, _, boost = pair.rpartition(":")
        try:
            hotwords[word] = float(boost)
        except ValueError:
            raise ConfigError(f"hot-word {pair!r} is not WORD:BOOST") from None
        if not word:
            raise ConfigError(f"hot-word {pair!r} is not WORD:BOOST")
    return hotwords


def make_decoder(
    alphabet: Alphabet, config: DecodeConfig | None, frame_seconds: float
) -> Any:
    """The decoder ``config`` names (greedy when None)."""
    config = config or DecodeConfig()
    if config.decoder == "greedy":
        return GreedyDecoder(alphabet, frame_seconds)
    if config.decoder == "beam":
        return _beam_decoder(alphabet, config, frame_seconds)
    raise ConfigError(f"decoder {config.decoder!r} is unknown; choose greedy or beam")


def frame_seconds(config: ModelConfig, feature_config: FeatureConfig) -> float:
    """Seconds between output frames: the feature hop times the model's time stride."""
    return feature_config.step_ms / 1000.0 * models.time_stride(config)


# -- the public model ------------------------------------------------------------------


class Model:
    """A trained model ready to transcribe.

    The decoder (and a scorer's KenLM model and LM cache) is built once, when
    :meth:`set_decoder` is called, and kept for every later call; the network's
    weights are prepared once for inference
    (:class:`npspeech.runtime.InferenceNetwork`).

    Parameters
    ----------
    network : models.Network
    features : FeatureConfig
    alphabet : Alphabet
    training : dict, optional
        The model file's training record.
    backend : str, optional
        Kernel backend (``numpy``, ``numba``, ``cupy``); None for the default.
    """

    def __init__(
        self,
        network: models.Network,
        features: FeatureConfig,
        alphabet: Alphabet,
        training: dict[str, Any] | None = None,
        backend: str | None = None,
    ):
        if network.n_classes != alphabet.n_classes:
            raise ConfigError(
                f"the network has {network.n_classes} outputs, the alphabet "
                f"{alphabet.n_classes} classes"
            )
        self.network = network
        self.features = features
        self.alphabet = alphabet
        self.training = dict(training or {})
        self.backend = backend
        self.decode_config = DecodeConfig()
        self._decoder: Any = None
        self._runtime: Any = None

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str | None = None) -> Model:
        """Load a model file (see :mod:`npspeech.modelfile`).

        Raises
        ------
        ModelFileError
            For a missing, truncated, foreign, newer or modified file.
        """
        from . import modelfile

        loaded = modelfile.load(path)
        return cls(
            loaded.network,
            loaded.features,
            loaded.alphabet,
            loaded.training,
            backend=backend,
        )

    @property
    def sample_rate(self) -> int:
        """Hz the model's audio is resampled to."""
        return self.features.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Seconds between two output frames (the feature hop times the time stride)."""
        return frame_seconds(self.network.config, self.features)

    @property
    def streamable(self) -> bool:
        """True for one-way models (``deepspeech``, ``ds2-stream``): they stream."""
        return self.network.config.architecture != "ds2"

    @property
    def decoder(self) -> Any:
        """The decoder :attr:`decode_config` describes, built once and kept."""
        if self._decoder is None:
            self._decoder = make_decoder(
                self.alphabet, self.decode_config, self.frame_seconds
            )
        return self._decoder

    @property
    def inference_network(self) -> Any:
        """The network prepared for inference (built on first use, then kept)."""
        if self._runtime is None:
            from .runtime import InferenceNetwork

            self._runtime = InferenceNetwork(self.network, backend=self.backend)
        return self._runtime

    def set_decoder(self, config: DecodeConfig) -> None:
        """Use ``config`` from now on (the decoder is built and checked now)."""
        self._decoder = make_decoder(self.alphabet, config, self.frame_seconds)
        self.decode_config = config

    def signal(
        self,
        audio_or_path: Any,
        sample_rate: int | None = None,
        where: str = "audio",
    ) -> np.ndarray:
        """Float32 mono samples at the model's rate (see :func:`read_signal`)."""
        return read_signal(audio_or_path, self.sample_rate, sample_rate, where)

    def compute_features(
        self, audio_or_path: Any, sample_rate: int | None = None
    ) -> np.ndarray:
        """``(T, F)`` float32 input frames (no context stacking: the network does it)
        of a path or a signal (see :func:`read_signal`)."""
        from . import features

        signal = self.signal(audio_or_path, sample_rate)
        base = dataclasses.replace(self.features, n_context=0)
        if signal.shape[0] < base.window_samples:  # shorter than one frame: no frames
            return np.zeros((0, features.n_features(base)), dtype=np.float32)
        frames = features.n_frames(signal.shape[0], base)
        return features.compute(signal, base, backend=self._step_backend(frames))

    def _step_backend(self, frames: int) -> str | None:
        """The backend of the steps around the network (features, log-softmax) for an
        input of ``frames`` frames (times the batch): ``numpy`` when the network runs
        it on the reference without importing Numba (the quick start of
        :mod:`npspeech.runtime.network`: a short decode then never imports Numba),
        else the default."""
        if self.backend is None and self.inference_network.reference_only(frames):
            return "numpy"
        return None

    def log_probs(
        self,
        batch_features: np.ndarray,
        lengths: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities of a padded batch.

        Parameters
        ----------
        batch_features : float32 array, shape (T, B, F)
        lengths : int array, shape (B,)

        Returns
        -------
        log_probs : float32 array, shape (T_out, B, V)
        output_lengths : int32 array, shape (B,)
        """
        batch_features = np.asarray(batch_features, dtype=np.float32)
        frames = int(np.prod(batch_features.shape[:2]))  # T x B
        backend = self._step_backend(frames)  # asked before the network charges it
        logits, output_lengths = self.inference_network.forward(
            batch_features, np.asarray(lengths, dtype=np.int32)
        )
        return log_softmax(logits, backend=backend), output_lengths

    def utterance_log_probs(self, feats: np.ndarray) -> np.ndarray:
        """``(T_out, V)`` float32 log-probabilities of one utterance's ``(T, F)``
        input frames."""
        if feats.shape[0] == 0:
            return np.zeros((0, self.alphabet.n_classes), dtype=np.float32)
        log_probs, lengths = self.log_probs(
            feats[:, None, :], np.array([feats.shape[0]], dtype=np.int32)
        )
        return np.ascontiguousarray(log_probs[: int(lengths[0]), 0])

    def transcribe_full(
        self,
        audio_or_path: Any,
        n_best: int = 1,
        sample_rate: int | None = None,
    ) -> list[CandidateTranscript]:
        """Candidate transcripts (confidences, word timings) of a recording.

        A recording longer than :data:`npspeech.segment.LONG_AUDIO_SECONDS` is
        decoded in bounded memory by :func:`npspeech.segment.transcribe_long`
        (a file is read block by block): its pieces are joined into one candidate
        with global times, so ``n_best`` gives one candidate there.
        """
        from . import segment

        if segment.is_long(audio_or_path, self.sample_rate, sample_rate):
            return segment.transcribe_long(self, audio_or_path, sample_rate=sample_rate)
        log_probs = self.utterance_log_probs(
            self.compute_features(audio_or_path, sample_rate)
        )
        return self.decoder.decode(log_probs, n_best=n_best)

    def transcribe(self, audio_or_path: Any, sample_rate: int | None = None) -> str:
        """Text of a recording: a path, or a signal (see :func:`read_signal`)."""
        return self.transcribe_full(audio_or_path, sample_rate=sample_rate)[0].text

    def evaluate_csvs(
        self,
        csvs: Sequence[str | os.PathLike],
        decode_config: DecodeConfig | None = None,
        *,
        skip_bad: bool = False,
        frames_budget: int = 16_000,
        progress: bool = False,
    ) -> Evaluation:
        """Word and character error rates of this model on DeepSpeech corpus CSVs:
        their rows validated (bad rows listed in a ``DataError``, or skipped with
        ``skip_bad``), then :func:`evaluate` on this model's backend."""
        from . import data

        utterances, durations = data.validate_corpus(
            data.read_csvs(csvs),
            self.alphabet,
            self.features,
            skip_bad=skip_bad,
            progress=progress,
        )
        return evaluate(
            self.network,
            utterances,
            self.alphabet,
            self.features,
            frames_budget=frames_budget,
            decode_config=decode_config,
            backend=self.backend,
            durations=durations,
            progress=progress,
        )


def read_signal(
    audio_or_path: Any,
    model_rate: int,
    sample_rate: int | None = None,
    where: str = "audio",
) -> np.ndarray:
    """Audio as float32 mono samples at ``model_rate``; never a silent misreading.

    Parameters
    ----------
    audio_or_path : str, path-like, bytes, or 1-D array
        A file (read and resampled by :func:`npspeech.audio.load`); ``bytes`` of
        little-endian 16-bit PCM; an int16 array; a float array with samples in
        [-1, 1].
    model_rate : int
        Hz the model needs.
    sample_rate : int, optional
        Hz of bytes or an array when it is not ``model_rate``: they are resampled.
        A file knows its own rate, so it takes none.
    where : str
        Names the input in error messages.

    Returns
    -------
    float32 array, shape (N,)

    Raises
    ------
    AudioError
        A missing or unreadable file, a list or other non-array, an array that is not
        1-D (stereo: mix it down first), an integer type other than int16, NaN or
        infinite samples, float samples outside [-1, 1] (int16 values stored as
        float?), bytes of odd length, a bad ``sample_rate``.
    """
    from . import audio

    if isinstance(audio_or_path, (str, os.PathLike)):
        if sample_rate is not None:
            raise AudioError(
                f"{audio_or_path}: sample_rate is for arrays and bytes; a file gives "
                "its own"
            )
        return audio.load(audio_or_path, sample_rate=model_rate)
    if isinstance(audio_or_path, (bytes, bytearray, memoryview)):
        signal = audio.to_float32(audio_or_path, where=where)
    elif isinstance(audio_or_path, np.ndarray):
        array = audio_or_path
        if array.ndim == 2 and 1 in array.shape and array.size > 1:
            raise AudioError(
                f"{where}: shape {array.shape} is ambiguous; pass a 1-D signal"
            )
        if array.ndim != 1:
            raise AudioError(
                f"{where}: expected a 1-D mono signal, got shape {array.shape} "
                "(mix channels down first, e.g. signal.mean(axis=1))"
            )
        if array.dtype.kind == "f":
            audio.check_finite_samples(array, where)
            peak = float(np.abs(array).max()) if array.size else 0.0
            if peak > 1.0:
                raise AudioError(
                    f"{where}: float samples must lie in [-1, 1], the largest is "
                    f"{peak:.6g} (int16 values stored as float? pass "
                    "signal.astype(numpy.int16) or signal / 32768)"
                )
        signal = audio.to_float32(array, where=where)
    else:
        raise AudioError(
            f"{where}: expected a path, bytes of 16-bit PCM or a NumPy array, got "
            f"{type(audio_or_path).__name__}"
        )
    if sample_rate is not None:
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, np.integer))
            or sample_rate <= 0
        ):
            raise AudioError(
                f"{where}: sample_rate must be a positive whole number of Hz, "
                f"got {sample_rate!r}"
            )
        if int(sample_rate) != model_rate and signal.shape[0]:
            signal = np.clip(
                audio.resample(signal, int(sample_rate), model_rate), -1.0, 1.0
            ).astype(np.float32)
    return signal


# -- corpus evaluation -----------------------------------------------------------------


@dataclasses.dataclass
class UtteranceResult:
    """How one corpus row was transcribed."""

    source: str
    audio_path: str
    reference: str
    hypothesis: str
    loss: float  # CTC loss (nats); inf when the output is too short for the reference
    wer: float
    cer: float
    word_edits: int
    words: int
    char_edits: int
    chars: int


@dataclasses.dataclass
class Evaluation:
    """Scores of a corpus.

    Attributes
    ----------
    wer, cer : float
        Corpus rates: total edits over total reference length.
    loss : float
        Mean CTC loss over the rows with a finite loss.
    utterances : list of UtteranceResult
    """

    wer: float
    cer: float
    loss: float
    utterances: list[UtteranceResult]

    def worst(self, count: int) -> list[UtteranceResult]:
        """The ``count`` rows with the most word edits (then character edits)."""
        ranked = sorted(self.utterances, key=lambda r: (-r.wer, -r.cer, r.source))
        return ranked[:count]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able report."""
        return {
            "wer": self.wer,
            "cer": self.cer,
            "loss": self.loss,
            "n_utterances": len(self.utterances),
            "utterances": [dataclasses.asdict(r) for r in self.utterances],
        }


def evaluate(
    network: models.Network,
    utterances: Sequence[Any],
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    *,
    cache: Any = None,
    frames_budget: int = 16_000,
    decode_config: DecodeConfig | None = None,
    backend: Any = None,
    durations: Sequence[float] | None = None,
    progress: bool = False,
) -> Evaluation:
    """Transcribe and score corpus rows (``npspeech.data.Utterance``).

    Features come from ``cache`` (a ``FeatureCache``; a fresh one when None). Rows are
    batched by length under ``frames_budget`` padded frames, without augmentation.
    """
    from . import ctc, metrics

    decoder = make_decoder(
        alphabet, decode_config, frame_seconds(network.config, feature_config)
    )
    slots: list[UtteranceResult | None] = [None] * len(utterances)
    outputs = _forward_batches(
        network,
        utterances,
        alphabet,
        feature_config,
        cache=cache,
        frames_budget=frames_budget,
        backend=backend,
        durations=durations,
        progress=progress,
    )
    for members, batch, logits, output_lengths in outputs:
        losses, _ = ctc.ctc_loss(
            logits,
            batch.targets,
            output_lengths,
            batch.target_lengths,
            blank=network.n_classes - 1,
            reduction="none",
            backend=backend,
        )
        log_probs = log_softmax(logits)
        for b, (index, utterance) in enumerate(
            zip(members, batch.utterances, strict=True)
        ):
            try:
                hypothesis = decoder.decode_text(log_probs[: int(output_lengths[b]), b])
            except DecoderError as error:
                raise DecoderError(f"{utterance.source}: {error}") from None
            counts = metrics.error_counts(utterance.transcript, hypothesis)
            slots[index] = UtteranceResult(
                source=utterance.source,
                audio_path=str(utterance.audio_path),
                reference=utterance.transcript,
                hypothesis=hypothesis,
                loss=float(losses[b]),
                wer=counts.wer,
                cer=counts.cer,
                word_edits=counts.word_edits,
                words=counts.words,
                char_edits=counts.char_edits,
                chars=counts.chars,
            )
    results = [result for result in slots if result is not None]  # corpus order
    total = metrics.ErrorCounts(
        sum(r.word_edits for r in results),
        sum(r.words for r in results),
        sum(r.char_edits for r in results),
        sum(r.chars for r in results),
    )
    finite = [r.loss for r in results if np.isfinite(r.loss)]
    loss = float(np.mean(finite)) if finite else float("inf")
    return Evaluation(total.wer, total.cer, loss, results)


def _forward_batches(
    network: models.Network,
    utterances: Sequence[Any],
    alphabet: Alphabet,
    feature_config: FeatureConfig,
    *,
    cache: Any,
    frames_budget: int,
    backend: Any,
    durations: Sequence[float] | None,
    progress: bool,
) -> Iterator[tuple[list[int], Any, np.ndarray, np.ndarray]]:
    """Run the model over corpus rows in padded batches, in eval mode.

    Yields
    ------
    members : list of int
        Indices into ``utterances`` of the batch's rows.
    batch : npspeech.data.Batch
    logits : float32 array, shape (T_out, B, V)
    output_lengths : int32 array, shape (B,)
    """
    from . import data

    if not utterances:
        raise ConfigError("nothing to evaluate: no utterances")
    cache = cache or data.FeatureCache(feature_config)
    loader = data.BatchLoader(
        utterances,
        alphabet,
        feature_config,
        cache,
        frames_budget=frames_budget,
        shuffle=False,
        sortagrad=False,
        durations=durations,
        prefetch=False,
    )
    batches: Any = zip(loader.epoch_batches(0), loader.iterate(0), strict=False)
    if progress:
        from tqdm import tqdm

        batches = tqdm(
            batches, total=len(loader), desc="evaluating", unit="batch", leave=False
        )
    for members, batch in batches:
        logits, output_lengths, _ = models.forward(
            network, batch.features, batch.lengths, training=False, backend=backend
        )
        yield members, batch, logits, output_lengths


def corpus_log_probs(
    model: Model,
    utterances: Sequence[Any],
    *,
    frames_budget: int = 16_000,
    progress: bool = False,
) -> list[np.ndarray]:
    """Per-utterance log-probabilities of corpus rows, in corpus order.

    Returns
    -------
    list of float32 arrays, shape (T_i, V)
        Row ``i``'s output frames (padding removed), for decoding or LM tuning.
    """
    slots: list[np.ndarray | None] = [None] * len(utterances)
    outputs = _forward_batches(
        model.network,
        utterances,
        model.alphabet,
        model.features,
        cache=None,
        frames_budget=frames_budget,
        backend=model.backend,
        durations=None,
        progress=progress,
    )
    for members, _, logits, output_lengths in outputs:
        log_probs = log_softmax(logits)
        for b, index in enumerate(members):
            slots[index] = np.ascontiguousarray(log_probs[: int(output_lengths[b]), b])
    return [item for item in slots if item is not None]
