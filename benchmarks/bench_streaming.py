"""Streaming latency: the time to feed one chunk and ask for the current text.

Real speech (the smoke-test recordings and ARCTIC test sentences, about
``--seconds`` in all) is fed to ``npspeech.Model.create_stream()`` in chunks of 20, 100
and 1000 ms; each chunk's latency is ``feed_audio_content`` plus
``intermediate_decode`` (wall clock). The model is DeepSpeech's architecture at width
``--hidden`` (random weights: the same work as trained ones), decoding with the beam
search at DeepSpeech's width 500 and DeepSpeech's scorer from the smoke-test data. The
distribution (p50/p90/p99/max, milliseconds) is printed per chunk size, with the
real-time factor (processing time / audio time). Each run's final text is checked
against decoding the whole recording at once.

Run::

    python benchmarks/bench_streaming.py [--hidden 2048] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get("NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
CHUNK_MS = (20, 100, 1000)


def speech(seconds: float, rate: int) -> np.ndarray:
    """Real recordings joined to about ``seconds`` of float32 audio at ``rate``."""
    from npspeech.audio import load
    from npspeech.corpus import read_csvs

    rows = read_csvs([DATA / "deepspeech_smoke" / "test.csv"])
    rows += read_csvs([DATA / "kathleen_arctic" / "test.csv"])
    parts, total = [], 0
    for row in rows:
        parts.append(load(row.audio_path, rate))
        total += parts[-1].shape[0]
        if total >= seconds * rate:
            break
    return np.concatenate(parts)[: int(seconds * rate)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--beam-width", type=int, default=500)
    args = parser.parse_args()

    from npspeech import models
    from npspeech.alphabet import Alphabet
    from npspeech.api import Model
    from npspeech.config import FeatureConfig, ModelConfig

    alphabet = Alphabet.from_file(DATA / "deepspeech_smoke" / "alphabet.txt")
    config = ModelConfig(architecture="deepspeech", n_hidden=args.hidden, dropout=0.0)
    network = models.init(config, 26, alphabet.n_classes, np.random.default_rng(0))
    model = Model.from_network(network, FeatureConfig(), alphabet)
    model.set_beam_width(args.beam_width)
    model.enable_external_scorer(DATA / "deepspeech_smoke" / "lm" / "pruned_lm.scorer")
    signal = speech(args.seconds, model.sample_rate)
    audio_seconds = signal.shape[0] / model.sample_rate
    expected = model.stt(signal)  # also compiles every kernel before timing
    print(
        f"DeepSpeech width {args.hidden}, beam {args.beam_width} + scorer, "
        f"{audio_seconds:.1f} s of speech"
    )
    for chunk_ms in CHUNK_MS:
        size = model.sample_rate * chunk_ms // 1000
        stream = model.create_stream()
        latencies = []
        for start in range(0, signal.shape[0], size):
            begin = time.perf_counter()
            stream.feed_audio_content(signal[start : start + size])
            stream.intermediate_decode()
            latencies.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        text = stream.finish_stream()
        finish = time.perf_counter() - begin
        assert text == expected, "a stream must decode as the whole recording does"
        ms = np.asarray(latencies) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        rtf = (ms.sum() / 1000 + finish) / audio_seconds
        print(
            f"{chunk_ms:5d} ms chunks ({len(ms)}): p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
            f"p99 {p99:.1f} ms, max {ms.max():.1f} ms; finish {finish * 1000:.0f} ms; "
            f"real-time factor {rtf:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
