"""Peak memory of decoding long recordings: 1 minute against 30 minutes.

A recording of real speech is built by concatenating the ARCTIC training recordings
(each followed by 0.3 s of silence, as between sentences) into a 16-bit WAV file,
written block by block. Each duration is then decoded in its own child process by
``npspeech.Model.transcribe_full(path)`` (a file this long goes through
``npspeech.segment``: read in blocks, streamed through the network, the decoder cut at
pauses) with a DeepSpeech model of width ``--hidden`` (2048 as released; random
weights, which cost the same memory as trained ones). The child reports its peak
resident set size (``ru_maxrss``), the time and the transcript's length; the script
fails when the peaks differ by ``--limit-mb`` or more.

Run::

    python benchmarks/bench_long_audio.py [--minutes 1 30] [--hidden 2048] \\
        [--decoder beam --beam-width 500 --scorer PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get("NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
GAP_SECONDS = 0.3


def write_speech(path: Path, minutes: float, rate: int = 16_000) -> float:
    """Concatenated ARCTIC recordings, ``minutes`` long, as 16-bit PCM WAV."""
    import soundfile

    from npspeech.audio import load
    from npspeech.corpus import read_csvs

    rows = read_csvs([DATA / "kathleen_arctic" / "train.csv"])
    needed, written = int(minutes * 60 * rate), 0
    gap = np.zeros(int(GAP_SECONDS * rate), dtype=np.float32)
    with soundfile.SoundFile(
        str(path), "w", samplerate=rate, channels=1, subtype="PCM_16"
    ) as out:
        while written < needed:
            for row in rows:
                piece = np.concatenate([load(row.audio_path, rate), gap])
                piece = piece[: needed - written]
                out.write(piece)
                written += piece.shape[0]
                if written >= needed:
                    break
    return written / rate


def child(args: argparse.Namespace) -> None:
    """Decode ``args.audio`` once and print the measurements as JSON."""
    from npspeech import models
    from npspeech.alphabet import Alphabet
    from npspeech.api import Model
    from npspeech.config import DecodeConfig, FeatureConfig, ModelConfig

    alphabet = Alphabet.from_file(DATA / "deepspeech_smoke" / "alphabet.txt")
    config = ModelConfig(architecture="deepspeech", n_hidden=args.hidden, dropout=0.0)
    network = models.init(config, 26, alphabet.n_classes, np.random.default_rng(0))
    model = Model.from_network(network, FeatureConfig(), alphabet)
    model.set_decoder(
        DecodeConfig(
            decoder=args.decoder,
            beam_width=args.beam_width,
            scorer=args.scorer or "",
        )
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = model.transcribe_full(args.audio)[0]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = [t.start_time for t in result.tokens]
    assert times == sorted(times), "token times must increase"
    print(
        json.dumps(
            {
                "peak_rss_mb": peak / 1024,
                "rss_before_decoding_mb": before / 1024,
                "seconds": seconds,
                "tokens": len(result.tokens),
                "last_token_s": times[-1] if times else 0.0,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 30.0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--decoder", choices=["greedy", "beam"], default="beam")
    parser.add_argument("--beam-width", type=int, default=500)
    parser.add_argument("--scorer", default="")
    parser.add_argument("--limit-mb", type=float, default=100.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for minutes in args.minutes:
            path = Path(folder) / f"speech_{minutes:g}min.wav"
            duration = write_speech(path, minutes)
            command = [sys.executable, __file__, "--child", "--audio", str(path)]
            command += ["--hidden", str(args.hidden), "--decoder", args.decoder]
            command += ["--beam-width", str(args.beam_width)]
            if args.scorer:
                command += ["--scorer", args.scorer]
            output = subprocess.run(
                command, check=True, capture_output=True, text=True
            ).stdout
            results[minutes] = json.loads(output.strip().splitlines()[-1])
            print(
                f"{minutes:g} min ({duration:.0f} s of audio): "
                f"peak RSS {results[minutes]['peak_rss_mb']:.0f} MB "
                f"(model built: {results[minutes]['rss_before_decoding_mb']:.0f} MB), "
                f"{results[minutes]['seconds']:.1f} s, "
                f"{results[minutes]['tokens']} tokens",
                flush=True,
            )
            path.unlink()
    peaks = [r["peak_rss_mb"] for r in results.values()]
    spread = max(peaks) - min(peaks)
    print(f"peak RSS spread: {spread:.1f} MB (limit {args.limit_mb:g} MB)")
    return 0 if spread < args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
