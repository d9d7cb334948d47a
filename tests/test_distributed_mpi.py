"""Data-parallel training over MPI: equivalence with one process, faults, resume.

The multi-rank runs start ``mpiexec -n 2`` in a subprocess on the real LDC93S1 corpus
rows with a tiny model, so each takes seconds. They skip where mpi4py or an
``mpiexec`` is not installed (the ``mpi`` extra provides both).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npspeech import checkpoint, train
from npspeech.distributed import Collective, get_collective, launched_size
from npspeech.distributed.data_parallel import batch_rows

# The subprocess runs only the train command (not every registered subcommand), as
# ``npspeech train`` does: parse, run, print an NpspeechError as the CLI does.
RUNNER = """
import argparse, sys
from npspeech.cli import train as command
from npspeech.errors import NpspeechError
parser = argparse.ArgumentParser(prog="npspeech")
command.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
try:
    sys.exit(args.run(args))
except NpspeechError as error:
    print(f"npspeech train: error: {error}", file=sys.stderr)
    sys.exit(1)
"""
# One thread per rank: two ranks share the two cores of the CI machine.
THREADS = {
    name: "1"
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS")
}
# Float32 sums in another order: a few ulp per step on weights of size ~0.5.
ATOL = 2e-6


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def _require_mpi() -> str:
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip('mpi4py is not installed (pip install "npspeech[mpi]")')
    mpiexec = _mpiexec()
    if mpiexec is None:
        pytest.skip('no mpiexec on PATH or beside python (pip install "npspeech[mpi]")')
    return mpiexec


def _arguments(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """Three real utterances in batches of at most two (a batch of two and one of
    one an epoch, so rank 1 has no rows in every other step), dev on one of them (rank
    1 scores none), a tiny model without dropout."""
    smoke = data_dir / "deepspeech_smoke"
    return [
        "train",
        "--train-csv",
        str(smoke / "test.csv"),
        "--dev-csv",
        str(smoke / "ldc93s1.csv"),
        "--alphabet",
        str(smoke / "alphabet.txt"),
        "--n-hidden",
        "12",
        "--set",
        "model.n_context=2",
        "--dropout",
        "0",
        "--max-batch-size",
        "2",
        "--epochs",
        "3",
        "--learning-rate",
        "3e-3",
        "--seed",
        "11",
        "--checkpoint-minutes",
        "0",
        "--output-dir",
        str(output_dir),
        "--no-progress",
        *extra,
    ]


def _run(arguments, ranks: int | None, env=None, timeout: float = 240):
    """Run the train command (under ``mpiexec -n ranks`` unless None); returns the
    completed process and its wall time."""
    command = [sys.executable, "-c", RUNNER, *arguments]
    if ranks is not None:
        command = [_require_mpi(), "-n", str(ranks), *command]
    started = time.monotonic()
    done = subprocess.run(
        command,
        env={**os.environ, **THREADS, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def _assert_close_states(first, second, atol=ATOL):
    assert (first.epoch, first.batch, first.step) == (
        second.epoch,
        second.batch,
        second.step,
    )
    for name, value in first.network.params.items():
        np.testing.assert_allclose(
            second.network.params[name], value, rtol=0, atol=atol, err_msg=name
        )
    for name, value in first.optimizer.items():
        if isinstance(value, np.ndarray):
            scale = max(float(np.abs(value).max()), 1e-30)
            np.testing.assert_allclose(
                second.optimizer[name] / scale,
                value / scale,
                rtol=0,
                atol=1e-4,
                err_msg=name,
            )


@pytest.fixture(scope="module")
def single_run(data_dir, tmp_path_factory):
    """The reference: the same run in one plain process."""
    output = tmp_path_factory.mktemp("single") / "run"
    done, _ = _run(_arguments(data_dir, output), ranks=None)
    assert done.returncode == 0, done.stderr
    return output


# -- without MPI -----------------------------------------------------------------------
def test_a_plain_run_is_one_process_without_mpi(monkeypatch):
    for name in (
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MV2_COMM_WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert launched_size() == 1
    collective = get_collective("auto")
    assert type(collective) is Collective and collective.size == 1
    monkeypatch.setenv("PMI_SIZE", "4")
    assert launched_size() == 4
    assert type(get_collective("none")) is Collective
    code = (
        "import sys; from npspeech.distributed import get_collective; "
        "get_collective('auto'); import npspeech.train; "
        "print('mpi4py' in sys.modules)"
    )
    plain = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE",)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=plain, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_rows_and_spread_cover_everything_once(n, size):
    rows, spread = [], []
    for rank in range(size):
        collective = Collective()
        collective.rank, collective.size = rank, size
        share = collective.rows(n)
        rows += list(range(n))[share]
        assert len(range(n)[share]) in (n // size, -(-n // size))
        spread += collective.spread(np.arange(n, 0, -1))
    assert rows == list(range(n))  # contiguous shares, in order
    assert sorted(spread) == list(range(n))


def test_batch_rows_give_the_batch_loss_and_gradient(data_dir, tmp_path):
    """Row shares scaled by 1 / B sum to the whole batch's loss and gradient."""
    from npspeech.config import ModelConfig, TrainConfig

    smoke = data_dir / "deepspeech_smoke"
    config = TrainConfig(
        model=ModelConfig(n_hidden=12, n_context=2, dropout=0.0),
        train_csv=(str(smoke / "test.csv"),),
        alphabet=str(smoke / "alphabet.txt"),
        max_batch_size=0,
        output_dir=str(tmp_path / "run"),
        progress=False,
        backend="numpy",
    )
    trainer = train.Trainer(config)
    batch = trainer.loader.batch(0, 0)
    B = len(batch)
    assert B == 3
    rng = np.random.default_rng(0)
    whole = trainer._local_gradients(batch, B, 0, 0, rng)
    parts = [
        trainer._local_gradients(batch_rows(batch, rows), B, 0, 0, rng)
        for rows in (slice(0, 2), slice(2, 3))
    ]
    assert batch_rows(batch, slice(3, 3)) is None
    assert parts[1].rows == 1 and batch_rows(batch, slice(2, 3)).transcripts == [
        batch.transcripts[2]
    ]
    assert sum(p.loss_sum for p in parts) == pytest.approx(whole.loss_sum, rel=1e-6)
    for name, value in whole.grads.items():
        summed = parts[0].grads[name] + parts[1].grads[name]
        np.testing.assert_allclose(summed, value, rtol=1e-4, atol=1e-6, err_msg=name)


