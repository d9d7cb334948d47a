"""Batch transcription on a Dask cluster: two local worker processes give the
single-process transcripts, lose no file when one dies mid-job, report a corrupt file
alone, and serve ``npspeech decode --scheduler``.

One LocalCluster (2 worker processes, one thread each) is shared by the module: it
takes seconds to start.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest
import soundfile

pytest.importorskip(
    "distributed", reason="dask/distributed is not installed (the 'dask' extra)"
)

import cloudpickle  # noqa: E402  (a dependency of distributed)
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402
from helpers.inference_models import save_small_model, smoke_alphabet  # noqa: E402

from npspeech import batch, formats  # noqa: E402
from npspeech.cli import main  # noqa: E402
from npspeech.config import DecodeConfig  # noqa: E402
from npspeech.distributed import dask as cluster_decode  # noqa: E402
from npspeech.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.data

#: Workers of the 2-worker cluster run BLAS on one thread each, this process on all
#: cores: sums in another order change a float32 log score by a few ulps (measured
#: 1e-7 relative); transcripts and timings are equal.
SCORE_RTOL = 1e-6

# The worker plugin below is defined here; workers cannot import this test module,
# so cloudpickle sends its code by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
    ) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as connected:
        yield connected


@pytest.fixture(scope="module")
def model_path(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("dask_model") / "small.npz"
    return str(save_small_model(path, "deepspeech", smoke_alphabet(data_dir)))


@pytest.fixture(scope="module")
def long_wav(data_dir, tmp_path_factory):
    """Over a minute of real speech in one file: decoded in pieces (segment.py)."""
    folder = data_dir / "kathleen_arctic"
    rows = (folder / "test.csv").read_text().splitlines()[1:]
    pieces, seconds = [], 0.0
    for row in rows:
        samples, rate = soundfile.read(folder / row.split(",")[0], dtype="float32")
        assert rate == 16_000
        pieces += [samples, np.zeros(rate // 2, np.float32)]  # half a second apart
        seconds += len(samples) / rate + 0.5
        if seconds > 70:
            break
    path = tmp_path_factory.mktemp("dask_long") / "long.wav"
    soundfile.write(path, np.concatenate(pieces), 16_000, subtype="PCM_16")
    return str(path)


@pytest.fixture(scope="module")
def files(data_dir, long_wav):
    """Real recordings of three corpora and rates, and one long file."""
    an4 = data_dir / "an4_mini"
    rows = (an4 / "test.csv").read_text().splitlines()[1:7]
    smoke = data_dir / "deepspeech_smoke" / "wav"
    return [
        *(str(an4 / row.split(",")[0]) for row in rows),
        str(smoke / "LDC93S1_pcms16le_2_44100.wav"),
        str(smoke / "arctic_a0024.wav"),
        long_wav,
    ]


@pytest.fixture(scope="module")
def reference(model_path):
    """The single-process path's results for some paths."""
    spec = batch.ModelSpec(model_path, None, DecodeConfig())
    model = batch.load_model(spec)

    def transcribe(paths):
        sources = [batch.Source(p, p, "unused") for p in paths]
        return list(batch.transcribe_all(sources, spec, model=model))

    return transcribe


def _json_lines(out):
    """JSON Lines output with each confidence as an approximate number."""
    records = [json.loads(line) for line in out.splitlines()]
    for record in records:
        for transcript in record["transcripts"]:
            transcript["confidence"] = pytest.approx(
                transcript["confidence"], rel=SCORE_RTOL
            )
    return records


def _texts(results):
    return [[c.text for c in r.candidates] for r in results]


