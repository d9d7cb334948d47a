"""The training data pipeline: feature cache, bucketing, padding, augmentation.

- :class:`FeatureCache` computes each utterance's features once, in memory and
  optionally on disk.
- :func:`make_batches` buckets utterances by length under a budget of padded frames,
  with SortaGrad in the first epoch; :class:`BatchLoader` turns the plan into padded,
  time-major :class:`Batch` tensors, with augmentation seeded per batch so that a
  resumed run sees exactly the same batches.
- Corpus reading and validation (:func:`read_csvs`, :func:`check_corpus`,
  :func:`validate_corpus`, :class:`Utterance`) live in :mod:`npspeech.corpus` and are
  re-exported here, so the whole pipeline is ``npspeech.data``.

Shapes: ``T`` frames, ``B`` utterances in a batch, ``F`` features, ``L`` labels.
Context windows are not applied here: the model applies them, so frame counts stay the
audio's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import constants as C
from . import features as frontend
from .alphabet import Alphabet
from .augment import (
    AugmentConfig,
    NoiseBank,
    apply_signal_plan,
    draw_signal_plan,
    spec_augment,
    speed_output_length,
)
from .config import FeatureConfig, to_dict
from .corpus import (
    CSV_COLUMNS,
    DataProblem,
    Utterance,
    _listing,
    _probe_all,
    check_corpus,
    ctc_min_frames,
    feature_frames,
    load_audio,
    read_csvs,
    resampled_length,
    validate_corpus,
)
from .errors import AlphabetError, AudioError, ConfigError, DataError
from .fileio import write_atomically

__all__ = [
    "CSV_COLUMNS",
    "Batch",
    "BatchLoader",
    "DataProblem",
    "FeatureCache",
    "Utterance",
    "check_corpus",
    "collate",
    "ctc_min_frames",
    "feature_frames",
    "feature_stats",
    "load_audio",
    "make_batches",
    "read_csvs",
    "resampled_length",
    "validate_corpus",
]

# Bumped when the cached feature files change meaning, so old caches are not reused.
_CACHE_FORMAT = 1


# -- feature cache ---------------------------------------------------------------------
class FeatureCache:
    """Features of each utterance computed once, kept in memory and optionally on disk.

    Parameters
    ----------
    feature_config
        How features are computed. Context windows are never applied here
        (``n_context`` is ignored): the model applies them.
    directory
        Folder for ``.npy`` files, one per utterance, named by a hash of the audio's
        absolute path, size and modification time and of the feature settings; so a
        changed file or setting is never served stale. Created if missing. None keeps
        features in memory only.
    max_memory_bytes
        Bytes of features kept in memory; the least recently used go first.
    stats
        Corpus statistics (``npspeech.features.FeatureStats``) for
        ``normalize = "global"``; part of the key, so new statistics mean new entries.

    Notes
    -----
    Returned arrays are read-only views of the cached ones: copy before writing.
    """

    def __init__(
        self,
        feature_config: FeatureConfig,
        directory: str | os.PathLike | None = None,
        max_memory_bytes: int = C.FEATURE_CACHE_MEMORY_BYTES,
        stats=None,
    ):
        if max_memory_bytes < 0:
            raise ConfigError(f"max_memory_bytes must be >= 0, got {max_memory_bytes}")
        self.feature_config = dataclasses.replace(feature_config, n_context=0)
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DataError(
                    f"{self.directory}: cannot create the feature cache ({error})"
                ) from None
        self.max_memory_bytes = int(max_memory_bytes)
        self.stats = stats
        settings = {"format": _CACHE_FORMAT, "features": to_dict(self.feature_config)}
        if stats is not None:
            moments = np.concatenate([stats.mean, stats.std]).astype(np.float64)
            settings["stats"] = hashlib.sha256(moments.tobytes()).hexdigest()
        self._settings = json.dumps(settings, sort_keys=True)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self.computed = 0  # features computed from audio (neither cache had them)
        self.disk_hits = 0  # features read back from the directory

    def key(self, utterance: Utterance) -> str:
        """Hex SHA-256 of the audio's path, size and mtime and the feature settings."""
        try:
            stat = utterance.audio_path.stat()
        except OSError as error:
            raise AudioError(
                f"{utterance.source}: audio file {utterance.audio_path} cannot be read "
                f"({error.strerror})"
            ) from None
        identity = f"{utterance.audio_path}\0{stat.st_size}\0{stat.st_mtime_ns}\0"
        return hashlib.sha256((identity + self._settings).encode()).hexdigest()

    def get(self, utterance: Utterance) -> np.ndarray:
        """Features of ``utterance``: ``(T, F)`` float32, read-only, no augmentation.

        Raises
        ------
        AudioError
            When the audio cannot be loaded (the row's source is named).
        """
        key = self.key(utterance)
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                self._memory.move_to_end(key)
                return cached
        features = self._read_disk(key)
        if features is None:
            features = self.compute(utterance)
            self.computed += 1
            self._write_disk(key, features)
        else:
            self.disk_hits += 1
        features.setflags(write=False)
        self._remember(key, features)
        return features

    def compute(
        self, utterance: Utterance, signal: np.ndarray | None = None
    ) -> np.ndarray:
        """Features of ``utterance`` (or of ``signal``, its audio after augmentation),
        computed afresh: ``(T, F)`` float32, C-contiguous. Nothing is cached."""
        if signal is None:
            signal = load_audio(utterance, self.feature_config.sample_rate)
        computed = frontend.compute(
            signal, self.feature_config, stats=self.stats, where=utterance.source
        )
        return np.ascontiguousarray(computed, dtype=np.float32)

    def _remember(self, key: str, features: np.ndarray) -> None:
        with self._lock:
            if key in self._memory or features.nbytes > self.max_memory_bytes:
                return
            self._memory[key] = features
            self._memory_bytes += features.nbytes
            while self._memory_bytes > self.max_memory_bytes:
                _, evicted = self._memory.popitem(last=False)
                self._memory_bytes -= evicted.nbytes

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.npy"

    def _read_disk(self, key: str) -> np.ndarray | None:
        if self.directory is None:
            return None
        path = self._path(key)
        try:
            features = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # a damaged file is recomputed and overwritten
        if features.ndim != 2 or features.dtype != np.float32:
            return None
        return features

    def _write_disk(self, key: str, features: np.ndarray) -> None:
        if self.directory is None:
            return
        write_atomically(
            self._path(key),
            lambda stream: np.save(stream, features, allow_pickle=False),
        )


