"""Accuracy on the test CSVs: pocketsphinx, and an npspeech model beside it.

pocketsphinx (its PyPI wheel bundles CMU's general US English acoustic model, a
general English 3-gram LM and the CMU pronouncing dictionary) decodes every row of
each test CSV as a user would run it: ``pocketsphinx.Decoder()`` with its default
configuration (``--ps-lm``/``--ps-dict`` replace the LM/dictionary). With ``--model``
an npspeech model decodes the same rows from the same int16 samples: greedily, or by
beam search with ``--scorer``. Per set the script prints WER and CER for each system,
the npspeech/pocketsphinx ratio, the summed per-utterance process CPU time and the
real-time factor (CPU seconds per second of audio); ``--json-out`` keeps all of it
with every hypothesis.

Scoring is ``npspeech eval``'s: corpus WER/CER from :mod:`npspeech.metrics` against
the CSV's transcript as written. pocketsphinx's words come in its dictionary's
spelling, so its hypothesis is normalised first (:func:`normalise_hypothesis`): tags
and fillers (``<sil>``, ``[noise]``, ``++um++``) go, alternate-pronunciation marks
(``word(2)``) are stripped, text is lower-cased, hyphens and underscores become
spaces, and any other character outside the transcripts' alphabet (npspeech's English
alphabet and whatever else the references use) is dropped (``a.m.`` -> ``am``).
npspeech's hypotheses are scored as they come, as ``npspeech eval`` scores them.

``--jobs N`` decodes with N worker processes (each loads its own decoder once; the
CPU times stay per utterance, so the real-time factor does not depend on N).

Run::

    nice -n 10 python benchmarks/bench_peers_accuracy.py [--jobs 2] \\
        [--csv $NPSPEECH_DATA/kathleen_arctic/test.csv ...] \\
        [--model runs/m/model.npz [--scorer lm.scorer] [--beam-width 500]] \\
        [--ps-lm LM --ps-dict DICT] [--json-out results.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.metadata
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from npspeech import constants as C
from npspeech import metrics
from npspeech.alphabet import english
from npspeech.corpus import Utterance, load_audio
from npspeech.data import read_csvs
from npspeech.errors import ConfigError, DataError, NpspeechError
from npspeech.fileio import write_text_atomically

REPO = Path(__file__).resolve().parent.parent
# The test sets compared by default, under $NPSPEECH_DATA (../shared/data by default).
DEFAULT_SETS = ("kathleen_arctic/test.csv", "fsdd/test.csv", "an4_mini/test.csv")
# pocketsphinx's non-word tokens: sentence marks and silence (<s>, </s>, <sil>),
# noise fillers ([noise], [breath]) and garbage/filler words (++um++).
NON_WORD = re.compile(r"^(<[^>]*>|\[[^\]]*\]|\+\+.*\+\+)$")
# A dictionary entry's alternate-pronunciation suffix: "to(2)".
ALTERNATE = re.compile(r"\(\d+\)$")
# Dictionary spellings that join words: "able-bodied", "new_york".
WORD_JOINERS = "-_"


def data_root() -> Path:
    """The real-data folder: ``$NPSPEECH_DATA`` or ``../shared/data``."""
    default = REPO.parent / "shared" / "data"
    return Path(os.environ.get("NPSPEECH_DATA", default)).resolve()


# -- text ------------------------------------------------------------------------------
def transcript_alphabet(transcripts: Iterable[str]) -> frozenset[str]:
    """The alphabet the references are written in: npspeech's English alphabet (the
    space, a-z and the apostrophe; DeepSpeech's) and any other character they use.

    A set's own characters alone would be too few: FSDD's ten digit names never use
    "a" or "y", and a recognised "you" must stay a (wrong) word, not shrink to "ou".
    """
    characters = set(english().labels) | {" "}
    for transcript in transcripts:
        characters.update(transcript)
    return frozenset(characters)


def normalise_hypothesis(text: str, alphabet: frozenset[str]) -> str:
    """pocketsphinx's words in the references' spelling.

    Parameters
    ----------
    text : str
        Whitespace-separated words as pocketsphinx writes them (``hyp().hypstr``, or
        the segment words, which keep tags and alternate marks).
    alphabet : frozenset of str
        The characters transcripts may use (:func:`transcript_alphabet`).

    Returns
    -------
    str
        Lower-case words separated by single spaces, every character in ``alphabet``.
    """
    words = []
    for token in text.lower().split():
        if NON_WORD.match(token):
            continue
        token = ALTERNATE.sub("", token)
        for joiner in WORD_JOINERS:
            token = token.replace(joiner, " ")
        words.append("".join(c for c in token if c in alphabet or c == " "))
    return " ".join(" ".join(words).split())


@dataclasses.dataclass(frozen=True)
class Score:
    """Corpus error rates of one system on one set."""

    wer: float
    cer: float
    word_edits: int
    words: int
    char_edits: int
    chars: int
    empty_hypotheses: int  # utterances for which the system wrote nothing


def score(references: Sequence[str], hypotheses: Sequence[str]) -> Score:
    """Corpus WER/CER as ``npspeech eval`` computes them (total edits over total
    reference length).

    Raises
    ------
    DataError
        When the counts differ or a hypothesis is not a string (a decode that
        produced nothing must say so with ``""``).
    """
    if len(references) != len(hypotheses):
        raise DataError(
            f"{len(references)} references but {len(hypotheses)} hypotheses"
        )
    for index, hypothesis in enumerate(hypotheses):
        if not isinstance(hypothesis, str):
            raise DataError(f"hypothesis {index} is {hypothesis!r}, not a string")
    counts = metrics.corpus_error_counts(references, hypotheses)
    return Score(
        wer=counts.wer,
        cer=counts.cer,
        word_edits=counts.word_edits,
        words=counts.words,
        char_edits=counts.char_edits,
        chars=counts.chars,
        empty_hypotheses=sum(1 for h in hypotheses if not h.strip()),
    )


# -- audio -----------------------------------------------------------------------------
def int16_samples(utterance: Utterance) -> np.ndarray:
    """The row's audio as 16 kHz int16 samples, ``(N,)`` int16.

    npspeech loads int16 files as int16 / 32768, so multiplying back gives the file's
    own samples; both systems decode this same buffer.
    """
    signal = load_audio(utterance, C.SAMPLE_RATE)
    scaled = np.round(signal.astype(np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


# -- systems ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PocketSphinxSpec:
    """pocketsphinx's configuration; ``""`` keeps the bundled default."""

    lm: str = ""
    dictionary: str = ""

    name = "pocketsphinx"

    def build(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise ConfigError(
                f"pocketsphinx is not installed ({error}): pip install pocketsphinx"
            ) from None
        options = {"loglevel": "ERROR"}
        if self.lm:
            options["lm"] = self.lm
        if self.dictionary:
            options["dict"] = self.dictionary
        try:
            decoder = Decoder(**options)
        except RuntimeError as error:
            raise ConfigError(
                f"pocketsphinx could not start with --ps-lm {self.lm or '(default)'} "
                f"--ps-dict {self.dictionary or '(default)'}: {error}"
            ) from None
        return _PocketSphinx(decoder)

    def describe(self) -> dict:
        from pocketsphinx import Config

        config = Config()  # the bundled defaults the decoder starts from
        return {
            "version": importlib.metadata.version("pocketsphinx"),
            "hmm": config["hmm"],
            "lm": self.lm or config["lm"],
            "dict": self.dictionary or config["dict"],
        }


class _PocketSphinx:
    def __init__(self, decoder):
        self.decoder = decoder

    def transcribe(self, samples: np.ndarray) -> str:
        self.decoder.start_utt()
        # full_utt: the whole utterance is here, so the decoder may use it all at once.
        self.decoder.process_raw(samples.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        # No hypothesis at all (nothing recognised) is the empty transcript, explicitly.
        return "" if hypothesis is None else hypothesis.hypstr


@dataclasses.dataclass(frozen=True)
class NpspeechSpec:
    """An npspeech model file, decoded greedily or with a scorer."""

    model: str
    scorer: str = ""
    beam_width: int = C.BEAM_WIDTH

    name = "npspeech"

    def build(self):
        from npspeech.api import Model
        from npspeech.config import DecodeConfig

        model = Model(self.model)
        if self.scorer:
            config = DecodeConfig(
                decoder="beam", beam_width=self.beam_width, scorer=self.scorer
            )
        else:
            config = DecodeConfig(decoder="greedy")
        model.set_decoder(config)
        # Compile the kernels now, so that no utterance's time includes the JIT.
        model.stt(np.zeros(C.SAMPLE_RATE, dtype=np.int16))
        return _Npspeech(model)

    def describe(self) -> dict:
        return {
            "version": importlib.metadata.version("npspeech"),
            "model": self.model,
            "scorer": self.scorer,
            "decoder": f"beam {self.beam_width}" if self.scorer else "greedy",
        }


class _Npspeech:
    def __init__(self, model):
        self.model = model

    def transcribe(self, samples: np.ndarray) -> str:
        return self.model.stt(samples)


# The system a worker process decodes with, built once per process.
_worker_system = None


def _start_worker(spec) -> None:
    global _worker_system
    _worker_system = spec.build()


def _decode_one(system, utterance: Utterance) -> tuple[str, float, float]:
    samples = int16_samples(utterance)
    start = time.process_time()
    text = system.transcribe(samples)
    cpu_seconds = time.process_time() - start
    return text, cpu_seconds, samples.size / C.SAMPLE_RATE


def _decode_in_worker(utterance: Utterance) -> tuple[str, float, float]:
    return _decode_one(_worker_system, utterance)


@dataclasses.dataclass
class SetRun:
    """One system's decode of one set: raw hypotheses and times."""

    hypotheses: list[str]  # as the system wrote them, in CSV order
    cpu_seconds: list[float]  # per utterance, decode only (audio loading excluded)
    audio_seconds: float
    wall_seconds: float


class Runner:
    """Decodes lists of rows with one system, in this process or in ``jobs`` workers."""

    def __init__(self, spec, jobs: int):
        self.spec = spec
        self.jobs = jobs
        if jobs == 1:
            self.system = spec.build()
            self.pool = None
        else:
            spec.build()  # fail here, with the real message, before the pool starts
            self.pool = concurrent.futures.ProcessPoolExecutor(
                jobs, initializer=_start_worker, initargs=(spec,)
            )

    def run(self, utterances: Sequence[Utterance]) -> SetRun:
        start = time.perf_counter()
        if self.pool is None:
            results = [_decode_one(self.system, u) for u in utterances]
        else:
            chunk = max(1, len(utterances) // (4 * self.jobs))
            results = list(
                self.pool.map(_decode_in_worker, utterances, chunksize=chunk)
            )
        wall = time.perf_counter() - start
        # The sanity contract: one transcript (possibly "") per row, in order.
        if len(results) != len(utterances):
            raise DataError(
                f"{self.spec.name}: {len(results)} results for {len(utterances)} rows"
            )
        for utterance, (text, _, _) in zip(utterances, results, strict=True):
            if not isinstance(text, str):
                raise DataError(f"{utterance.source}: {self.spec.name} gave {text!r}")
        return SetRun(
            hypotheses=[text for text, _, _ in results],
            cpu_seconds=[seconds for _, seconds, _ in results],
            audio_seconds=sum(duration for _, _, duration in results),
            wall_seconds=wall,
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def evaluate_set(
    runner: Runner, utterances: Sequence[Utterance], normalise: bool
) -> tuple[dict, Score]:
    """Decode and score one set; the result's dict is what ``--json-out`` keeps."""
    references = [u.transcript for u in utterances]
    run = runner.run(utterances)
    hypotheses = run.hypotheses
    if normalise:
        alphabet = transcript_alphabet(references)
        hypotheses = [normalise_hypothesis(h, alphabet) for h in hypotheses]
    result = score(references, hypotheses)
    cpu = sum(run.cpu_seconds)
    record = {
        **dataclasses.asdict(result),
        "cpu_seconds": cpu,
        "wall_seconds": run.wall_seconds,
        "audio_seconds": run.audio_seconds,
        "rtf": cpu / run.audio_seconds if run.audio_seconds else float("nan"),
        "utterances": [
            {"source": u.source, "reference": r, "raw": raw, "hypothesis": h}
            for u, r, raw, h in zip(
                utterances, references, run.hypotheses, hypotheses, strict=True
            )
        ],
    }
    return record, result


# -- command line ----------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--csv",
        action="append",
        default=None,
        help="a test CSV (repeatable); default: "
        + ", ".join(DEFAULT_SETS)
        + " under $NPSPEECH_DATA",
    )
    parser.add_argument("--model", default="", help="an npspeech model to compare")
    parser.add_argument("--scorer", default="", help="the npspeech model's scorer")
    parser.add_argument(
        "--beam-width", type=int, default=C.BEAM_WIDTH, help="with --scorer"
    )
    parser.add_argument(
        "--ps-lm", default="", help="pocketsphinx LM (default: its own)"
    )
    parser.add_argument(
        "--ps-dict", default="", help="pocketsphinx dictionary (default: its own)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="decoding processes")
    parser.add_argument("--limit", type=int, default=0, help="first N rows per set")
    parser.add_argument("--json-out", default="", help="write every result here")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, not {args.jobs}")
    if args.beam_width < 1:
        parser.error(f"--beam-width must be at least 1, not {args.beam_width}")
    if args.limit < 0:
        parser.error(f"--limit must be 0 (all) or more, not {args.limit}")
    if args.scorer and not args.model:
        parser.error("--scorer needs --model")
    for option in ("model", "scorer", "ps_lm", "ps_dict"):
        value = getattr(args, option)
        if value and not Path(value).is_file():
            flag = "--" + option.replace("_", "-")
            raise DataError(f"{flag} {value}: no such file")
    return args


def _format_row(name: str, values: Sequence[str]) -> str:
    return f"{name:<26}" + "".join(f"{v:>10}" for v in values)


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    csvs = args.csv or [str(data_root() / name) for name in DEFAULT_SETS]
    sets = []
    for csv in csvs:
        utterances = read_csvs([csv])
        if args.limit:
            utterances = utterances[: args.limit]
        if not utterances:
            raise DataError(f"{csv}: no rows")
        sets.append((csv, utterances))
    specs = [PocketSphinxSpec(args.ps_lm, args.ps_dict)]
    if args.model:
        specs.append(NpspeechSpec(args.model, args.scorer, args.beam_width))
    report = {
        "command": " ".join(["python benchmarks/bench_peers_accuracy.py", *argv]),
        "jobs": args.jobs,
        "systems": {spec.name: spec.describe() for spec in specs},
        "sets": [
            {"csv": csv, "rows": len(utterances), "systems": {}}
            for csv, utterances in sets
        ],
    }
    header = ["rows", "audio s", "WER", "CER", "CPU s", "RTF"]
    print(_format_row("set / system", header))
    for spec in specs:
        runner = Runner(spec, args.jobs)
        try:
            for entry, (csv, utterances) in zip(report["sets"], sets, strict=True):
                record, result = evaluate_set(
                    runner, utterances, normalise=spec.name == "pocketsphinx"
                )
                entry["systems"][spec.name] = record
                label = f"{Path(csv).parent.name}/{Path(csv).name}"
                print(
                    _format_row(
                        f"{label} {spec.name[:2]}",
                        [
                            str(len(utterances)),
                            f"{record['audio_seconds']:.1f}",
                            f"{result.wer:.4f}",
                            f"{result.cer:.4f}",
                            f"{record['cpu_seconds']:.1f}",
                            f"{record['rtf']:.3f}",
                        ],
                    ),
                    flush=True,
                )
        finally:
            runner.close()
    if args.model:
        print("npspeech / pocketsphinx ratios:")
        for entry in report["sets"]:
            ps, ns = entry["systems"]["pocketsphinx"], entry["systems"]["npspeech"]
            entry["ratios"] = {
                key: _ratio(ns[key], ps[key]) for key in ("wer", "cer", "rtf")
            }
            ratios = entry["ratios"]
            print(
                f"  {Path(entry['csv']).parent.name}: WER x{ratios['wer']:.2f}  "
                f"CER x{ratios['cer']:.2f}  RTF x{ratios['rtf']:.2f}"
            )
    return report


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return 1.0 if numerator == 0 else float("inf")
    return numerator / denominator


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = parse_args(argv)
        report = run(args, argv)
        if args.json_out:
            write_text_atomically(args.json_out, json.dumps(report, indent=1) + "\n")
    except NpspeechError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