def test_same_transcripts_as_one_process(client, model_path, files, reference):
    expected = reference(files)
    assert all(not r.error for r in expected)
    assert sum(bool(r.candidates[0].text.strip()) for r in expected) >= len(files) - 2
    finished = []
    results = list(
        cluster_decode.transcribe(files, model_path, client, on_done=finished.append)
    )
    assert [r.source.name for r in results] == files  # input order
    assert sorted(r.source.name for r in finished) == sorted(files)
    assert [r.error for r in results] == [""] * len(files)
    assert _texts(results) == _texts(expected)
    for got, want in zip(results, expected, strict=True):
        assert got.seconds == want.seconds
        got_times = [t.start_time for t in got.candidates[0].tokens]
        assert got_times == [t.start_time for t in want.candidates[0].tokens]
    assert results[-1].seconds > 60  # the long file was decoded in pieces


def test_each_worker_loads_the_model_once(client, model_path, files):
    list(cluster_decode.transcribe(files[:4], model_path, client))
    list(cluster_decode.transcribe(files[:4], model_path, client))

    def loaded():
        return len(cluster_decode._MODELS)

    counts = client.run(loaded)
    assert sorted(counts.values()) == [1, 1], counts  # one thread, one model each


def test_beam_decoder_and_n_best(client, model_path, files, data_dir):
    scorer = str(data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer")
    config = DecodeConfig(decoder="beam", beam_width=8, scorer=scorer)
    spec = batch.ModelSpec(model_path, None, config)
    paths = files[:3]
    expected = list(
        batch.transcribe_all([batch.Source(p, p, "x") for p in paths], spec, n_best=3)
    )
    results = list(cluster_decode.transcribe(paths, spec, client, n_best=3))
    assert _texts(results) == _texts(expected)
    assert max(len(r.candidates) for r in results) > 1


class KillFirstTask(WorkerPlugin):
    """Kills the worker process that starts the first task of the job (once: a
    marker file records it), as a crash or an out-of-memory kill would."""

    name = "kill-first-task"

    def __init__(self, marker):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "npspeech-decode" not in str(key):
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, str(key).encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_loses_no_file(client, model_path, files, tmp_path):
    paths = files[:6]
    expected = list(cluster_decode.transcribe(paths, model_path, client))
    before = set(client.run(os.getpid).values())
    marker = tmp_path / "killed"
    client.register_plugin(KillFirstTask(str(marker)))
    try:
        results = list(cluster_decode.transcribe(paths, model_path, client))
    finally:
        client.unregister_worker_plugin(KillFirstTask.name)
    assert marker.exists()  # a worker did die with a task of this job on it
    assert "npspeech-decode" in marker.read_text()
    assert [r.error for r in results] == [""] * len(paths)
    assert _texts(results) == _texts(expected)
    client.wait_for_workers(2, timeout=120)
    after = set(client.run(os.getpid).values())
    assert len(before - after) == 1  # the nanny replaced the killed process


class KillEveryTry(WorkerPlugin):
    """Kills the worker process every time it starts the job's task ``index`` (a
    file that crashes whatever decodes it)."""

    name = "kill-every-try"

    def __init__(self, index):
        self.index = index

    def transition(self, key, start, finish, **kwargs):
        # the job's key of that file, and of its retry alone
        ends = (f"-{self.index}", f"-{self.index}-alone")
        if finish == "executing" and str(key).endswith(ends):
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_file_that_kills_every_worker_fails_alone(cluster, client, model_path, files):
    paths = files[:4]
    allowed = cluster.scheduler.allowed_failures
    cluster.scheduler.allowed_failures = 0  # KilledWorker on the first death
    client.register_plugin(KillEveryTry(2))
    try:
        results = list(cluster_decode.transcribe(paths, model_path, client))
    finally:
        client.unregister_worker_plugin(KillEveryTry.name)
        cluster.scheduler.allowed_failures = allowed
    assert [r.source.name for r in results] == paths
    assert [bool(r.error) for r in results] == [False, False, True, False]
    assert paths[2] in results[2].error and "died" in results[2].error
    client.wait_for_workers(2, timeout=120)


def test_a_corrupt_file_is_reported_alone(client, model_path, files, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    missing = str(tmp_path / "missing.wav")
    paths = [files[0], str(corrupt), missing, files[1]]
    results = list(cluster_decode.transcribe(paths, model_path, client))
    assert [r.source.name for r in results] == paths
    assert results[0].error == results[3].error == ""
    assert results[0].candidates and results[3].candidates
    assert str(corrupt) in results[1].error and "corrupt" in results[1].error
    assert missing in results[2].error and "not found" in results[2].error


def test_a_model_missing_on_the_workers_fails_each_file(client, files, tmp_path):
    missing = str(tmp_path / "nowhere.npz")
    results = list(cluster_decode.transcribe(files[:2], missing, client))
    for path, result in zip(files[:2], results, strict=True):
        assert path in result.error and missing in result.error


# -- the command line ------------------------------------------------------------------


def test_cli_scheduler_gives_the_local_output(
    cluster, model_path, files, data_dir, tmp_path, capsys
):
    csv = str(data_dir / "an4_mini" / "test.csv")
    argv = ["decode", "--model", model_path, "--json", *files[6:8], "--csv", csv]
    assert main(argv) == 0
    local = capsys.readouterr()
    assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    remote = capsys.readouterr()
    assert _json_lines(remote.out) == _json_lines(local.out)
    assert len(remote.out.splitlines()) == 12
    assert "decoded 12 files: " in remote.err
    out_dir = tmp_path / "subs"
    argv = ["decode", "--model", model_path, "--format", "srt", *files[6:8]]
    argv += ["--output-dir", str(out_dir), "--scheduler", cluster.scheduler_address]
    assert main(argv) == 0
    assert sorted(os.listdir(out_dir)) == [
        "LDC93S1_pcms16le_2_44100.srt",
        "arctic_a0024.srt",
    ]
    written = (out_dir / "arctic_a0024.srt").read_text()
    spec = batch.ModelSpec(model_path, None, DecodeConfig())
    assert written == formats.srt(batch.load_model(spec).transcribe_full(files[7]))


def test_cli_scheduler_reports_a_corrupt_file(cluster, model_path, files, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    argv = ["decode", "--model", model_path, files[0], str(corrupt), files[1]]
    code = main([*argv, "--scheduler", cluster.scheduler_address])
    assert code == 1


def test_cli_scheduler_progress_bar_on_a_terminal(
    cluster, model_path, files, monkeypatch
):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    argv = ["decode", "--model", model_path, *files[:3]]
    assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert "decoding:" in stream.getvalue() and "3/3" in stream.getvalue()
    assert "decoded 3 files" in stream.getvalue()


def test_cli_local_cluster(model_path, files, capsys):
    argv = ["decode", "--model", model_path, *files[:2]]
    assert main(argv) == 0
    local = capsys.readouterr().out
    assert main([*argv, "--scheduler", "local:1"]) == 0
    assert capsys.readouterr().out == local


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--jobs", "2"], "--jobs and --scheduler"),
        (["--stream", "320"], "--stream decodes in this process"),
        (["-"], "(stdin)"),
    ],
)
def test_cli_scheduler_refuses_other_ways_of_running(
    extra, message, cluster, model_path, files, capsys
):
    argv = ["decode", "--model", model_path, files[0], *extra]
    assert main([*argv, "--scheduler", cluster.scheduler_address]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("scheduler", ["local:0", "local:x"])
def test_cli_bad_local_count(scheduler, model_path, files, capsys):
    argv = ["decode", "--model", model_path, files[0], "--scheduler", scheduler]
    assert main(argv) == 1
    assert "give local:N with N >= 1" in capsys.readouterr().err


def test_no_scheduler_answering_is_a_clear_error():
    with pytest.raises(ConfigError, match="no Dask scheduler answered"):
        cluster_decode.connect("tcp://127.0.0.1:9", timeout=2)


def test_without_dask_the_scheduler_option_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'npspeech\[dask\]'"):
        cluster_decode.connect("local:1")


def test_dask_is_imported_only_when_used():
    import subprocess

    code = (
        "import sys, npspeech.distributed, npspeech.cli.decode, npspeech.batch; "
        "print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"
