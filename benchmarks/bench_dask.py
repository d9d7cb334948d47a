"""Files per second of batch transcription: one process against a local Dask cluster
of 1 and 2 worker processes.

The files are the AN4 test set (``an4_mini/test.csv``) and the first ``--arctic`` rows
of ``kathleen_arctic/test.csv``, decoded by a DeepSpeech model of width ``--hidden``
(random weights: the same work as trained ones), greedily or with ``--scorer`` by beam
search. Each side decodes the whole list through the code ``npspeech decode`` runs:

- one process: ``npspeech.batch.transcribe_all`` with the model already loaded;
- Dask: ``npspeech.distributed.transcribe`` on ``LocalCluster`` of N workers started as
  ``--scheduler local:N`` starts them (one task thread each, the cores shared out).

Cluster start-up and the workers' first pass (imports, model load) are timed apart
from a second, warm pass; files per second are those of the warm pass. Every cluster
result must equal the single-process transcript, or the script fails.

Run::

    python benchmarks/bench_dask.py [--workers 1 2] [--arctic 30] [--hidden 2048] \\
        [--scorer PATH --beam-width 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get("NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)


def corpus_files(arctic: int) -> list[str]:
    """The AN4 test set and the first ``arctic`` ARCTIC test rows (absolute paths)."""
    from npspeech.corpus import read_csvs

    an4 = read_csvs([DATA / "an4_mini" / "test.csv"])
    kathleen = read_csvs([DATA / "kathleen_arctic" / "test.csv"])[:arctic]
    return [str(u.audio_path) for u in [*an4, *kathleen]]


def save_model(path: Path, hidden: int) -> str:
    """A DeepSpeech model file of width ``hidden`` with seeded random weights."""
    from npspeech import modelfile, models
    from npspeech.alphabet import Alphabet
    from npspeech.config import FeatureConfig, ModelConfig

    alphabet = Alphabet.from_file(DATA / "deepspeech_smoke" / "alphabet.txt")
    config = ModelConfig(architecture="deepspeech", n_hidden=hidden, dropout=0.0)
    network = models.init(config, 26, alphabet.n_classes, np.random.default_rng(0))
    return str(
        modelfile.save(path, modelfile.ModelFile(network, FeatureConfig(), alphabet))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--arctic", type=int, default=30, help="ARCTIC test rows")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--scorer", default="", help="beam search with this scorer")
    parser.add_argument("--beam-width", type=int, default=500)
    args = parser.parse_args(argv)

    from npspeech import batch
    from npspeech.config import DecodeConfig
    from npspeech.distributed import dask as cluster_decode

    load_before = os.getloadavg()
    files = corpus_files(args.arctic)
    config = (
        DecodeConfig(decoder="beam", beam_width=args.beam_width, scorer=args.scorer)
        if args.scorer
        else DecodeConfig()
    )
    with tempfile.TemporaryDirectory() as folder:
        spec = batch.ModelSpec(
            save_model(Path(folder) / "model.npz", args.hidden), None, config
        )
        sources = [batch.Source(f, f, Path(f).stem) for f in files]

        started = time.perf_counter()
        model = batch.load_model(spec)
        load = time.perf_counter() - started
        list(batch.transcribe_all(sources[:2], spec, model=model))  # JIT warm-up
        started = time.perf_counter()
        expected = list(batch.transcribe_all(sources, spec, model=model))
        single = time.perf_counter() - started
        audio = sum(r.seconds for r in expected)
        assert not any(r.error for r in expected), [r.error for r in expected]
        texts = [r.candidates[0].text for r in expected]

        print(
            f"{len(files)} files, {audio:.1f} s of audio, width {args.hidden}, "
            f"{config.decoder}, {os.cpu_count()} CPUs"
        )
        print("| run | start-up | first pass | warm pass | files/s | vs one process |")
        print("|---|---|---|---|---|---|")
        print(
            f"| one process | model load {load:.1f} s | - | {single:.1f} s | "
            f"{len(files) / single:.2f} | 1.00 |"
        )
        for workers in args.workers:
            started = time.perf_counter()
            client, cluster = cluster_decode.connect(f"local:{workers}")
            client.wait_for_workers(workers)
            startup = time.perf_counter() - started
            try:
                passes = []
                for _ in range(2):
                    started = time.perf_counter()
                    results = list(cluster_decode.transcribe(sources, spec, client))
                    passes.append(time.perf_counter() - started)
                    got = [
                        r.candidates[0].text if not r.error else r.error
                        for r in results
                    ]
                    assert got == texts, "the cluster's transcripts differ"
            finally:
                cluster_decode.close(client, cluster)
            print(
                f"| Dask, {workers} worker{'s' if workers > 1 else ''} | "
                f"{startup:.1f} s | {passes[0]:.1f} s | {passes[1]:.1f} s | "
                f"{len(files) / passes[1]:.2f} | {single / passes[1]:.2f} |"
            )
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