def feature_stats(
    utterances: Sequence[Utterance],
    feature_config: FeatureConfig,
    *,
    directory: str | os.PathLike | None = None,
    progress: bool = True,
) -> frontend.FeatureStats:
    """Mean and standard deviation of un-normalised features over a corpus.

    What ``normalize = "global"`` needs: pass the result as ``FeatureCache(...,
    stats=...)``. ``directory`` caches the raw features on disk as
    :class:`FeatureCache` does (they are not kept in memory).

    Returns
    -------
    npspeech.features.FeatureStats
        ``mean`` and ``std``, ``(F,)`` float64, over every frame of every utterance.
    """
    raw = dataclasses.replace(feature_config, normalize="none", n_context=0)
    cache = FeatureCache(raw, directory, max_memory_bytes=0)
    stats = frontend.FeatureStats()
    bar = tqdm(utterances, desc="feature statistics", unit="file", disable=not progress)
    for utterance in bar:
        stats.update(cache.get(utterance))
    if stats.count == 0:
        raise DataError("no feature frames to gather statistics from")
    return stats


# -- batches ---------------------------------------------------------------------------
@dataclasses.dataclass
class Batch:
    """Padded, time-major training inputs for ``B`` utterances."""

    features: np.ndarray  # (T, B, F) float32, zero past each utterance's length
    lengths: np.ndarray  # (B,) int32, frames of each utterance
    targets: np.ndarray  # (sum L,) int32, every label sequence concatenated
    target_lengths: np.ndarray  # (B,) int32, labels of each utterance
    utterances: list[Utterance]
    transcripts: list[str]

    def __len__(self) -> int:
        return len(self.utterances)