# -- two ranks -------------------------------------------------------------------------
def test_two_ranks_train_as_one_process(data_dir, tmp_path, single_run):
    output = tmp_path / "run"
    done, _ = _run(_arguments(data_dir, output), ranks=2)
    assert done.returncode == 0, done.stderr
    assert re.search(r"2 ranks over MPI .*rank 1 pid \d+", done.stderr)
    # Rank 0 alone prints, once per epoch and once at the end.
    assert done.stdout.count("stopped (epochs) after 3 epochs, 6 steps") == 1
    assert len(re.findall(r"^epoch \d/3 .* WER ", done.stdout, re.M)) == 3
    reference = checkpoint.load(single_run / train.LAST_CHECKPOINT)
    state = checkpoint.load(output / train.LAST_CHECKPOINT)
    _assert_close_states(reference, state)
    assert state.record["best_dev_wer"] == reference.record["best_dev_wer"]
    steps = [e for e in train.read_log(output) if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]  # one writer
    assert {e["ranks"] for e in steps} == {2}
    single = [e for e in train.read_log(single_run) if e["event"] == "step"]
    np.testing.assert_allclose(
        [e["loss"] for e in steps], [e["loss"] for e in single], rtol=1e-5
    )


def test_killed_rank_ends_the_job_and_a_single_process_resumes(
    data_dir, tmp_path, single_run
):
    """SIGKILL rank 1 before step 4: the job ends at once, the launcher's report
    names the process (whose rank the start-up line gives), and the last checkpoint
    resumes on one process to the single-process result."""
    output = tmp_path / "run"
    done, seconds = _run(
        _arguments(data_dir, output),
        ranks=2,
        env={"NPSPEECH_MPI_TEST_FAULT": "1:3:kill"},
    )
    assert done.returncode != 0
    assert seconds < 60  # nobody waits for the dead rank
    pid = re.search(r"rank 1 pid (\d+)", done.stderr).group(1)
    report = done.stdout + done.stderr
    assert "signal 9" in report.lower() or "killed" in report.lower(), report
    if "BAD TERMINATION" in report:  # MPICH's Hydra names the process by its PID
        assert f"PID {pid}" in report
    left = checkpoint.load(output / train.LAST_CHECKPOINT)
    assert 1 <= left.step <= 3
    resumed, _ = _run(_arguments(data_dir, output, "--resume"), ranks=None)
    assert resumed.returncode == 0, resumed.stderr
    reference = checkpoint.load(single_run / train.LAST_CHECKPOINT)
    _assert_close_states(reference, checkpoint.load(output / train.LAST_CHECKPOINT))
    steps = [e["step"] for e in train.read_log(output) if e["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_failing_rank_names_itself_and_two_ranks_resume(data_dir, tmp_path):
    """An exception on rank 1 ends the job with a message naming rank 1; the run
    then resumes on two ranks from the intact checkpoint."""
    output = tmp_path / "run"
    done, seconds = _run(
        _arguments(data_dir, output),
        ranks=2,
        env={"NPSPEECH_MPI_TEST_FAULT": "1:2:raise"},
    )
    assert done.returncode != 0 and seconds < 60
    assert "rank 1 of 2 failed (fault injected" in done.stderr
    assert "continue with --resume" in done.stderr
    left = checkpoint.load(output / train.LAST_CHECKPOINT)
    assert 1 <= left.step <= 2
    resumed, _ = _run(_arguments(data_dir, output, "--resume"), ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    assert "stopped (epochs) after 3 epochs, 6 steps" in resumed.stdout


def test_stuck_rank_is_named_after_the_timeout(data_dir, tmp_path):
    output = tmp_path / "run"
    done, seconds = _run(
        # long enough that a rank compiling its kernels on a cold cache (first steps)
        # is not taken for the stuck one
        _arguments(data_dir, output, "--collective-timeout", "30"),
        ranks=2,
        env={"NPSPEECH_MPI_TEST_FAULT": "1:2:hang"},
    )
    assert done.returncode != 0 and seconds < 120
    assert (
        "rank 0 of 2: rank(s) 1 did not reach the gradient exchange of step 3 "
        "within 30 s" in done.stderr
    ), done.stderr
    assert checkpoint.load(output / train.LAST_CHECKPOINT).step == 2


def test_refusal_is_reported_once(data_dir, tmp_path, single_run):
    """An error every rank meets (a folder holding a run) ends all ranks with one
    message and no abort."""
    copy = tmp_path / "run"
    shutil.copytree(single_run, copy)
    done, _ = _run(_arguments(data_dir, copy), ranks=2)
    assert done.returncode == 1
    assert done.stderr.count("already holds a training run") == 1
    assert "failed" not in done.stderr
