"""int8 against float32 on real speech: file size, WER and CER.

Quantises ``--model`` (``npspeech quantize``'s scheme) and transcribes a corpus CSV
with both, greedy and with a beam search and a 3-gram language model built from the
training transcripts only (``npspeech lm build TRAIN_CSV``; never a test sentence).
Prints the file sizes and their ratio (target <= 0.3), and each decoder's WER and CER
for both models with their differences in points (target: within 0.5).

    python benchmarks/bench_int8.py --model runs/kathleen_fsdd_small/model.npz \\
        [--csv $NPSPEECH_DATA/kathleen_arctic/test.csv] \\
        [--train-csv $NPSPEECH_DATA/kathleen_arctic/train.csv] [--beam-width 100]

The streaming speed of int8 models is ``benchmarks/bench_runtime.py --weights int8``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from npspeech import metrics, modelfile
from npspeech.config import DecodeConfig
from npspeech.corpus import read_csvs
from npspeech.inference import Model, make_decoder
from npspeech.lm.build import build_arpa, write_arpa
from npspeech.quantize import quantize_file

DATA = Path(os.environ.get("NPSPEECH_DATA", Path(__file__).parents[2] / "shared/data"))


def _log_probs(model: Model, rows) -> list[np.ndarray]:
    out = []
    for row in rows:
        features = model.compute_features(str(row.audio_path))
        log_probs, lengths = model.log_probs(
            features[:, None], np.array([len(features)])
        )
        out.append(log_probs[: lengths[0], 0])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--csv", default=str(DATA / "kathleen_arctic" / "test.csv"))
    parser.add_argument(
        "--train-csv", default=str(DATA / "kathleen_arctic" / "train.csv")
    )
    parser.add_argument("--beam-width", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    args = parser.parse_args(argv)
    print(f"load: {os.getloadavg()[0]:.2f}")
    rows = read_csvs([args.csv])[: args.limit]
    references = [row.transcript for row in rows]
    with tempfile.TemporaryDirectory() as folder:
        int8_path = Path(folder) / "model_int8.npz"
        quantize_file(args.model, int8_path)
        size_f, size_q = os.path.getsize(args.model), os.path.getsize(int8_path)
        print(
            f"file: float32 {size_f / 2**20:.2f} MiB, int8 {size_q / 2**20:.2f} MiB, "
            f"ratio {size_q / size_f:.3f} (target <= 0.3)"
        )
        train = read_csvs([args.train_csv])
        arpa = Path(folder) / "train_3gram.arpa"
        write_arpa(build_arpa([row.transcript for row in train], order=3), arpa)
        outputs = {}
        for name, path in (("float32", args.model), ("int8", int8_path)):
            loaded = modelfile.load(path)
            model = Model(loaded.network, loaded.features, loaded.alphabet)
            start = time.perf_counter()
            outputs[name] = (model, _log_probs(model, rows))
            print(
                f"{name}: acoustic model on {len(rows)} utterances in "
                f"{time.perf_counter() - start:.1f} s "
                f"(weights {model.inference_network.weights})"
            )
        configs = {
            "greedy": DecodeConfig(decoder="greedy"),
            f"beam {args.beam_width} + LM": DecodeConfig(
                decoder="beam", beam_width=args.beam_width, scorer=str(arpa)
            ),
        }
        failed = False
        for label, config in configs.items():
            rates = {}
            for name, (model, log_probs) in outputs.items():
                decoder = make_decoder(model.alphabet, config, model.frame_seconds)
                hypotheses = [decoder.decode_text(lp) for lp in log_probs]
                rates[name] = (
                    metrics.wer(references, hypotheses),
                    metrics.cer(references, hypotheses),
                )
            (wf, cf), (wq, cq) = rates["float32"], rates["int8"]
            ok = abs(wq - wf) <= 0.005 and abs(cq - cf) <= 0.005
            failed |= not ok
            print(
                f"{label:16s} WER float32 {wf:.4f} int8 {wq:.4f} "
                f"({100 * (wq - wf):+.2f} points)  CER float32 {cf:.4f} int8 {cq:.4f} "
                f"({100 * (cq - cf):+.2f} points)  within 0.5: {'yes' if ok else 'NO'}"
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 1 if failed or size_q > 0.3 * size_f else 0


if __name__ == "__main__":
    raise SystemExit(main())
