"""The benchmark's smoke run, so that ``python -m benchmarks`` cannot rot unnoticed.

It runs the real command (``--smoke``: project only, tiny sizes, seconds) in a subprocess
and checks that every scenario ran against the real server and wrote its report. It
asserts what the benchmark saw the service do (every webhook delivered, bodies in order),
never how fast: figures on a shared 2-core machine are noise.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _rows(report: dict[str, Any], scenario_prefix: str) -> dict[str, list[Any]]:
    return {
        row["metric"]: row["values"].get("project", [])
        for row in report["rows"]
        if row["scenario"].startswith(scenario_prefix)
    }


def test_smoke_run_writes_a_report_of_every_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    markdown = (tmp_path / "report.md").read_text()
    for heading in ("### 1. Streaming", "### 2. ", "### 3. ", "### 4. ", "### 5. ", "### 6. "):
        assert heading in markdown, f"{heading!r} missing from the report"
    assert "| metric | project | better |" in markdown  # project only: no Cog column

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["servers"] == ["project"]
    assert not any("failed" in note for note in report["notes"].get("Run", []))

    # 1. Both streaming cases: a few throttled requests, every output and log line
    # delivered, bodies in order, the final body complete.
    streaming = [row for row in report["rows"] if row["scenario"].startswith("1. ")]
    by_case: dict[str, dict[str, list[Any]]] = {}
    for row in streaming:
        by_case.setdefault(row["scenario"], {})[row["metric"]] = row["values"]["project"]
    assert len(by_case) == 2
    for case, metrics in by_case.items():
        assert metrics["final body complete"] == [True], case
        assert metrics["bodies in order, terminal last"] == [True], case
        never = next(v for k, v in metrics.items() if k.startswith("outputs + log lines never"))
        assert never == [0], case
        assert 2 <= metrics["webhook requests for the prediction"][0] <= 10, case

    latency = _rows(report, "2. ")
    assert latency["terminal webhooks received (of 3)"] == [3]
    assert latency["start: p50, from sending the request"][0] > 0

    sync = _rows(report, "3. ")
    assert sync["successful predictions per second"][0] > 0
    assert sync["answers not 200"] == [0]
    assert sync["200 with a wrong output"] == [0]

    concurrency = _rows(report, "4. ")
    assert concurrency["accepted (202) of 20"] == [20]
    assert concurrency["terminal webhooks delivered of 20"] == [20]
    assert concurrency["peak RSS of the server (all its processes)"][0] > 0

    hot = _rows(report, "5. ")
    assert hot["terminal webhook within 10 s of the answer"] == [True]
    assert hot["model run time with ÷ without webhook"][0] > 0

    slow = _rows(report, "6. ")
    assert slow["final body complete, slow receiver"] == [True]
    assert slow["final body complete, fast receiver"] == [True]

    # The plot needs the `bench` extra; without it the report says so instead.
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "scenario1-webhook-arrivals.png").stat().st_size > 10_000
    else:
        assert "matplotlib is not installed" in markdown
