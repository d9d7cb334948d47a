"""A short decode in a fresh process, end to end: wall time and whether Numba loaded.

Runs, each in a new interpreter, ``npspeech decode --model MODEL FILE`` and a first
``npspeech.Model(MODEL).stt(FILE)`` (the time from the interpreter's start to the
transcript, as ``/usr/bin/time`` would see it, minus nothing), in turns, with Numba's
cache empty for the first decode and warm afterwards. FILE is real speech: the first
kathleen_arctic test recordings concatenated and cut to ``--seconds`` (white noise
where the data folder is absent). Prints every wall time, the median per case, and
whether the process imported Numba (a short decode should not: see
``npspeech/runtime/_quick_start.py``). Targets (issue 16): a 5 s file under 5 s with
an empty cache, under 1 s with a warm one.

    python benchmarks/bench_first_run.py --model M [--seconds 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

DATA = Path(
    os.environ.get(
        "NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
SAMPLE_RATE = 16_000

# What each case runs in its fresh interpreter (``str.format`` fills in the model and
# the audio); its last line on stderr says whether it imported Numba.
REPORT = (
    "import json, sys\n"
    "print(json.dumps({{'numba': 'numba' in sys.modules}}), file=sys.stderr)\n"
)
DECODE = (
    "from npspeech import cli\n"
    "assert cli.main(['decode', '--model', {model!r}, {audio!r}]) == 0\n" + REPORT
)
STT = "import npspeech\nprint(npspeech.Model({model!r}).stt({audio!r}))\n" + REPORT


def speech_file(seconds: float, folder: Path) -> tuple[Path, str]:
    """A 16-bit WAV of ``seconds`` of speech at 16 kHz, and where it came from."""
    n = int(seconds * SAMPLE_RATE)
    table = DATA / "kathleen_arctic" / "test.csv"
    if table.is_file():
        parts, total = [], 0
        with open(table, newline="") as rows:
            for row in csv.DictReader(rows):
                samples, rate = soundfile.read(
                    DATA / "kathleen_arctic" / row["wav_filename"], dtype="int16"
                )
                assert rate == SAMPLE_RATE, rate
                parts.append(samples)
                total += samples.size
                if total >= n:
                    break
        samples, source = np.concatenate(parts)[:n], "kathleen_arctic test, joined"
    else:
        noise = np.random.default_rng(0).standard_normal(n) * 3000
        samples, source = noise.astype(np.int16), "white noise"
    path = folder / f"speech_{seconds:g}s.wav"
    soundfile.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return path, source


def run(script: str, cache: Path) -> tuple[float, bool]:
    """Wall seconds of ``python -c script`` with ``cache`` as Numba's cache, and
    whether it imported Numba."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    environment.pop("NUMBA_DISABLE_JIT", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    wall = time.perf_counter() - start
    return wall, json.loads(done.stderr.strip().splitlines()[-1])["numba"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    model = str(Path(args.model).resolve())
    with tempfile.TemporaryDirectory() as folder:
        audio, source = speech_file(args.seconds, Path(folder))
        cache = Path(folder) / "numba_cache"
        cases = {
            "decode": DECODE.format(model=model, audio=str(audio)),
            "stt": STT.format(model=model, audio=str(audio)),
        }
        print(f"{args.seconds:g} s of {source}; model {args.model}")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        wall, numba = run(cases["decode"], cache)
        print(f"decode, empty cache: {wall:.2f} s (imported Numba: {numba})")
        times: dict[str, list[float]] = {name: [] for name in cases}
        imported: dict[str, set[bool]] = {name: set() for name in cases}
        for _ in range(args.runs):  # in turns, so that load drifts hit both alike
            for name, script in cases.items():
                wall, numba = run(script, cache)
                times[name].append(wall)
                imported[name].add(numba)
        for name in cases:
            walls = ", ".join(f"{t:.2f}" for t in times[name])
            print(
                f"{name}, warm cache: median {statistics.median(times[name]):.2f} s "
                f"({walls}); imported Numba: {sorted(imported[name])}"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
