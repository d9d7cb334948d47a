"""`npspeech decode`: transcribe audio files, folders, globs, corpus CSVs or stdin.

Writes the transcripts to stdout, or one file per input under `--output-dir`
(written atomically; existing files are kept unless `--overwrite`). Formats: `text`;
`json` as DeepSpeech's client prints it (one input; several inputs to stdout give JSON
Lines with an added "audio" field); `srt` and `vtt` subtitles; `tsv` rows of start,
end and text. A file that fails is reported on stderr and the others still decode;
the exit code is 1 when any failed. DeepSpeech's client flags are accepted too
(`--audio`, `--scorer`, `--beam_width`, `--lm_alpha`, `--lm_beta`, `--json`,
`--candidate_transcripts`, `--hot_words`, `--extended`, `--stream`).

`--scheduler ADDRESS` spreads the files over a Dask cluster (a running `dask
scheduler`, or `local:N` for N worker processes on this machine); the outputs are the
same and are still written here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import silence_stdout
from .eval import add_decoder_options, decode_config_from, resolve_model_option

FORMATS = ("text", "json", "srt", "vtt", "tsv")
#: Candidate transcripts in JSON output: DeepSpeech's client's default.
JSON_CANDIDATES = 3


def register(subparsers: Any) -> None:
    """Add the ``decode`` subcommand."""
    parser = subparsers.add_parser(
        "decode", help="transcribe audio files", description=__doc__
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="AUDIO",
        help="audio files (WAV, FLAC, ...; resampled to the model's rate), folders "
        "(searched recursively), glob patterns, or - for 16-bit PCM on stdin",
    )
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="model file, or bundled:NAME (default: the bundled model, decoded with "
        "its scorer unless --decoder greedy or --scorer is given; see `npspeech "
        "models`)",
    )
    parser.add_argument(
        "--audio",
        action="append",
        default=[],
        metavar="AUDIO",
        help="an input, as DeepSpeech's client takes it; repeat for more "
        "(default: none)",
    )
    parser.add_argument(
        "--csv",
        action="append",
        default=[],
        metavar="CSV",
        help="transcribe every row of a corpus CSV; repeat the flag for more "
        "(default: none)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="text, DeepSpeech's json, srt or vtt subtitles, or tsv (default: text)",
    )
    out.add_argument(
        "--json",
        action="store_true",
        help="DeepSpeech's spelling of --format json (default: off)",
    )
    out.add_argument(
        "--extended",
        action="store_true",
        help="the best transcript joined from its tokens, as DeepSpeech's client "
        "prints it (default: off)",
    )
    out.add_argument(
        "--candidate-transcripts",
        "--candidate_transcripts",
        type=int,
        default=None,
        metavar="N",
        help=f"transcripts per input in json output, with the beam decoder "
        f"(default: {JSON_CANDIDATES}, as DeepSpeech's client)",
    )
    out.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write one file per input here, named after it (default: stdout)",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files in --output-dir (default: refuse)",
    )
    out.add_argument(
        "--tsv-unit",
        choices=("segment", "word"),
        default=None,
        help="tsv rows per segment or per word (default: segment)",
    )
    out.add_argument(
        "--max-line-chars",
        type=int,
        default=None,
        help="srt/vtt/tsv segments: characters per line, two lines a cue (default: 42)",
    )
    out.add_argument(
        "--max-cue-seconds",
        type=float,
        default=None,
        help="srt/vtt/tsv segments: longest segment (default: 7)",
    )
    out.add_argument(
        "--pause-seconds",
        type=float,
        default=None,
        help="srt/vtt/tsv segments: a silence this long between words starts a "
        "new one (default: 0.5)",
    )
    run_group = parser.add_argument_group("running")
    run_group.add_argument(
        "--rate",
        type=int,
        default=None,
        metavar="HZ",
        help="sample rate of raw PCM on stdin (-); a WAV header gives its own "
        "(default: the model's)",
    )
    run_group.add_argument(
        "--stream",
        type=int,
        default=None,
        metavar="SIZE",
        help="feed the audio through the streaming API in chunks of SIZE samples, "
        "as DeepSpeech's client does (default: decode each input whole)",
    )
    run_group.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, each loading the model once (default: 1)",
    )
    run_group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="decode on a Dask cluster: the address of a running scheduler "
        "(tcp://HOST:8786), or local:N to start N worker processes here; needs "
        "npspeech[dask] (default: decode in this process or --jobs workers)",
    )
    run_group.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: shown when stderr is a terminal)",
    )
    run_group.add_argument(
        "--backend",
        choices=("numpy", "numba", "cupy"),
        default=None,
        help="kernel backend (default: $NPSPEECH_BACKEND or numba)",
    )
    add_decoder_options(parser, deepspeech_aliases=True)
    parser.set_defaults(run=run)


def _output_format(args: argparse.Namespace, beam: bool) -> tuple[str, int, dict]:
    """The format, candidate count and writer options; rejects options that would do
    nothing with them."""
    from ..errors import ConfigError

    chosen = [
        name
        for name, on in (
            (f"--format {args.format}", args.format),
            ("--json", args.json),
            ("--extended", args.extended),
        )
        if on
    ]
    if len(chosen) > 1 and not (args.json and args.format == "json"):
        raise ConfigError(f"{' and '.join(chosen)} choose different outputs")
    fmt = "json" if args.json else "extended" if args.extended else args.format
    fmt = fmt or "text"
    n_best = 1
    if args.candidate_transcripts is not None:
        if fmt != "json":
            raise ConfigError(
                "--candidate-transcripts only applies to json output "
                f"(the {fmt} output holds the best transcript alone)"
            )
        if args.candidate_transcripts < 1:
            raise ConfigError(
                f"--candidate-transcripts {args.candidate_transcripts}: give 1 or more"
            )
        if not beam and args.candidate_transcripts > 1:
            raise ConfigError(
                "--candidate-transcripts needs the beam decoder (greedy decoding "
                "gives one transcript)"
            )
        n_best = args.candidate_transcripts
    elif fmt == "json" and beam:
        n_best = JSON_CANDIDATES
    options: dict[str, Any] = {}
    segmenting = (
        ("--max-line-chars", "max_line_chars", args.max_line_chars),
        ("--max-cue-seconds", "max_seconds", args.max_cue_seconds),
        ("--pause-seconds", "pause_seconds", args.pause_seconds),
    )
    for flag, name, value in segmenting:
        if value is None:
            continue
        if fmt not in ("srt", "vtt", "tsv") or args.tsv_unit == "word":
            raise ConfigError(f"{flag} only applies to srt, vtt and tsv segments")
        if not value > 0:
            raise ConfigError(f"{flag} {value}: give a value > 0")
        options[name] = value
    if args.tsv_unit is not None:
        if fmt != "tsv":
            raise ConfigError("--tsv-unit only applies to --format tsv")
        options["unit"] = args.tsv_unit
    return fmt, n_best, options


def run(args: argparse.Namespace) -> int:
    """Run ``npspeech decode``."""
    from .. import batch
    from ..errors import ConfigError
    from ..jit_notice import announce_compilation

    announce_compilation()  # "compiling kernels, first run only", once

    resolve_model_option(args)  # no --model: the bundled one, with its scorer
    decode_config = decode_config_from(args)
    fmt, n_best, options = _output_format(args, decode_config.decoder == "beam")
    inputs = [*args.inputs, *args.audio]
    if args.rate is not None and (args.rate <= 0 or batch.STDIN_NAME not in inputs):
        raise ConfigError("--rate gives the Hz (> 0) of raw PCM read from - (stdin)")
    if args.overwrite and not args.output_dir:
        raise ConfigError("--overwrite only applies with --output-dir")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: give 1 or more worker processes")
    if args.scheduler is not None:
        _check_scheduler_options(args, inputs)
    if args.stream is not None and args.stream < 1:
        raise ConfigError(f"--stream {args.stream}: give 1 or more samples a chunk")
    if not inputs and not args.csv:
        raise ConfigError("nothing to decode: give AUDIO files, folders, --csv or -")
    sources = batch.discover(
        inputs, args.csv, stdin=sys.stdin.buffer, raw_rate=args.rate
    )
    if fmt in ("srt", "vtt") and len(sources) > 1 and not args.output_dir:
        raise ConfigError(
            f"{len(sources)} inputs make one {fmt} file each: give --output-dir"
        )
    paths = None
    if args.output_dir:
        from ..formats import EXTENSIONS

        paths = batch.output_paths(
            sources, args.output_dir, EXTENSIONS[fmt], args.overwrite
        )
    spec = batch.ModelSpec(args.model, args.backend, decode_config)
    model = batch.load_model(spec)  # a bad model or scorer stops here, before any work
    if args.stream and not model.streamable:
        raise ConfigError(
            f"--stream: {args.model} is a bidirectional model, which cannot stream"
        )
    writer = _Writer(fmt, options, paths, several=len(sources) > 1)
    if args.scheduler is not None:
        return _run_on_cluster(args.scheduler, sources, spec, n_best, writer, args)
    jobs = args.jobs or 1
    if jobs > 1:
        model = None  # the workers load their own
    results = batch.transcribe_all(
        sources,
        spec,
        n_best=n_best,
        jobs=jobs,
        model=model,
        stream_chunk=args.stream or 0,
    )
    return writer.consume(results, len(sources), progress=not args.no_progress)


def _check_scheduler_options(args: argparse.Namespace, inputs: list) -> None:
    """Refuse what a Dask cluster does not do: other ways of running, and stdin."""
    from ..batch import STDIN_NAME
    from ..errors import ConfigError

    if args.jobs is not None:
        raise ConfigError(
            "--jobs and --scheduler choose different workers: give one of them"
        )
    if args.stream is not None:
        raise ConfigError("--stream decodes in this process: not with --scheduler")
    if STDIN_NAME in inputs:
        raise ConfigError("- (stdin) is read in this process: not with --scheduler")


def _run_on_cluster(
    scheduler: str, sources: list, spec: Any, n_best: int, writer: Any, args: Any
) -> int:
    """Decode on a Dask cluster; results arrive in input order, the bar counts the
    files as they finish anywhere."""
    from ..distributed import dask as cluster_decode

    client, cluster = cluster_decode.connect(scheduler)
    try:
        bar = writer.open_bar(len(sources), progress=not args.no_progress)
        results = cluster_decode.transcribe(
            sources,
            spec,
            client,
            n_best=n_best,
            on_done=(lambda _: bar.update(1)) if bar is not None else None,
        )
        return writer.consume(results, len(sources), progress=False)
    finally:
        cluster_decode.close(client, cluster)


class _Writer:
    """Puts each result where it goes and reports failures and the summary."""

    def __init__(self, fmt: str, options: dict, paths: list | None, several: bool):
        self.fmt = fmt
        self.options = options
        self.paths = paths
        self.several = several
        self.first_row = True
        self.bar: Any = None

    def open_bar(self, total: int, progress: bool) -> Any:
        """A progress bar on a terminal, for more than one input (else None); the
        caller updates it as files finish."""
        if progress and total > 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="decoding", leave=False)
        return self.bar

    def consume(self, results: Any, total: int, progress: bool) -> int:
        """Write every result; with ``progress``, a bar counts them as they come
        (a bar from :meth:`open_bar` is closed here too)."""
        from ..batch import Summary

        summary = Summary()
        generator = results
        if progress and total > 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = results = tqdm(
                results, total=total, unit="file", desc="decoding", leave=False
            )
        try:
            for index, result in enumerate(results):
                summary.add(result)
                for message in result.warnings:
                    self.say(message)
                if result.error:
                    self.say(f"npspeech decode: error: {result.error}")
                    continue
                self.put(index, result)
        except BrokenPipeError:
            # the reader of stdout has gone (`| head`): stop quietly, as cat does
            generator.close()  # cancels the work not yet started
            silence_stdout()
            return 1 if summary.failed else 0
        finally:
            if self.bar is not None:
                self.bar.close()
        self.say(summary.line())
        return 1 if summary.failed else 0

    def say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def put(self, index: int, result: Any) -> None:
        from .. import formats
        from ..fileio import write_text_atomically

        candidates = result.candidates
        name = result.source.name
        if self.paths is not None:
            text = formats.WRITERS[self.fmt](candidates, **self.options)
            write_text_atomically(self.paths[index], text)
            return
        if not self.several:
            text = formats.WRITERS[self.fmt](candidates, **self.options)
        elif self.fmt == "json":
            text = formats.json_line(candidates, name)
        elif self.fmt == "tsv":
            text = formats.tsv(
                candidates, audio=name, header=self.first_row, **self.options
            )
        else:  # text, extended: the input's name, a tab, the transcript
            text = f"{name}\t{formats.WRITERS[self.fmt](candidates)}"
        self.first_row = False
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout, end="")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()  # stream each input's output (and notice a closed pipe now)
