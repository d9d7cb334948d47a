"""One DeepSpeech training step, npspeech (Numba backend) against PyTorch CPU.

A step is: forward over a padded batch, CTC loss (mean over the batch), backward, global
gradient-norm clipping and one Adam update. Both sides hold the same weights; before
timing, the script checks that their logits, loss and gradients agree. Then it times
each side in alternating rounds (so a load spike on the shared machine hits both) and
prints the medians and the ratio npspeech / PyTorch.

    python benchmarks/bench_train_step.py [--n-hidden 512] [--batch 8] [--frames 300]
        [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from npspeech import ctc, models, optim
from npspeech.config import ModelConfig

N_INPUT = 26  # MFCC coefficients
N_CLASSES = 29  # DeepSpeech's English alphabet plus the blank


def make_batch(rng, T, B, L):
    """Random MFCC-like features, lengths from T/2 to T, random targets of length L."""
    lengths = np.linspace(T // 2, T, B).astype(np.int32)
    x = rng.standard_normal((T, B, N_INPUT)).astype(np.float32)
    x *= models.frame_mask(lengths, T, np.float32)
    targets = rng.integers(0, N_CLASSES - 1, size=B * L).astype(np.int32)
    target_lengths = np.full(B, L, dtype=np.int32)
    return x, lengths, targets, target_lengths


class NpspeechStep:
    def __init__(self, network):
        self.network = network
        self.optimizer = optim.adam_init(network.params)

    def __call__(self, batch):
        x, lengths, targets, target_lengths = batch
        network = self.network
        logits, out_lengths, cache = models.forward(
            network, x, lengths, training=True, backend="numba"
        )
        loss, dlogits = ctc.ctc_loss(
            logits,
            targets,
            out_lengths,
            target_lengths,
            reduction="mean",
            backend="numba",
        )
        grads = models.backward(network, dlogits, cache, backend="numba")
        grads, _ = optim.clip_grad_norm(grads, 400.0)
        network.params, self.optimizer = optim.adam_step(
            network.params, grads, self.optimizer, 1e-4, backend="numba"
        )
        return float(loss), logits, grads


class TorchStep:
    """The same network in PyTorch, weights copied from npspeech's."""

    def __init__(self, network):
        config = network.config
        H = config.n_hidden
        p = {name: torch.tensor(value) for name, value in network.params.items()}
        self.dense = {}
        for name in ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6"):
            self.dense[name] = (
                p[f"{name}/W"].requires_grad_(True),
                p[f"{name}/b"].requires_grad_(True),
            )
        self.lstm = torch.nn.LSTM(H, H)
        with torch.no_grad():  # ours is (F, 4H) with gates i, f, g, o: PyTorch's order
            self.lstm.weight_ih_l0.copy_(p["layer_4/W_ih"].T)
            self.lstm.weight_hh_l0.copy_(p["layer_4/W_hh"].T)
            self.lstm.bias_ih_l0.copy_(p["layer_4/b_ih"])
            self.lstm.bias_hh_l0.copy_(p["layer_4/b_hh"])
        self.n_context = config.n_context
        self.clip = config.relu_clip
        parameters = [t for pair in self.dense.values() for t in pair]
        parameters += list(self.lstm.parameters())
        self.parameters = parameters
        self.optimizer = torch.optim.Adam(parameters, lr=1e-4)

    def __call__(self, batch):
        x, lengths, targets, target_lengths = batch
        stacked = torch.from_numpy(models.stack_context(x, lengths, self.n_context))
        mask = torch.from_numpy(models.frame_mask(lengths, x.shape[0], np.float32))
        h = stacked
        for name in ("layer_1", "layer_2", "layer_3"):
            W, b = self.dense[name]
            h = torch.clamp(h @ W + b, 0.0, self.clip) * mask
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            h, torch.from_numpy(lengths.astype(np.int64)), enforce_sorted=False
        )
        h, _ = self.lstm(packed)
        h, _ = torch.nn.utils.rnn.pad_packed_sequence(h, total_length=x.shape[0])
        W, b = self.dense["layer_5"]
        h = torch.clamp(h @ W + b, 0.0, self.clip) * mask
        W, b = self.dense["layer_6"]
        logits = (h @ W + b) * mask
        loss = (
            torch.nn.functional.ctc_loss(
                logits.log_softmax(-1),
                torch.from_numpy(targets.astype(np.int64)),
                torch.from_numpy(lengths.astype(np.int64)),
                torch.from_numpy(target_lengths.astype(np.int64)),
                blank=N_CLASSES - 1,
                reduction="sum",
            )
            / x.shape[1]
        )
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, 400.0)
        self.optimizer.step()
        return float(loss.detach()), logits.detach().numpy()


def check_agreement(network, batch):
    """Logits, loss and the first layer's gradient agree before any update."""
    ours = NpspeechStep(network.copy())
    theirs = TorchStep(network.copy())
    loss, logits, grads = ours(batch)
    torch_loss, torch_logits = theirs(batch)
    np.testing.assert_allclose(logits, torch_logits, rtol=1e-3, atol=1e-4)
    assert abs(loss - torch_loss) <= 1e-3 * abs(torch_loss), (loss, torch_loss)
    # theirs() already stepped; compare the gradient it clipped with ours
    torch_grad = theirs.dense["layer_1"][0].grad.numpy()
    np.testing.assert_allclose(grads["layer_1/W"], torch_grad, rtol=1e-2, atol=1e-5)
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    config = ModelConfig(n_hidden=args.n_hidden, dropout=0.0)
    network = models.init(config, N_INPUT, N_CLASSES, rng)
    batch = make_batch(rng, args.frames, args.batch, args.labels)
    loss = check_agreement(network, batch)
    ours, theirs = NpspeechStep(network.copy()), TorchStep(network.copy())
    ours(batch), theirs(batch)  # warm-up (JIT compile, PyTorch's first calls)
    times = {"npspeech": [], "pytorch": []}
    for _ in range(args.repeats):
        for name, step in (("npspeech", ours), ("pytorch", theirs)):
            started = time.perf_counter()
            step(batch)
            times[name].append(time.perf_counter() - started)
    audio = float(batch[1].sum()) * 0.02
    print(
        f"DeepSpeech n_hidden={args.n_hidden}, batch {args.batch} x {args.frames} "
        f"frames ({audio:.1f} s of audio), {args.threads} threads; "
        f"first-step loss {loss:.2f} (agrees with PyTorch)"
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(
            f"  {name:9s} median {value * 1000:8.1f} ms/step  "
            f"{audio / value:7.1f} audio s per s"
        )
    print(f"  ratio npspeech / pytorch: {medians['npspeech'] / medians['pytorch']:.2f}")


if __name__ == "__main__":
    main()
