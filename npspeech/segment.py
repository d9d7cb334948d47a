"""Long recordings in bounded memory: read in blocks, decoded in pieces cut at pauses.

Memory does not grow with the recording's length (an hour or more):

- the file is read :data:`BLOCK_SECONDS` at a time (:func:`audio_blocks`); a file at
  another rate is resampled block by block with enough neighbouring samples on each
  side that every block's output equals the whole file's resampling;
- pauses come from an energy detector (:class:`PauseDetector`): a 20 ms hop is quiet
  when its level is within :data:`PAUSE_MARGIN_DB` of the recording's tracked noise
  floor (or below :data:`SILENCE_DB` dBFS), and :data:`MIN_PAUSE_SECONDS` of quiet
  hops make a pause. No dependency: the levels are the same mean squares the MFCC
  front end starts from, and a decoder only needs a safe place to cut;
- a one-way model (``deepspeech``, ``ds2-stream``) streams through the network
  (recurrent state carried across the whole recording); its log-probabilities are
  held for the current piece only, and the decoder finishes a piece at the first pause
  after :data:`MIN_SEGMENT_SECONDS`, or at the quietest place once the piece reaches
  :data:`MAX_SEGMENT_SECONDS`, so the beam search and its alignment never see more
  than a bounded window;
- a bidirectional model (``ds2``), or one whose features are normalised per
  utterance, is cut the same way into windows, each run through
  the network with :data:`WINDOW_OVERLAP_SECONDS` of audio on both sides as context;
  a word belongs to the window its start falls in.

The pieces are joined into one :class:`~npspeech.decoder.results.CandidateTranscript`
with global token and word times. A piece boundary is a sentence boundary for the
language model, so the text can differ from one decode of the whole recording there.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .decoder.results import (
    CandidateTranscript,
    join_candidates,
    shift_candidate,
    trim_candidate,
)
from .errors import AudioError
from .nn.activations import log_softmax

LONG_AUDIO_SECONDS = 60.0  # longer inputs are decoded in pieces by transcribe_long
BLOCK_SECONDS = 10.0  # audio read (and run through the network) per step
MIN_SEGMENT_SECONDS = 10.0  # a piece ends at the first pause after this
MAX_SEGMENT_SECONDS = 30.0  # ... and at the quietest place when it reaches this
MIN_PAUSE_SECONDS = 0.3  # quiet this long is a pause (between words is shorter)
WINDOW_OVERLAP_SECONDS = 1.0  # context each side of a bidirectional window
SILENCE_DB = -55.0  # dBFS; a hop this quiet is silent whatever the noise floor
PAUSE_MARGIN_DB = 10.0  # a hop within this of the tracked noise floor is quiet
FLOOR_RISE_DB_PER_SECOND = 1.0  # the floor follows a louder background this fast
_POWER_FLOOR = 1e-10  # -100 dBFS: keeps log10 finite on digital silence


def is_long(
    audio_or_path: Any, model_rate: int, sample_rate: int | None = None
) -> bool:
    """True when the input lasts longer than :data:`LONG_AUDIO_SECONDS`.

    A file is measured from its header (not read); bytes and arrays by their length.
    """
    if isinstance(audio_or_path, (str, os.PathLike)):
        from .audio import duration

        return duration(audio_or_path) > LONG_AUDIO_SECONDS
    rate = sample_rate or model_rate
    if isinstance(audio_or_path, (bytes, bytearray, memoryview)):
        return len(audio_or_path) // 2 > LONG_AUDIO_SECONDS * rate
    if isinstance(audio_or_path, np.ndarray) and audio_or_path.ndim == 1:
        return audio_or_path.shape[0] > LONG_AUDIO_SECONDS * rate
    return False


# -- reading in blocks -----------------------------------------------------------------


def audio_blocks(
    audio_or_path: Any,
    model_rate: int,
    sample_rate: int | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> Iterator[np.ndarray]:
    """Float32 mono samples at ``model_rate``, in consecutive blocks.

    A file is read block by block (channels averaged, resampled when its rate
    differs); the concatenated blocks equal :func:`npspeech.audio.load` of the file
    (to float32 rounding). Bytes and arrays (already in memory) are checked and
    converted as :func:`npspeech.inference.read_signal` does, then sliced.

    Yields
    ------
    float32 array, shape (N_block,)
    """
    block = max(1, int(block_seconds * model_rate))
    if not isinstance(audio_or_path, (str, os.PathLike)):
        from .inference import read_signal

        signal = read_signal(audio_or_path, model_rate, sample_rate)
        for start in range(0, signal.shape[0], block):
            yield signal[start : start + block]
        return
    if sample_rate is not None:
        raise AudioError(
            f"{audio_or_path}: sample_rate is for arrays and bytes; a file gives "
            "its own"
        )
    yield from _file_blocks(Path(audio_or_path), model_rate, block_seconds)


def _file_blocks(path: Path, model_rate: int, block_seconds: float):
    import soundfile

    from . import audio

    audio.duration(path)  # a missing, empty or unreadable file raises here, named
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    with handle:
        rate, total = handle.samplerate, handle.frames
        if total == 0:
            raise AudioError(f"{path}: holds no samples")
        up = model_rate // math.gcd(rate, model_rate)
        down = rate // math.gcd(rate, model_rate)
        # Block edges fall on multiples of ``down`` input samples, where an output
        # sample sits exactly; ``context`` input samples each side cover the
        # anti-aliasing filter of resample_poly (10 * max(up, down) taps at the
        # up-sampled rate each side), so a block's output is the whole file's.
        context = 0
        if rate != model_rate:
            taps = math.ceil(10 * max(up, down) / up) + 2
            context = math.ceil(taps / down) * down
        step = max(down, int(block_seconds * rate) // down * down)
        for start in range(0, total, step):
            stop = min(start + step, total)
            left = min(context, start)
            right = min(context, total - stop)
            handle.seek(start - left)
            try:
                data = handle.read(left + (stop - start) + right, dtype="float32")
            except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
                raise AudioError(f"{path}: cannot read audio ({error})") from None
            if data.ndim == 2:
                data = data.mean(axis=1, dtype=np.float32)
            audio.check_finite_samples(data, f"{path} (from sample {start})")
            if rate != model_rate:
                resampled = audio.resample(data, rate, model_rate)
                first = left * up // down
                # the last block ends where the whole file's output ends
                count = (
                    -(-stop * up // down) - start * up // down
                    if stop == total
                    else (stop - start) * up // down
                )
                data = resampled[first : first + count]
            yield np.clip(data, np.float32(-1.0), audio.MAX_SAMPLE).astype(
                np.float32, copy=False
            )


# -- pauses ----------------------------------------------------------------------------


class PauseDetector:
    """Quiet hops of a signal that arrives in blocks (an energy voice-activity test).

    A hop of ``hop`` samples is quiet when ``10 log10(mean(x^2))`` is below
    :data:`SILENCE_DB`, or within :data:`PAUSE_MARGIN_DB` of the noise floor: the
    floor is the lowest level so far, rising by :data:`FLOOR_RISE_DB_PER_SECOND`
    while the level stays above it (so it follows a louder background).

    Parameters
    ----------
    hop : int
        Samples per hop (the feature step: 320 at 16 kHz).
    sample_rate : int
    """

    def __init__(self, hop: int, sample_rate: int):
        self.hop = int(hop)
        self._rise = FLOOR_RISE_DB_PER_SECOND * hop / sample_rate  # dB per hop
        self._floor = math.inf
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Levels and quiet flags of the hops ``samples`` completes.

        Returns
        -------
        level_db : float64 array, shape (H_new,)
        quiet : bool array, shape (H_new,)
        """
        samples = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32)])
        H = samples.shape[0] // self.hop
        self._rest = samples[H * self.hop :].copy()
        frames = samples[: H * self.hop].reshape(H, self.hop).astype(np.float64)
        level = 10.0 * np.log10(np.mean(frames * frames, axis=1) + _POWER_FLOOR)
        quiet = np.empty(H, dtype=bool)
        floor = self._floor
        for h in range(H):  # the floor is a running recursion: one step per hop
            floor = min(level[h], floor + self._rise)
            quiet[h] = level[h] < SILENCE_DB or level[h] < floor + PAUSE_MARGIN_DB
        self._floor = floor
        return level, quiet


