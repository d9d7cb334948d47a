"""Language-model tooling throughput: ARPA building, KenLM loading, scorer reading.

Builds an interpolated modified Kneser-Ney model from a synthetic Zipf-distributed
corpus (seeded; word frequencies like natural text, ~15 words a sentence), times each
stage, checks the result (histories sum to one, KenLM agrees with npspeech's ARPA
evaluation) and reads the DeepSpeech smoke-test scorer when the real data is present.

    python benchmarks/bench_lm.py [--words 2000000] [--order 4] [--vocabulary 50000]

There is no lmplz in the kenlm pip package, so there is no peer to run side by side;
the figures are absolute and the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from npspeech.lm.build import ArpaModel, build_arpa, write_arpa
from npspeech.lm.package import open_scorer

DATA = Path(
    os.environ.get(
        "NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


def synthetic_corpus(n_words: int, vocabulary: int, seed: int = 0) -> list[str]:
    """Sentences of Zipf-distributed pseudo-words over a-z (kept by normalisation)."""
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.1, size=n_words), vocabulary) - 1  # (N,) word ranks
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    # Word r is the base-26 spelling of r + 1: distinct, short for frequent ranks.
    spellings = []
    for rank in range(vocabulary):
        value, text = rank + 1, []
        while value:
            value, digit = divmod(value - 1, 26)
            text.append(letters[digit])
        spellings.append("".join(reversed(text)))
    words = np.asarray(spellings, dtype=object)[ranks]
    lengths = rng.integers(5, 26, size=n_words // 5)  # 5..25 words, mean 15
    ends = np.cumsum(lengths)
    ends = ends[ends < n_words]
    return [" ".join(chunk) for chunk in np.split(words, ends) if len(chunk)]


def timed(function, *args, repeats=1, **kwargs):
    """Result, median wall seconds and median CPU seconds of this process."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*args, **kwargs)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=2_000_000)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=50_000)
    args = parser.parse_args()
    import kenlm

    sentences, wall, _ = timed(synthetic_corpus, args.words, args.vocabulary)
    n_words = sum(len(s.split()) for s in sentences)
    print(f"corpus: {len(sentences)} sentences, {n_words} words (made in {wall:.1f} s)")
    print("times: wall / CPU of this process (CPU is steadier on a shared machine)")
    build_arpa(sentences[:2000], order=args.order)  # warm-up (imports, allocator)
    model, wall, cpu = timed(build_arpa, sentences, order=args.order)
    print(
        f"build_arpa order {args.order}: {wall:.2f} / {cpu:.2f} s = "
        f"{n_words / cpu / 1e6:.2f} M words per CPU second; n-grams {model.counts()}"
    )
    _, wall, raw_cpu = timed(build_arpa, sentences, order=args.order, normalize=False)
    print(f"  without normalisation: {wall:.2f} / {raw_cpu:.2f} s")
    pruned, wall, cpu = timed(build_arpa, sentences, order=args.order, prune=[0, 1, 1])
    print(
        f"build_arpa --prune 0 1 1: {wall:.2f} / {cpu:.2f} s; n-grams {pruned.counts()}"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.arpa"
        _, wall, cpu = timed(write_arpa, model, path)
        size = path.stat().st_size
        print(f"write_arpa: {wall:.2f} / {cpu:.2f} s, {size / 2**20:.1f} MiB")
        language_model, wall, cpu = timed(kenlm.Model, str(path))
        print(f"kenlm.Model(arpa) load: {wall:.2f} / {cpu:.2f} s")
        # Correctness: KenLM and npspeech's evaluation of the written file agree, and
        # a few histories' distributions sum to one.
        arpa = ArpaModel.read(path)
        for sentence in sentences[:20]:
            assert abs(language_model.score(sentence) - arpa.score(sentence)) < 1e-3
        targets = [w for w in arpa.words if w != "<s>"]
        for history in [(), ("<s>",), ("a",), ("a", "b")]:
            total = sum(10.0 ** arpa.log10_prob(w, history) for w in targets)
            assert abs(total - 1.0) < 1e-6, (history, total)
        print("check: KenLM scores match; sampled histories sum to 1")
    scorer = DATA / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"
    if scorer.is_file():
        opened, wall, cpu = timed(open_scorer, scorer, repeats=5)
        assert len(opened.vocabulary) == 3540
        print(
            f"open_scorer(pruned_lm.scorer, 439 kB, 3540 words): "
            f"{wall * 1e3:.0f} / {cpu * 1e3:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
