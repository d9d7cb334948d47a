"""Streaming recognition: audio in chunks of any size, text at any moment.

A :class:`Stream` runs the whole pipeline incrementally for a one-way model
(``deepspeech``, ``ds2-stream``)::

    chunk ─ FeatureStream ─▶ (T_new, F) ─ InferenceNetwork.forward_chunk ─▶ (T_out, V)
          ─ log_softmax ─▶ decoder stream (beam search or best path)

Each stage keeps only what later frames need (the feature window's tail, the
network's held-back context frames and recurrent state, the beam), so the work per
chunk is proportional to the chunk. The transcript and timings after
:meth:`Stream.finish_stream_with_metadata` equal decoding the whole recording at once
with the same model and decoder. A bidirectional ``ds2`` model needs the whole
utterance and refuses to stream.

First run. A network left to the default backend runs on the NumPy reference while
the process's quick-start budget lasts (:mod:`npspeech.runtime._quick_start`), and a
stream then runs its features and log-softmax on NumPy too, chunk by chunk: a short
stream never imports Numba. The chunk that takes the process past the budget moves
the network to the compiled kernels (its state carries over) and the features and
log-softmax to the default backend with it; every stage keeps plain float32 arrays,
so the transcript is the same to float tolerance.

DeepSpeech 0.9's names (``feedAudioContent``, ``intermediateDecode``, ...) are aliases
of the methods here, so code written for ``deepspeech.Stream`` runs unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .decoder.results import Metadata
from .errors import ConfigError, DecoderError
from .inference import read_signal
from .nn.activations import log_softmax


class Stream:
    """One utterance fed chunk by chunk (create it with ``Model.create_stream()``).

    Parameters
    ----------
    model : npspeech.inference.Model
        A one-way model; its current decoder (beam search with scorer and hot-words,
        or best path) decodes the stream.

    Raises
    ------
    ConfigError
        For a bidirectional (``ds2``) model.
    """

    def __init__(self, model: Any):
        architecture = model.network.config.architecture
        if not model.streamable:
            raise ConfigError(
                f"a {architecture!r} model is bidirectional: every output frame reads "
                "the whole utterance, so it cannot stream; use stt() or "
                "transcribe_full() (long recordings are cut at pauses), or a "
                "'deepspeech' or 'ds2-stream' model"
            )
        from .features import FeatureStream

        self.model = model
        self._network = model.inference_network
        self._state = self._network.new_state()
        self._features = FeatureStream(
            dataclasses.replace(model.features, n_context=0), backend=model.backend
        )
        self._decoder = model.decoder.stream()
        self._open = True

    # -- npspeech names ----------------------------------------------------------------
    def feed_audio_content(self, chunk: Any) -> None:
        """Add audio: int16 or float (in [-1, 1]) 1-D samples, or bytes of 16-bit PCM,
        at the model's sample rate; any length, from one sample to minutes."""
        self._check_open()
        samples = read_signal(chunk, self.model.sample_rate, where="stream chunk")
        if samples.shape[0] == 0:
            return
        backend = self._backend_for(self._features.n_new_frames(samples.shape[0]))
        self._advance(self._features.feed(samples), False, backend)

    def intermediate_decode(self) -> str:
        """The current best text, as if the audio ended now (cheap: no alignment)."""
        self._check_open()
        return self._decoder.intermediate_text()

    def intermediate_decode_with_metadata(self, num_results: int = 1) -> Metadata:
        """The current ``num_results`` best transcripts with timings."""
        self._check_open()
        return Metadata.from_candidates(self._decoder.intermediate(num_results))

    def finish_stream(self) -> str:
        """The final text; the stream is closed afterwards."""
        self._flush()
        text = self._decoder.finish_text()
        self._close()
        return text

    def finish_stream_with_metadata(self, num_results: int = 1) -> Metadata:
        """The final ``num_results`` best transcripts with timings; then closed."""
        self._flush()
        candidates = self._decoder.finish(num_results)
        self._close()
        return Metadata.from_candidates(candidates)

    def finish_stream_full(self, n_best: int = 1) -> list:
        """The final candidates as :class:`~npspeech.decoder.results.
        CandidateTranscript` (what ``Model.transcribe_full`` returns); then closed."""
        self._flush()
        candidates = self._decoder.finish(n_best)
        self._close()
        return candidates

    def free_stream(self) -> None:
        """Drop the stream without a result (its LM cache goes back to the model)."""
        if self._open:
            self._decoder.close()
            self._close()

    @property
    def n_frames(self) -> int:
        """Output frames decoded so far."""
        return self._decoder.n_frames

    # -- DeepSpeech 0.9's names --------------------------------------------------------
    def feedAudioContent(self, audio_buffer: Any) -> None:  # noqa: N802
        """DeepSpeech's name of :meth:`feed_audio_content`."""
        self.feed_audio_content(audio_buffer)

    def intermediateDecode(self) -> str:  # noqa: N802
        """DeepSpeech's name of :meth:`intermediate_decode`."""
        return self.intermediate_decode()

    def intermediateDecodeWithMetadata(  # noqa: N802
        self, num_results: int = 1
    ) -> Metadata:
        """DeepSpeech's name of :meth:`intermediate_decode_with_metadata`."""
        return self.intermediate_decode_with_metadata(num_results)

    def finishStream(self) -> str:  # noqa: N802
        """DeepSpeech's name of :meth:`finish_stream`."""
        return self.finish_stream()

    def finishStreamWithMetadata(self, num_results: int = 1) -> Metadata:  # noqa: N802
        """DeepSpeech's name of :meth:`finish_stream_with_metadata`."""
        return self.finish_stream_with_metadata(num_results)

    def freeStream(self) -> None:  # noqa: N802
        """DeepSpeech's name of :meth:`free_stream`."""
        self.free_stream()

    # -- internals ---------------------------------------------------------------------
    def _backend_for(self, frames: int) -> str | None:
        """Set the feature stream's kernels for a chunk of ``frames`` input frames and
        return log-softmax's: ``numpy`` for both while the network runs the chunk on
        the reference without Numba (the module docstring); else the model's backend
        for the features and the default (None) for log-softmax. Asked before the
        network charges the chunk to the quick-start budget."""
        backend = self.model._step_backend(frames)
        self._features.backend = backend or self.model.backend
        return backend

    def _advance(self, frames: np.ndarray, final: bool, backend: str | None) -> None:
        """Run new input frames ``(T, F)`` through the network into the decoder,
        the log-softmax on ``backend``."""
        if frames.shape[0] == 0 and not final:
            return
        logits = self._network.forward_chunk(frames, self._state, final=final)
        if logits.shape[0]:
            self._decoder.feed(log_softmax(logits, backend=backend))

    def _flush(self) -> None:
        self._check_open()
        # no new frames: without context the feature stream holds none back, and
        # the network's last chunk only flushes the frames it holds
        backend = self._backend_for(0)
        self._advance(self._features.finish(), True, backend)

    def _check_open(self) -> None:
        if not self._open:
            raise DecoderError("this stream is finished or freed; create a new one")

    def _close(self) -> None:
        self._open = False
        self._state = None