def choose_cut(
    level: np.ndarray,
    quiet: np.ndarray,
    min_length: int,
    max_length: int,
    min_pause: int,
    blank: np.ndarray | None = None,
) -> int | None:
    """Where to end a piece whose frames have these levels and quiet flags.

    Parameters
    ----------
    level : float array, shape (T,)
        Level (dB) of each frame of the piece so far.
    quiet : bool array, shape (T,)
    min_length, max_length : int
        Frames a piece has at least (unless it is the last) and at most.
    min_pause : int
        Quiet frames in a row that make a pause.
    blank : float array, shape (>= T,), optional
        The blank's log-probability per frame: within the chosen pause the cut goes
        to the frame where the model is surest of a blank (a best path never merges
        a label across it); without it, to the pause's middle.

    Returns
    -------
    int or None
        The frame to cut before (in the first pause whose middle lies at or after
        ``min_length``); when there is none and the piece reached ``max_length``, in
        the longest pause in its second half, else at its quietest frame there;
        None when the piece should grow.
    """
    T = quiet.shape[0]
    # runs of quiet frames: starts and ends (exclusive) from the flag's edges
    padded = np.concatenate([[False], quiet, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    complete = ends < T  # a run still going may grow: wait for its end
    lengths = ends - starts
    middles = (starts + ends) // 2
    usable = complete & (lengths >= min_pause) & (middles >= min_length)

    def inside(run: int) -> int:
        if blank is None:
            return int(middles[run])
        first = max(int(starts[run]), 1)  # never an empty piece
        return first + int(np.argmax(blank[first : ends[run]]))

    if usable.any():
        return inside(int(np.flatnonzero(usable)[0]))
    if T < max_length:
        return None
    half = max_length // 2
    late = (lengths >= min_pause) & (middles >= half) & (middles < max_length)
    if late.any():
        return inside(int(np.flatnonzero(late)[np.argmax(lengths[late])]))
    return half + int(np.argmin(level[half:max_length]))


# -- decoding --------------------------------------------------------------------------


@dataclasses.dataclass
class _Limits:
    """Piece limits in output frames."""

    min_length: int
    max_length: int
    min_pause: int


def _limits(seconds_per_frame: float) -> _Limits:
    return _Limits(
        min_length=max(1, round(MIN_SEGMENT_SECONDS / seconds_per_frame)),
        max_length=max(2, round(MAX_SEGMENT_SECONDS / seconds_per_frame)),
        min_pause=max(1, round(MIN_PAUSE_SECONDS / seconds_per_frame)),
    )


def transcribe_long(
    model: Any,
    audio_or_path: Any,
    sample_rate: int | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> list[CandidateTranscript]:
    """Decode a recording of any length in bounded memory.

    Parameters
    ----------
    model : npspeech.inference.Model
        Its current decoder decodes each piece.
    audio_or_path : path, bytes or 1-D array
        As :func:`npspeech.inference.read_signal` takes it; a file is read in blocks.
    sample_rate : int, optional
        Rate of bytes or an array that is not at the model's rate.
    block_seconds : float
        Audio read per step.

    Returns
    -------
    list of one CandidateTranscript
        The pieces' best transcripts joined, with global times; ``confidence`` is the
        product of the pieces' posteriors and ``log_score`` the sum of their scores.
    """
    blocks = audio_blocks(audio_or_path, model.sample_rate, sample_rate, block_seconds)
    if model.streamable and model.features.normalize != "utterance":
        pieces = _streamed_pieces(model, blocks)
    else:
        pieces = _windowed_pieces(model, blocks)
    space = _space_text(model.alphabet)
    pieces = [piece for piece in pieces if piece.tokens]
    if not pieces:
        empty = np.zeros((0, model.alphabet.n_classes), dtype=np.float32)
        return model.decoder.decode(empty, n_best=1)[:1]
    return [join_candidates(pieces, space)]


def _space_text(alphabet) -> str | None:
    return None if alphabet.space is None else alphabet.labels[alphabet.space]


def _streamed_pieces(model: Any, blocks) -> Iterator[CandidateTranscript]:
    """One-way models: network state carried through; the decoder cut at pauses."""
    from .features import FeatureStream

    network = model.inference_network
    state = network.new_state()
    base = dataclasses.replace(model.features, n_context=0)
    features = FeatureStream(base, backend=model.backend)
    stride = network.time_stride
    pauses = PauseDetector(base.step_samples, base.sample_rate)
    limits = _limits(model.frame_seconds)
    held: list[np.ndarray] = []  # log-probs of the current piece, (T_i, V) each
    levels: list[np.ndarray] = []  # levels and flags of the hops not yet cut off
    flags: list[np.ndarray] = []
    start = 0  # global output frame where the current piece begins
    hop_start = 0  # global hop index of levels[0][0]

    def frame_levels(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Levels and quiet flags of the piece's first ``n_frames`` output frames."""
        level = np.concatenate(levels) if levels else np.zeros(0)
        quiet = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
        hops = (start + np.arange(n_frames)) * stride - hop_start
        hops = hops[hops < level.shape[0]]
        return level[hops], quiet[hops]

    def cut(at: int) -> CandidateTranscript:
        nonlocal start, hop_start, held, levels, flags
        frames = np.concatenate(held) if held else np.zeros((0, 0), np.float32)
        best = model.decoder.decode(frames[:at], n_best=1)[0]
        best = shift_candidate(best, start, start * model.frame_seconds)
        held = [frames[at:]] if frames.shape[0] > at else []
        start += at
        level = np.concatenate(levels) if levels else np.zeros(0)
        quiet = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
        drop = min(start * stride - hop_start, level.shape[0])
        levels, flags = [level[drop:]], [quiet[drop:]]
        hop_start += drop
        return best

    def new_frames(frames: np.ndarray, final: bool) -> Iterator[CandidateTranscript]:
        logits = network.forward_chunk(frames, state, final=final)
        if logits.shape[0]:
            held.append(log_softmax(logits))
        while True:
            held_frames = sum(part.shape[0] for part in held)
            level, quiet = frame_levels(held_frames)
            blank = np.concatenate(held)[:, -1] if held else None  # the blank is last
            at = choose_cut(
                level,
                quiet,
                limits.min_length,
                limits.max_length,
                limits.min_pause,
                blank,
            )
            if at is None or at <= 0:
                return
            yield cut(at)

    for block in blocks:
        level, quiet = pauses.feed(block)
        levels.append(level)
        flags.append(quiet)
        frames = features.feed(block)
        if frames.shape[0]:
            yield from new_frames(frames, final=False)
    yield from new_frames(features.finish(), final=True)
    held_frames = sum(part.shape[0] for part in held)
    if held_frames:
        yield cut(held_frames)


def _windowed_pieces(model: Any, blocks) -> Iterator[CandidateTranscript]:
    """Bidirectional models: windows cut at pauses, each decoded with overlap."""
    base = dataclasses.replace(model.features, n_context=0)
    rate = base.sample_rate
    # window edges on whole output frames: a multiple of the hop times the stride
    unit = base.step_samples * model.inference_network.time_stride
    limits = _limits(unit / rate)
    overlap = int(math.ceil(WINDOW_OVERLAP_SECONDS * rate / unit)) * unit
    pauses = PauseDetector(unit, rate)
    buffer = np.zeros(0, dtype=np.float32)  # samples from buffer_start on
    buffer_start = 0
    core = 0  # global sample where the current window's own part begins
    levels, flags = np.zeros(0), np.zeros(0, dtype=bool)  # per unit from ``core``
    finished = False

    def window(stop: int, last: bool = False) -> CandidateTranscript:
        """Decode samples [core - overlap, stop + overlap); keep the words that start
        in [core, stop) (from ``core`` on for the ``last`` window)."""
        first = max(core - overlap, buffer_start)
        after = min(stop + overlap, buffer_start + buffer.shape[0])
        signal = buffer[first - buffer_start : after - buffer_start]
        log_probs = model.utterance_log_probs(model.compute_features(signal))
        best = model.decoder.decode(log_probs, n_best=1)[0]
        offset = first // unit  # output frames before the window
        best = shift_candidate(best, offset, offset * unit / rate)
        end = math.inf if last else stop / rate
        return trim_candidate(best, core / rate, end, _space_text(model.alphabet))

    blocks = iter(blocks)
    while True:
        block = next(blocks, None)
        if block is None:
            finished = True
        else:
            buffer = np.concatenate([buffer, block])
            level, quiet = pauses.feed(block)
            levels = np.concatenate([levels, level])
            flags = np.concatenate([flags, quiet])
        while True:
            at = choose_cut(
                levels, flags, limits.min_length, limits.max_length, limits.min_pause
            )
            stop = None if at is None else core + at * unit
            have = buffer_start + buffer.shape[0]
            if stop is None or (stop + overlap > have and not finished):
                break  # no cut yet, or its right-hand context not read yet
            piece = window(stop)
            levels, flags = levels[at:], flags[at:]
            core = stop
            drop = max(0, core - overlap - buffer_start)
            buffer, buffer_start = buffer[drop:].copy(), buffer_start + drop
            yield piece
        if finished:
            if buffer_start + buffer.shape[0] > core:
                yield window(buffer_start + buffer.shape[0], last=True)
            return
