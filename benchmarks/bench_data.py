"""The training data pipeline on real corpora: corpus checking and batch loading.

1. Corpus check (``check_corpus``: audio headers with soundfile.info, alphabet, CTC
   feasibility) against decoding every file to measure its length, the way a naive
   check would. Asserts that both give the same durations.
2. One epoch of ``BatchLoader`` batches: cold (features computed), warm in memory, warm
   from the on-disk cache in a new process-local instance, and with audio augmentation
   (speed, volume, noise: features recomputed every time) plus SpecAugment. Asserts
   that cached batches equal cold ones.

Prints medians and ratios. Data comes from ``$NPSPEECH_DATA`` (default
``../shared/data``).

    python benchmarks/bench_data.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from npspeech.alphabet import Alphabet
from npspeech.augment import AugmentConfig
from npspeech.config import FeatureConfig
from npspeech.data import BatchLoader, FeatureCache, check_corpus, read_csvs

DATA = Path(
    os.environ.get("NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
CONFIG = FeatureConfig()


def median_seconds(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def decode_durations(utterances) -> list[float]:
    durations = []
    for utterance in utterances:
        samples, rate = soundfile.read(str(utterance.audio_path), dtype="int16")
        durations.append(samples.shape[0] / rate)
    return durations


def bench_check(alphabet: Alphabet, repeats: int) -> None:
    for csv_name in ("fsdd/all.csv", "kathleen_arctic/train.csv"):
        rows = read_csvs([DATA / csv_name])
        check, (good, problems, durations) = median_seconds(
            lambda rows=rows: check_corpus(rows, alphabet, CONFIG, progress=False),
            repeats,
        )
        decode, decoded = median_seconds(lambda rows=rows: decode_durations(rows), 1)
        assert not problems and len(good) == len(rows), problems[:3]
        np.testing.assert_allclose(durations, decoded, rtol=0, atol=1e-9)
        print(
            f"check {csv_name:28s} {len(rows):5d} files  header check {check:6.2f} s "
            f"({len(rows) / check:7.0f} files/s)  full decode {decode:6.2f} s  "
            f"ratio {check / decode:.3f}"
        )


def bench_loader(alphabet: Alphabet, repeats: int) -> None:
    rows = read_csvs([DATA / "kathleen_arctic" / "dev.csv"])
    good, _, durations = check_corpus(rows, alphabet, CONFIG, progress=False)
    seconds = sum(durations)
    with tempfile.TemporaryDirectory() as folder:

        def loader(cache, augmentation=None):
            return BatchLoader(
                good,
                alphabet,
                CONFIG,
                cache,
                frames_budget=8000,
                max_batch_size=16,
                seed=1,
                augmentation=augmentation,
                durations=durations,
            )

        def epoch(batch_loader):
            return list(batch_loader.iterate(1))

        warm = loader(FeatureCache(CONFIG, folder))
        cold_time, cold = median_seconds(lambda: epoch(warm), 1)
        memory_time, hot = median_seconds(lambda: epoch(warm), repeats)
        disk_time, from_disk = median_seconds(
            lambda: epoch(loader(FeatureCache(CONFIG, folder))), repeats
        )
        for a, b, c in zip(cold, hot, from_disk):
            assert np.array_equal(a.features, b.features)
            assert np.array_equal(a.features, c.features)
        augmentation = AugmentConfig(
            speed_probability=1.0,
            volume_probability=1.0,
            noise_probability=1.0,
            spec_augment_probability=1.0,
        )
        augmented = loader(FeatureCache(CONFIG), augmentation)
        augment_time, batches = median_seconds(lambda: epoch(augmented), repeats)
        assert sum(len(b) for b in batches) == len(good)
    print(
        f"loader kathleen_arctic/dev.csv: {len(good)} utterances, {seconds:.0f} s of "
        f"audio, {len(cold)} batches per epoch"
    )
    for name, value in [
        ("cold (features computed)", cold_time),
        ("warm, memory cache", memory_time),
        ("warm, disk cache (new instance)", disk_time),
        ("speed+volume+noise+SpecAugment", augment_time),
    ]:
        print(
            f"  {name:34s} {value:7.3f} s/epoch  {seconds / value:8.0f}x real time  "
            f"ratio to cold {value / cold_time:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    alphabet = Alphabet.from_file(DATA / "deepspeech_smoke" / "alphabet.txt")
    # Warm the Numba feature kernels before anything is timed.
    FeatureCache(CONFIG).compute(read_csvs([DATA / "deepspeech_smoke/ldc93s1.csv"])[0])
    bench_check(alphabet, args.repeats)
    bench_loader(alphabet, args.repeats)


if __name__ == "__main__":
    main()
