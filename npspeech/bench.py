"""``npspeech bench``: how fast this install transcribes on this machine.

For one model (a model file, or a freshly initialised DeepSpeech-shaped network of a
given width) and a few seconds of synthetic speech-like audio, it times each stage of
transcription on every installed kernel backend:

- ``features``: the MFCC front end (:func:`npspeech.features.compute`);
- ``acoustic``: the inference network (:class:`npspeech.runtime.InferenceNetwork`),
  batched offline (``forward`` over a padded batch) and as a batch-1 stream fed 1 s
  chunks (``forward_chunk`` with its state carried);
- ``decoder``: best path, prefix beam search, and beam search with a KenLM scorer (the
  decoders are compiled Cython, the same on every backend);
- ``end to end``: features, network, log-softmax and the beam search with the scorer
  on one utterance, batch 1.

Each figure is the median of ``repeats`` timed runs (after one untimed warm-up where
kernels compile or load on their first call), given as a real-time factor (seconds of
work per second of audio; below 1 is faster than real time) and as times real time
(its inverse). The report also holds the process's peak
resident memory, the compute threads (Numba's, and BLAS/OpenMP pools through
threadpoolctl when it is installed) and the JIT compile time of a first transcription
in a fresh interpreter, with an empty Numba cache (cold) and again with the cache it
filled (warm).

Shape legend: T frames, B batch, F features per frame, V classes (blank included).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import constants as C
from .errors import ConfigError

#: Named widths of the initialised DeepSpeech-shaped network (DeepSpeech 0.9 is 2048).
WIDTHS = {"tiny": 64, "small": 512, "medium": 1024, "large": 2048}
#: Backends the inference network runs on, in the order they are reported.
BACKENDS = ("numba", "numpy")
#: Seconds of audio per streaming chunk.
CHUNK_SECONDS = 1.0
#: The small DeepSpeech scorer under ``$NPSPEECH_DATA``, used when there is one.
DATA_SCORER = Path("deepspeech_smoke") / "lm" / "pruned_lm.scorer"


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What ``npspeech bench`` measures."""

    model: str = ""  # model file; "" = an initialised DeepSpeech network of `width`
    width: str = "small"  # a name of WIDTHS or a number of hidden units
    seconds: float = 5.0  # seconds of audio per utterance
    batch: int = 4  # utterances in the batched offline acoustic run
    repeats: int = 3  # timed runs per figure (the median is reported)
    backends: tuple[str, ...] = BACKENDS  # those that do not import are skipped
    scorer: str = ""  # scorer for the beam + LM decoder; "" = see `scorer_path`
    beam_width: int = C.BEAM_WIDTH  # for both beam decoders
    compile_time: bool = True  # measure the cold and warm JIT compile in subprocesses
    progress: bool = True  # a progress bar on stderr


def hidden_width(width: str | int) -> int:
    """The number of hidden units ``width`` names (``small`` = 512, or a number).

    Raises
    ------
    ConfigError
        For an unknown name or a number below 1.
    """
    text = str(width).strip().lower()
    if text in WIDTHS:
        return WIDTHS[text]
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"--width: {width!r} is neither one of {', '.join(WIDTHS)} nor a "
            "positive number of hidden units"
        )
    return value


def check_settings(settings: BenchSettings) -> None:
    """Raise :class:`ConfigError` naming the first setting out of range."""
    if not settings.seconds >= 1.0:
        raise ConfigError(f"--seconds must be at least 1, got {settings.seconds}")
    if settings.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {settings.batch}")
    if settings.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {settings.repeats}")
    if settings.beam_width < 1:
        raise ConfigError(f"--beam-width must be at least 1, got {settings.beam_width}")
    unknown = [name for name in settings.backends if name not in BACKENDS]
    if unknown or not settings.backends:
        raise ConfigError(
            f"--backend: {', '.join(unknown) or 'none given'}; the inference network "
            f"runs on {', '.join(BACKENDS)}"
        )
    if settings.model:
        if not Path(settings.model).is_file():
            raise ConfigError(f"--model: {settings.model}: no such file")
    else:
        hidden_width(settings.width)
    if settings.scorer and not Path(settings.scorer).is_file():
        raise ConfigError(f"--scorer: {settings.scorer}: no such file")


