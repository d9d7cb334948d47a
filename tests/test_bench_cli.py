"""`npspeech bench`: its short run, the fields and values of its JSON, its errors."""

from __future__ import annotations

import json
import math
import re

import pytest

from npspeech import bench
from npspeech.cli import main

STAGES = {
    ("features", "offline"),
    ("acoustic", "offline"),
    ("acoustic", "streaming"),
    ("end to end", "offline"),
}
DECODERS = {"decoder greedy", "decoder beam", "decoder beam + LM"}


def run_json(argv, capsys) -> dict:
    assert main(["bench", *argv]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out)


def check_report(report: dict, seconds: float, width: int) -> None:
    assert report["audio_seconds"] == seconds
    assert report["model"]["architecture"] == "deepspeech"
    assert report["model"]["width"] == width
    assert report["model"]["parameters"] > 0
    assert report["backends"] == ["numba", "numpy"]
    assert report["cpu_count"] >= 1 and report["npspeech_version"]
    rows = report["stages"]
    for backend in report["backends"]:
        found = {(r["stage"], r["mode"]) for r in rows if r["backend"] == backend}
        assert found == STAGES, backend
    assert {r["stage"] for r in rows if r["backend"] is None} == DECODERS
    for row in rows:
        assert 0.0 < row["seconds"] < 60.0, row
        assert math.isclose(row["rtf"] * row["x_real_time"], 1.0), row
        covered = seconds * row["batch"]
        assert math.isclose(row["rtf"], row["seconds"] / covered), row
    batched = [r for r in rows if r["stage"] == "acoustic" and r["mode"] == "offline"]
    assert all(r["batch"] == 2 for r in batched)
    assert 50.0 < report["peak_memory_mb"] < 64_000.0
    threads = report["threads"]
    assert threads["numba"] >= 1
    assert threads["pools"] is None or all(p["threads"] >= 1 for p in threads["pools"])


def test_quick_run_reports_every_stage(capsys):
    report = run_json(["--quick", "--no-compile-time", "--json"], capsys)
    check_report(report, seconds=2.0, width=bench.WIDTHS["tiny"])
    assert report["jit"] is None
    assert report["repeats"] == 1 and report["beam_width"] == 100
    assert report["scorer"]["source"]  # one was found or built


def test_table_lists_the_stages(capsys):
    code = main(["bench", "--quick", "--no-compile-time", "--backend", "numpy",
                 "--width", "16", "--seconds", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "width 16" in out
    assert re.search(r"^features +numpy +offline", out, re.M)
    assert not re.search(r"^(features|acoustic|end to end) +numba", out, re.M)
    for name in (
        "features",
        "acoustic",
        "streaming",
        "decoder beam + LM",
        "end to end",
    ):
        assert name in out
    assert "not measured (--no-compile-time)" in out


@pytest.mark.slow
def test_quick_run_measures_the_compile_time(capsys):
    report = run_json(["--quick", "--json", "--no-progress"], capsys)
    check_report(report, seconds=2.0, width=bench.WIDTHS["tiny"])
    jit = report["jit"]
    assert jit["backend"] == "numba"
    assert jit["cold_compile_seconds"] > 0.1  # an empty cache compiles
    assert jit["cold_seconds"] > jit["cold_compile_seconds"]
    assert jit["warm_compile_seconds"] < 0.1 * jit["cold_compile_seconds"]
    assert jit["warm_seconds"] < jit["cold_seconds"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--width", "huge"], "--width"),
        (["--width", "0"], "--width"),
        (["--seconds", "0.5"], "--seconds"),
        (["--repeats", "0"], "--repeats"),
        (["--batch", "0"], "--batch"),
        (["--model", "no/such/model.npz"], "no/such/model.npz"),
        (["--scorer", "no/such.scorer"], "no/such.scorer"),
    ],
)
def test_bad_settings_are_named(argv, message, capsys):
    assert main(["bench", "--no-compile-time", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_widths_by_name_and_number():
    assert bench.hidden_width("small") == 512
    assert bench.hidden_width("LARGE") == 2048
    assert bench.hidden_width("96") == 96