def pad(
    features: Sequence[np.ndarray], dtype: np.typing.DTypeLike = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """``B`` arrays ``(T_b, F)`` as one time-major ``(T_max, B, F)`` array of
    ``dtype``, zero past each length, and the lengths ``(B,)`` int32."""
    lengths = np.array([f.shape[0] for f in features], dtype=np.int32)
    padded = np.zeros((int(lengths.max()), len(features), features[0].shape[1]), dtype)
    for b, example in enumerate(features):
        padded[: example.shape[0], b, :] = example  # (T_b, F) into column b
    return padded, lengths


def collate(
    features: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    utterances: Sequence[Utterance],
) -> Batch:
    """Pad per-utterance arrays into a :class:`Batch`.

    Parameters
    ----------
    features
        ``B`` arrays ``(T_b, F)`` float32.
    targets
        ``B`` arrays ``(L_b,)`` of class ids.
    utterances
        The ``B`` rows they come from.
    """
    if not features:
        raise DataError("cannot make a batch of no utterances")
    padded, lengths = pad(features)
    target_lengths = np.array([t.size for t in targets], dtype=np.int32)
    flat = np.concatenate([np.asarray(t, dtype=np.int32) for t in targets])
    return Batch(
        features=padded,
        lengths=lengths,
        targets=flat.astype(np.int32, copy=False),
        target_lengths=target_lengths,
        utterances=list(utterances),
        transcripts=[u.transcript for u in utterances],
    )


def make_batches(
    durations_or_frames: Sequence[int],
    frames_budget: int,
    *,
    max_batch_size: int | None = None,
    seed: int = 0,
    epoch: int = 0,
    sortagrad: bool = True,
    shuffle: bool = True,
) -> list[list[int]]:
    """Group utterances into batches of similar length under a padded-frames budget.

    Utterances are sorted by length and packed greedily: a batch takes the next one
    while ``T_max * B <= frames_budget`` (and ``B <= max_batch_size``). An utterance
    longer than the budget makes a batch of its own, so no batch exceeds the budget by
    more than a single utterance could. Equal lengths are ordered at random per epoch,
    so batches mix differently each epoch.

    Parameters
    ----------
    durations_or_frames
        ``(N,)`` length of each utterance, in frames (any unit the budget shares).
    frames_budget
        Most padded frames ``T_max * B`` per batch.
    max_batch_size
        Most utterances per batch; None for no limit beyond the budget.
    seed, epoch
        Seed the order: the plan is a function of ``(seed, epoch)`` only.
    sortagrad
        In epoch 0 keep batches shortest first (SortaGrad, Amodei et al. 2016).
    shuffle
        Shuffle the batch order (from epoch 1, or 0 without SortaGrad). False gives the
        sorted order with ties by index every epoch, as for evaluation.

    Returns
    -------
    list of list of int
        Indices into ``durations_or_frames``; each appears in exactly one batch.
    """
    lengths = np.asarray(durations_or_frames)
    if lengths.ndim != 1:
        raise ConfigError(f"durations_or_frames must be 1-D, got shape {lengths.shape}")
    if lengths.size and (lengths.min() < 0 or not np.all(np.isfinite(lengths))):
        raise ConfigError("durations_or_frames must be finite and >= 0")
    if frames_budget <= 0:
        raise ConfigError(f"frames_budget must be > 0, got {frames_budget}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ConfigError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
    if seed < 0 or epoch < 0:
        raise ConfigError(
            f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}"
        )
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        order = np.lexsort((rng.permutation(lengths.size), lengths))
    else:
        order = np.argsort(lengths, kind="stable")
    limit = lengths.size if max_batch_size is None else max_batch_size
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order.tolist():
        # In sorted order the newcomer is the longest; a zero-length one still costs a
        # frame, so empties can't pile into one unbounded batch.
        longest = max(float(lengths[index]), 1.0)
        if current and (
            longest * (len(current) + 1) > frames_budget or len(current) >= limit
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    if shuffle and not (sortagrad and epoch == 0):
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class BatchLoader:
    """Padded, bucketed, optionally augmented batches of a corpus, epoch by epoch.

    Parameters
    ----------
    utterances
        The (validated) corpus rows.
    alphabet
        Encodes transcripts into targets.
    feature_config
        Feature settings; used for frame counts (the cache computes the features).
    cache
        Where clean features come from.
    frames_budget
        Most padded frames ``T_max * B`` per batch (see :func:`make_batches`). With
        speed perturbation, lengths are planned at the slowest speed so the budget
        holds.
    max_batch_size
        Most utterances per batch, or None.
    seed
        Seeds batch order and augmentation.
    sortagrad
        Shortest batches first in epoch 0.
    augmentation
        What augmentation to apply, or None for none. Batch ``i`` of epoch ``e`` draws
        from ``numpy.random.default_rng([seed, e, i])`` whatever came before it.
    shuffle
        False keeps the sorted order every epoch (for evaluation).
    durations
        Seconds of each utterance, as :func:`validate_corpus` returns them; None reads
        them from the audio headers.
    prefetch
        Prepare the next batch in a background thread while the current one is used.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        alphabet: Alphabet,
        feature_config: FeatureConfig,
        cache: FeatureCache,
        *,
        frames_budget: int = C.FRAMES_BUDGET,
        max_batch_size: int | None = None,
        seed: int = 0,
        sortagrad: bool = True,
        augmentation: AugmentConfig | None = None,
        shuffle: bool = True,
        durations: Sequence[float] | None = None,
        prefetch: bool = True,
    ):
        self.utterances = list(utterances)
        if not self.utterances:
            raise DataError("a batch loader needs at least one utterance")
        self.alphabet = alphabet
        self.feature_config = feature_config
        self.cache = cache
        self.frames_budget = int(frames_budget)
        self.max_batch_size = max_batch_size
        self.seed = int(seed)
        self.sortagrad = sortagrad
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.prefetch = prefetch
        self._targets = self._encode_all()
        self._min_frames = [ctc_min_frames(target) for target in self._targets]
        self.frames = self._planned_frames(durations)  # (N,) int64
        self._noise_bank = None
        if augmentation is not None and augmentation.noise_files:
            self._noise_bank = NoiseBank(
                augmentation.noise_files, feature_config.sample_rate
            )
        self._plans: dict[int, list[list[int]]] = {}
        # Validates the budget and sizes now rather than at the first batch.
        self._n_batches = len(self.epoch_batches(0))

    def _encode_all(self) -> list[np.ndarray]:
        targets, errors = [], []
        for utterance in self.utterances:
            try:
                targets.append(self.alphabet.encode(utterance.transcript))
            except AlphabetError as error:
                errors.append(f"{utterance.source}: {error}")
        if errors:
            raise DataError(_listing("transcripts the alphabet cannot spell", errors))
        return targets

    def _planned_frames(self, durations: Sequence[float] | None) -> np.ndarray:
        config = self.feature_config
        if durations is None:
            infos = _probe_all(
                [u.audio_path for u in self.utterances], False, "reading durations"
            )
            problems = [
                f"{u.source}: {info.problem[1]}"
                for u, info in zip(self.utterances, infos)
                if info.problem is not None
            ]
            if problems:
                raise DataError(_listing("audio the loader cannot use", problems))
            samples = [
                resampled_length(info.n_samples, info.sample_rate, config.sample_rate)
                for info in infos
            ]
        else:
            if len(durations) != len(self.utterances):
                raise ConfigError(
                    f"durations has {len(durations)} entries for "
                    f"{len(self.utterances)} utterances"
                )
            # Rounded up (less a float error) as a resampler rounds its length.
            samples = [math.ceil(d * config.sample_rate - 1e-6) for d in durations]
        factor = (
            1.0 if self.augmentation is None else self.augmentation.max_length_factor
        )
        frames = [
            frontend.n_frames(int(math.ceil(n * factor)), config) for n in samples
        ]
        return np.asarray(frames, dtype=np.int64)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The plan for ``epoch``: utterance indices of each batch, in order."""
        if epoch not in self._plans:
            self._plans = {
                epoch: make_batches(
                    self.frames,
                    self.frames_budget,
                    max_batch_size=self.max_batch_size,
                    seed=self.seed,
                    epoch=epoch,
                    sortagrad=self.sortagrad,
                    shuffle=self.shuffle,
                )
            }
        return self._plans[epoch]

    def __len__(self) -> int:
        """Batches per epoch (the same every epoch)."""
        return self._n_batches

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of ``epoch``, augmented as it is in :meth:`iterate`."""
        plan = self.epoch_batches(epoch)
        if not 0 <= index < len(plan):
            raise ConfigError(f"batch index {index} is outside 0..{len(plan) - 1}")
        members = plan[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        features = [self._features(i, rng) for i in members]
        return collate(
            features,
            [self._targets[i] for i in members],
            [self.utterances[i] for i in members],
        )

    def _features(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """``(T, F)`` features of utterance ``index``, augmented from ``rng``."""
        utterance, config = self.utterances[index], self.augmentation
        if config is None:
            return self.cache.get(utterance)
        plan = draw_signal_plan(config, rng)
        if plan.is_identity:
            features = self.cache.get(utterance)
        else:
            signal = load_audio(utterance, self.feature_config.sample_rate)
            if plan.speed is not None:
                sped_up = speed_output_length(signal.size, plan.speed)
                if (
                    frontend.n_frames(sped_up, self.feature_config)
                    < self._min_frames[index]
                ):
                    # Faster, it would be too short for its transcript under CTC.
                    plan = dataclasses.replace(plan, speed=None)
            signal = apply_signal_plan(signal, plan, rng, self._noise_bank)
            features = self.cache.compute(utterance, signal)
        return spec_augment(features, config, rng)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start``, ``start + 1``, ... of ``epoch``.

        ``iterate(epoch, start=k)`` yields exactly what ``iterate(epoch)`` yields from
        its ``k``-th batch on, augmentation included, so training resumes mid-epoch.
        """
        total = len(self.epoch_batches(epoch))
        if not 0 <= start <= total:
            raise ConfigError(f"start batch {start} is outside 0..{total}")
        if not self.prefetch:
            for index in range(start, total):
                yield self.batch(epoch, index)
            return
        # One worker keeps the cache and the noise bank single-threaded, and prepares
        # batch i + 1 while the caller trains on batch i.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.batch, epoch, start) if start < total else None
            for index in range(start, total):
                batch = pending.result()
                pending = (
                    pool.submit(self.batch, epoch, index + 1)
                    if index + 1 < total
                    else None
                )
                yield batch