# --- inputs ---------------------------------------------------------------------------


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """float32 (N,) audio: harmonics of a moving pitch with a formant-like envelope,
    noise, and a pause (the decoders see frames of every kind)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    pitch = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t)  # Hz
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2  # syllable-rate loudness
    signal = envelope * sum(np.sin(h * phase) / h for h in range(1, 12)) * 0.1
    signal = signal + 0.005 * rng.standard_normal(n)
    signal[n // 2 : n // 2 + sample_rate // 5] = 0.0  # 0.2 s pause
    return signal.astype(np.float32)


def load_model(settings: BenchSettings):
    """(network, feature config, alphabet, description) of the model to time."""
    from . import modelfile, models
    from .alphabet import english
    from .config import FeatureConfig, ModelConfig

    if settings.model:
        loaded = modelfile.load(settings.model)
        description = {"source": str(settings.model)}
        network, features, alphabet = loaded.network, loaded.features, loaded.alphabet
    else:
        width = hidden_width(settings.width)
        alphabet, features = english(), FeatureConfig()
        config = ModelConfig(n_hidden=width, dropout=0.0)
        rng = np.random.default_rng(0)
        network = models.init(config, 26, alphabet.n_classes, rng)
        description = {"source": f"initialised DeepSpeech network, width {width}"}
    description.update(
        architecture=network.config.architecture,
        width=int(network.config.n_hidden),
        parameters=int(sum(value.size for value in network.params.values())),
        n_classes=int(network.n_classes),
    )
    return network, features, alphabet, description


def scorer_path(settings: BenchSettings, work_dir: Path) -> tuple[str, str]:
    """(path, where it came from) of the scorer for the beam + LM decoder: ``--scorer``,
    else DeepSpeech's small scorer under ``$NPSPEECH_DATA``, else a tiny 3-gram built
    here from generated word sequences (its speed, not its sense, matters here)."""
    if settings.scorer:
        return settings.scorer, "--scorer"
    data = os.environ.get("NPSPEECH_DATA")
    if data and (Path(data) / DATA_SCORER).is_file():
        return str(Path(data) / DATA_SCORER), "$NPSPEECH_DATA/" + str(DATA_SCORER)
    from .lm.build import build_arpa, write_arpa

    rng = np.random.default_rng(0)
    letters = np.array(list("etaoinshrdlucmfwypvbgk"))
    words = ["".join(rng.choice(letters, size=rng.integers(2, 8))) for _ in range(300)]
    sentences = [
        " ".join(rng.choice(words, size=rng.integers(4, 12))) for _ in range(2000)
    ]
    path = write_arpa(build_arpa(sentences, order=3), work_dir / "bench.arpa")
    return str(path), "built: 3-gram of 2000 generated sentences, 300 words"


# --- timing ---------------------------------------------------------------------------


def median_seconds(
    function: Callable[[], Any], repeats: int, warm_up: bool = True
) -> float:
    """Median wall time of ``repeats`` calls of ``function``, after one untimed call
    when ``warm_up`` (kernels compile or load from the cache on their first call)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stage(
    name: str,
    backend: str | None,
    mode: str,
    batch: int,
    seconds: float,
    audio_seconds: float,
) -> dict[str, Any]:
    """One row of the report; ``audio_seconds`` is the audio the timed work covered."""
    rtf = seconds / audio_seconds
    return {
        "stage": name,
        "backend": backend,
        "mode": mode,
        "batch": batch,
        "seconds": seconds,
        "rtf": rtf,
        "x_real_time": 1.0 / rtf if rtf > 0 else float("inf"),
    }


def _streamed(network, features: np.ndarray, frames_per_chunk: int) -> np.ndarray:
    """(T_out, V) logits of one utterance fed ``frames_per_chunk`` frames at a time."""
    state = network.new_state()
    outputs = []
    starts = range(0, features.shape[0], frames_per_chunk)
    for start in starts:
        final = start + frames_per_chunk >= features.shape[0]
        chunk = features[start : start + frames_per_chunk]
        outputs.append(network.forward_chunk(chunk, state, final=final))
    return np.concatenate(outputs)


def peak_memory_mb() -> float:
    """The process's peak resident memory so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def thread_report() -> dict[str, Any]:
    """Numba's thread count and, with threadpoolctl installed, every native pool's."""
    import numba

    report: dict[str, Any] = {"numba": int(numba.get_num_threads()), "pools": None}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return report
    report["pools"] = [
        {
            "api": pool.get("internal_api"),
            "library": Path(pool.get("filepath", "")).name,
            "threads": int(pool.get("num_threads", 0)),
        }
        for pool in threadpool_info()
    ]
    return report


# --- JIT compile time -----------------------------------------------------------------

# A first transcription in a fresh interpreter; prints its timings as JSON.
_FIRST_RUN = """
import io, json, sys, time
start = time.perf_counter()
from npspeech import jit_notice
jit_notice.announce_compilation(stream=io.StringIO())
from npspeech.bench import first_transcription
first_transcription(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start,
                  "compile_seconds": jit_notice.compile_seconds()}))
