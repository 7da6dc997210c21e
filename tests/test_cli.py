"""``python -m service`` as a user runs it: a real process, with bounded waits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service import PredictorLoadError
from service._predictor import load_predictor

START_TIMEOUT = 30.0  # generous: two cores, other test runs at the same time


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing.py:Predictor", "error: --predictor: no such file: missing.py"),
        (
            "predict.py:Missing",
            "error: --predictor 'predict.py:Missing': predict.py has no 'Missing'",
        ),
    ],
)
def test_bad_predictor_exits_non_zero_with_a_clear_message(
    tmp_path: Path, ref: str, message: str
) -> None:
    (tmp_path / "predict.py").write_text("def predict(prompt: str) -> str:\n    return prompt\n")
    result = run_cli("--predictor", ref, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("predict.py:untyped", "'prompt' of predict has no type hint"),
        ("predict.py:broken", "importing predict.py failed: ZeroDivisionError"),
        ("no_such_package.module:Predictor", "cannot import no_such_package.module"),
        ("predict.py", "expected 'path/to/file.py:Name'"),
        ("predict.py:NotCallable", "a predictor needs a predict() method"),
    ],
)
def test_more_bad_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ref: str, message: str
) -> None:
    # The same code path as above, in-process (a process per case would be slow).
    source = "def untyped(prompt):\n    return prompt\nNotCallable = 3\n"
    if "broken" in ref:
        source += "1 / 0\n"
    (tmp_path / "predict.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PredictorLoadError) as info:
        load_predictor(ref)
    assert message in str(info.value)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=START_TIMEOUT)


def wait_until_ready(http: httpx.Client, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            health: dict[str, object] = http.get("/health-check").json()
        except httpx.TransportError:
            health = {}
        if health.get("status") == "READY":
            return health
        time.sleep(0.1)
    raise AssertionError(f"not READY within {START_TIMEOUT} s")


def test_serves_the_demo_model_then_exits_0_on_shutdown(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = server
    with httpx.Client(base_url=base, timeout=START_TIMEOUT) as http:
        health = wait_until_ready(http, proc)
        assert health["setup"]["status"] == "succeeded"  # type: ignore[index]
        r = http.post("/predictions", json={"input": {"prompt": "it works", "delay": 0}})
        assert r.status_code == 200
        assert r.json()["status"] == "succeeded"
        assert r.json()["output"] == ["it ", "works"]
        assert http.post("/shutdown").status_code == 200
    assert proc.wait(timeout=START_TIMEOUT) == 0
    output = proc.communicate()[0]
    assert "Traceback" not in output
    assert output.count("Running on") == 1  # Hypercorn's line, once


def test_port_already_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(cwd=tmp_path, env={"PORT": str(port)})
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
