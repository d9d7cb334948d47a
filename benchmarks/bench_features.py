"""DeepSpeech MFCC of 60 s of 16 kHz audio: npspeech against its reference and peers.

Everything runs on one thread (Numba, BLAS and OpenMP limited before anything is
imported; ``scipy.fft`` is called with ``workers=1``), in one process, in interleaved
rounds so that a loaded machine slows every side alike. The audio is LDC93S1 looped to
60 s (white noise where the data folder is absent). Prints the median wall time and the
median CPU time of the calling thread for each side, the real-time factor, and each
side's time over npspeech's (targets: python_speech_features >= 5x, librosa >= 2x).

Sides, all with DeepSpeech's settings (512-sample window, 320 step, 512-point FFT,
40 mel channels 20 Hz - 8 kHz, 26 coefficients):

- npspeech (numba): ``npspeech.features.mfcc`` with the default backend;
- npspeech (numpy reference): the same through ``backend="numpy"``;
- python_speech_features: ``mfcc(signal, 16000, winlen=0.032, winstep=0.02, numcep=26,
  nfilt=40, nfft=512, lowfreq=20, highfreq=8000, preemph=0, ceplifter=0,
  appendEnergy=False, winfunc=np.hanning)``;
- librosa: ``feature.mfcc(y, sr=16000, n_mfcc=26, n_fft=512, hop_length=320,
  win_length=512, n_mels=40, fmin=20, fmax=8000, center=False)``.

The peers compute the same pipeline with other filterbank and DCT conventions, so only
their shapes are checked; npspeech's two backends are checked against each other and
against a float64 run of the reference before timing.

    python benchmarks/bench_features.py [--repeats 20] [--seconds 60]
"""

from __future__ import annotations

import os

for _variable in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                  "MKL_NUM_THREADS"):  # fmt: skip
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from npspeech import audio, features  # noqa: E402
from npspeech.backends import get_backend  # noqa: E402

SAMPLE_RATE = 16_000
DATA = Path(
    os.environ.get(
        "NPSPEECH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
TARGETS = {"python_speech_features": 5.0, "librosa": 2.0}


def speech_signal(seconds: float) -> tuple[np.ndarray, str]:
    """float32 audio of ``seconds`` at 16 kHz, and where it came from."""
    n = int(seconds * SAMPLE_RATE)
    path = DATA / "deepspeech_smoke" / "wav" / "LDC93S1.wav"
    if path.is_file():
        return np.resize(audio.load(path), n).astype(np.float32), f"{path.name} looped"
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(n)).astype(np.float32), "white noise"


def sides(signal: np.ndarray) -> dict:
    """name -> zero-argument function computing the MFCC of ``signal``."""
    functions = {
        "npspeech (numba)": lambda: features.mfcc(signal, backend="numba"),
        "npspeech (numpy reference)": lambda: features.mfcc(signal, backend="numpy"),
    }
    try:
        import python_speech_features as psf

        functions["python_speech_features"] = lambda: psf.mfcc(
            signal, SAMPLE_RATE, winlen=0.032, winstep=0.02, numcep=26, nfilt=40,
            nfft=512, lowfreq=20, highfreq=8000, preemph=0, ceplifter=0,
            appendEnergy=False, winfunc=np.hanning,
        )  # fmt: skip
    except ImportError:
        print("python_speech_features not installed: skipped")
    try:
        import librosa

        functions["librosa"] = lambda: librosa.feature.mfcc(
            y=signal, sr=SAMPLE_RATE, n_mfcc=26, n_fft=512, hop_length=320,
            win_length=512, n_mels=40, fmin=20, fmax=8000, center=False,
        )  # fmt: skip
    except ImportError:
        print("librosa not installed: skipped")
    return functions


def check(signal: np.ndarray, functions: dict) -> None:
    """Assert every side's shape and npspeech's values before anything is timed."""
    T = 1 + (signal.shape[0] - 512) // 320
    fast = functions["npspeech (numba)"]()
    reference = functions["npspeech (numpy reference)"]()
    plan = features._plan(features.FeatureConfig())
    exact = get_backend("numpy").mfcc_frames(
        signal.astype(np.float64), plan.window, 320, 512, plan.bank, plan.dct, 1e-12
    )
    assert fast.shape == reference.shape == (T, 26)
    tolerance = 4e-6 * float(np.abs(exact).max())  # a few float32 ulps of the largest
    assert np.abs(fast - exact).max() <= tolerance, np.abs(fast - exact).max()
    assert np.abs(reference - exact).max() <= tolerance, np.abs(reference - exact).max()
    if "python_speech_features" in functions:
        out = functions["python_speech_features"]()
        assert out.shape in ((T, 26), (T + 1, 26)), out.shape  # psf pads a last frame
    if "librosa" in functions:
        assert functions["librosa"]().shape == (26, T)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)

    signal, source = speech_signal(args.seconds)
    functions = sides(signal)
    check(signal, functions)  # also warms up the JIT and every cache
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for _ in range(args.repeats):
        for name, function in functions.items():
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            function()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)

    ours_wall = statistics.median(wall["npspeech (numba)"])
    ours_cpu = statistics.median(cpu["npspeech (numba)"])
    print(
        f"{args.seconds:g} s of {source}, {args.repeats} interleaved rounds, 1 thread"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    header = f"{'side':30s} {'wall ms':>9s} {'CPU ms':>9s} {'x real time':>12s} "
    print(header + f"{'wall / ours':>12s} {'CPU / ours':>11s}")
    for name in functions:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"{name:30s} {w * 1e3:9.2f} {c * 1e3:9.2f} {args.seconds / w:12.0f} "
            f"{w / ours_wall:12.2f} {c / ours_cpu:11.2f}"
        )
    for name, target in TARGETS.items():
        if name in functions:
            ratio = statistics.median(cpu[name]) / ours_cpu
            verdict = "met" if ratio >= target else "NOT met"
            print(f"target {name} >= {target:g}x (CPU time): {ratio:.2f}x, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