"""


def first_transcription(model_path: str, backend: str) -> str:
    """Transcribe 2 s of audio with the model file (what a first decode runs)."""
    from . import features, modelfile
    from .inference import frame_seconds, make_decoder
    from .nn.activations import log_softmax
    from .runtime import InferenceNetwork

    loaded = modelfile.load(model_path)
    config = dataclasses.replace(loaded.features, n_context=0)
    signal = speech_like(2.0, loaded.features.sample_rate)
    feats = features.compute(signal, config, backend=backend)  # (T, F)
    network = InferenceNetwork(loaded.network, backend=backend)
    logits, lengths = network.forward(feats[:, None, :], np.array([len(feats)]))
    decoder = make_decoder(
        loaded.alphabet, None, frame_seconds(loaded.network.config, loaded.features)
    )
    return decoder.decode(log_softmax(logits[: int(lengths[0]), 0]))[0].text


def compile_times(model_path: str, backend: str) -> dict[str, float]:
    """Wall and compile seconds of a first transcription in a fresh interpreter, with an
    empty Numba cache (``cold_*``) and with the cache that run filled (``warm_*``)."""
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="npspeech-bench-cache-") as cache:
        environment = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for kind in ("cold", "warm"):
            done = subprocess.run(
                [sys.executable, "-c", _FIRST_RUN, model_path, backend],
                capture_output=True,
                text=True,
                env=environment,
            )
            if done.returncode != 0:
                raise ConfigError(
                    f"the {kind} first-run measurement failed:\n{done.stderr.strip()}"
                )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            result[f"{kind}_seconds"] = float(figures["seconds"])
            result[f"{kind}_compile_seconds"] = float(figures["compile_seconds"])
    return result


# --- the run --------------------------------------------------------------------------


def _available(backends: tuple[str, ...]) -> list[str]:
    from .backends import get_backend

    names = []
    for name in backends:
        try:
            get_backend(name)
        except ConfigError:
            continue
        names.append(name)
    return names


def run(settings: BenchSettings) -> dict[str, Any]:
    """Measure everything :mod:`npspeech.bench` describes; returns the JSON report."""
    check_settings(settings)
    from tqdm import tqdm

    from . import __version__, features, modelfile
    from .config import DecodeConfig
    from .inference import frame_seconds, make_decoder
    from .nn.activations import log_softmax
    from .runtime import InferenceNetwork

    backends = _available(settings.backends)
    if not backends:
        raise ConfigError(f"none of the backends {settings.backends} imports here")
    network, feature_config, alphabet, model_info = load_model(settings)
    config = dataclasses.replace(feature_config, n_context=0)
    audio = speech_like(settings.seconds, feature_config.sample_rate)
    step = frame_seconds(network.config, feature_config)
    chunk = max(
        1, round(CHUNK_SECONDS * feature_config.sample_rate / config.step_samples)
    )
    seconds, repeats, B = settings.seconds, settings.repeats, settings.batch
    rows: list[dict[str, Any]] = []
    bar = tqdm(
        total=len(backends) * 4 + 3 + int(settings.compile_time),
        desc="npspeech bench",
        unit="step",
        file=sys.stderr,
        disable=not settings.progress,
        leave=False,
    )

    def timed(name, backend, mode, batch, function, audio_seconds=seconds) -> None:
        bar.set_postfix_str(f"{name} {backend or ''} {mode}".strip(), refresh=False)
        # The NumPy reference has nothing to compile: its first call is a fair one.
        elapsed = median_seconds(function, repeats, warm_up=backend != "numpy")
        rows.append(stage(name, backend, mode, batch, elapsed, audio_seconds))
        bar.update(1)

    with tempfile.TemporaryDirectory(prefix="npspeech-bench-") as work:
        work_dir = Path(work)
        lm_path, lm_source = scorer_path(settings, work_dir)
        beam = DecodeConfig(decoder="beam", beam_width=settings.beam_width)
        configs = {
            "greedy": DecodeConfig(decoder="greedy"),
            "beam": beam,
            "beam + LM": dataclasses.replace(beam, scorer=lm_path),
        }
        decoders = {
            name: make_decoder(alphabet, c, step) for name, c in configs.items()
        }
        with_lm = decoders["beam + LM"]
        log_probs = None
        for backend in backends:
            feats = features.compute(audio, config, backend=backend)  # (T, F)
            timed(
                "features",
                backend,
                "offline",
                1,
                lambda b=backend: features.compute(audio, config, backend=b),
            )
            runtime = InferenceNetwork(network, backend=backend)
            batch = np.repeat(feats[:, None, :], B, axis=1)  # (T, B, F)
            lengths = np.full(B, feats.shape[0], dtype=np.int32)
            timed(
                "acoustic",
                backend,
                "offline",
                B,
                lambda r=runtime, x=batch, n=lengths: r.forward(x, n),
                seconds * B,
            )
            if runtime.streamable:
                timed(
                    "acoustic",
                    backend,
                    "streaming",
                    1,
                    lambda r=runtime, x=feats: _streamed(r, x, chunk),
                )
            else:
                bar.update(1)  # ds2 is bidirectional: no stream to time
            if log_probs is None:
                logits, n_out = runtime.forward(feats[:, None, :], lengths[:1])
                log_probs = log_softmax(logits[: int(n_out[0]), 0])  # (T, V)

            def end_to_end(r=runtime, b=backend) -> str:
                x = features.compute(audio, config, backend=b)  # (T, F)
                out, n = r.forward(x[:, None, :], np.array([x.shape[0]], np.int32))
                return with_lm.decode(log_softmax(out[: int(n[0]), 0]))[0].text

            timed("end to end", backend, "offline", 1, end_to_end)
        for name, decoder in decoders.items():
            timed(
                f"decoder {name}",
                None,
                "offline",
                1,
                lambda d=decoder: d.decode(log_probs),
            )
        jit = None
        if settings.compile_time:
            bar.set_postfix_str("JIT compile time, cold and warm", refresh=True)
            model_path = settings.model
            if not model_path:
                model_path = str(work_dir / "bench-model.npz")
                model = modelfile.ModelFile(network, feature_config, alphabet, {})
                modelfile.save(model_path, model)
            jit = {"backend": backends[0], **compile_times(model_path, backends[0])}
            bar.update(1)
    bar.close()
    return {
        "npspeech_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "model": model_info,
        "audio_seconds": seconds,
        "repeats": settings.repeats,
        "backends": backends,
        "scorer": {
            "path": None if lm_source.startswith("built") else lm_path,
            "source": lm_source,
        },
        "beam_width": settings.beam_width,
        "stages": rows,
        "peak_memory_mb": peak_memory_mb(),
        "threads": thread_report(),
        "jit": jit,
    }


def format_table(report: dict[str, Any]) -> str:
    """The report as readable text: one line per stage, then memory, threads, JIT."""
    model = report["model"]
    lines = [
        f"npspeech {report['npspeech_version']} on {report['machine']}, "
        f"{report['cpu_count']} CPUs, Python {report['python']}",
        f"model: {model['source']} ({model['architecture']}, width {model['width']}, "
        f"{model['parameters']:,} parameters); {report['audio_seconds']:g} s of audio, "
        f"median of {report['repeats']}",
        f"scorer for beam + LM: {report['scorer']['source']}; beam width "
        f"{report['beam_width']}",
        "",
        f"{'stage':20s} {'backend':8s} {'mode':10s} {'batch':>5s} {'seconds':>9s} "
        f"{'RTF':>8s} {'x real time':>12s}",
    ]
    for row in report["stages"]:
        lines.append(
            f"{row['stage']:20s} {row['backend'] or '-':8s} {row['mode']:10s} "
            f"{row['batch']:5d} {row['seconds']:9.4f} {row['rtf']:8.4f} "
            f"{row['x_real_time']:12.1f}"
        )
    lines.append("")
    lines.append(f"peak memory: {report['peak_memory_mb']:.0f} MiB")
    threads = report["threads"]
    pools = threads["pools"]
    described = (
        "; ".join(f"{p['api']} ({p['library']}) {p['threads']}" for p in pools)
        if pools is not None
        else "threadpoolctl not installed"
    )
    lines.append(f"threads: numba {threads['numba']}; {described}")
    jit = report["jit"]
    if jit is None:
        lines.append("JIT compile time: not measured (--no-compile-time)")
    else:
        lines.append(
            f"first transcription in a new process ({jit['backend']}): empty cache "
            f"{jit['cold_seconds']:.2f} s ({jit['cold_compile_seconds']:.2f} s "
            f"compiling), warm cache {jit['warm_seconds']:.2f} s "
            f"({jit['warm_compile_seconds']:.2f} s compiling)"
        )
    return "\n".join(lines)
