"""The servers under test, each started as a subprocess on 127.0.0.1, and their memory.

``project``: ``python -m service --predictor benchmarks/models/project.py:<Model> --port P
--concurrency N``, with the benchmark's own interpreter.

``cog``: Cog's server (``coglet``), installed on request into its own virtual environment
under ``benchmarks/.peer-cog/`` (never into the project's), started as
``COG_PREDICT_TYPE_STUB=predict.py:<Model> PORT=P python -m cog.server.http --host
127.0.0.1`` with that environment's ``bin/`` first on ``PATH`` (it starts its worker as
``python``) and, as working directory, a temporary directory holding
``models/cog_predict.py`` as ``predict.py``. ``--host 127.0.0.1`` is added because Cog
binds every interface by default. Its concurrency is ``COG_MAX_CONCURRENCY``.

Every server runs in a session of its own, so that stopping it (SIGTERM, then SIGKILL
after a grace period) reaches the worker processes it started, and so that its memory can
be measured as the resident set of its whole process tree (read from ``/proc``: this
benchmark is Linux-only).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

__all__ = [
    "CogPeer",
    "RssSampler",
    "Server",
    "ServerStartError",
    "ensure_cog_peer",
    "start_server",
    "tree_rss",
]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODELS = HERE / "models"
PEER_DIR = HERE / ".peer-cog"

START_TIMEOUT = 60.0
STOP_GRACE = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")

_PROBE = (
    "import json, importlib.metadata as m, cog, coglet, cog.server.http; "
    "print(json.dumps({p: m.version(p) for p in ('cog', 'coglet')}))"
)


class ServerStartError(Exception):
    """A server did not become READY; the message carries the tail of its log."""


@dataclass(frozen=True)
class CogPeer:
    venv: Path
    versions: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def ensure_cog_peer(
    *, reinstall: bool = False, log: Callable[[str], None] = print
) -> tuple[CogPeer | None, str]:
    """Make sure ``benchmarks/.peer-cog/venv`` has ``cog`` and ``coglet``; install them with
    pip if not. Returns the peer, or ``None`` and why not (the benchmark then measures
    the project alone and says so in its report)."""
    venv = PEER_DIR / "venv"
    python = venv / "bin" / "python"
    if reinstall and venv.exists():
        shutil.rmtree(venv)
    try:
        if not python.exists():
            log(f"creating {venv.relative_to(REPO)} for Cog's server")
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        probe = subprocess.run(
            [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120
        )
        if probe.returncode != 0:
            log("installing Cog's server: pip install cog coglet (into the peer venv)")
            pip = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "cog", "coglet"],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if pip.returncode != 0:
                return None, "`pip install cog coglet` failed: " + _tail(pip.stderr or pip.stdout)
            probe = subprocess.run(
                [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120
            )
            if probe.returncode != 0:
                return None, "cog/coglet installed but not importable: " + _tail(probe.stderr)
        versions = json.loads(probe.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return None, f"setting up Cog's server failed: {type(exc).__name__}: {exc}"
    return CogPeer(venv, versions), ""


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


# -- memory ----------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """Resident set size in bytes of ``pid`` and all its descendants (0 if gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: ppid follows the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0
    todo = [pid]
    for _ in range(100_000):
        if not todo:
            break
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(children.get(p, ()))
    return total


@dataclass
class RssSampler:
    """Samples a process tree's resident set every ``interval`` s while it runs."""

    pid: int
    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self) -> int:
        rss = tree_rss(self.pid)
        self.samples.append((time.monotonic(), rss))
        return rss

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    async def run(self, max_seconds: float = 3600.0) -> None:
        with trio.move_on_after(max_seconds):
            for _ in range(int(max_seconds / self.interval) + 1):
                self.sample()
                await trio.sleep(self.interval)


@asynccontextmanager
async def sampling_rss(pid: int, interval: float = 0.1) -> AsyncIterator[RssSampler]:
    sampler = RssSampler(pid, interval)
    sampler.sample()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run)
        try:
            yield sampler
        finally:
            nursery.cancel_scope.cancel()
    sampler.sample()


# -- running a server ------------------------------------------------------------------


@dataclass
class Server:
    name: str  # "project" or "cog"
    url: str
    process: trio.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return tree_rss(self.pid)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def start_server(
    name: str,
    model: str,
    *,
    concurrency: int,
    workdir: Path,
    peer: CogPeer | None = None,
) -> AsyncIterator[Server]:
    """Start server ``name`` serving ``model`` (a class of ``models/``), wait until its
    health check says READY, and stop it (and every process it started) on exit."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}-{model}-{port}.log"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    if name == "project":
        args = [
            sys.executable,
            "-m",
            "service",
            "--predictor",
            f"{MODELS / 'project.py'}:{model}",
            "--port",
            str(port),
            "--concurrency",
            str(concurrency),
        ]
        cwd = REPO
    elif name == "cog":
        if peer is None:
            raise ServerStartError("Cog's server is not installed")
        cwd = workdir / f"cog-{model}-{port}"
        cwd.mkdir()
        shutil.copy(MODELS / "cog_predict.py", cwd / "predict.py")
        bin_dir = peer.venv / "bin"
        env.update(
            PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(peer.venv),
            COG_PREDICT_TYPE_STUB=f"predict.py:{model}",
            PORT=str(port),
            COG_MAX_CONCURRENCY=str(concurrency),
        )
        args = [str(peer.python), "-m", "cog.server.http", "--host", "127.0.0.1"]
    else:
        raise ValueError(f"unknown server {name!r}")

    with open(log_path, "wb") as log_file:
        process = await trio.lowlevel.open_process(
            args,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    try:
        await _wait_ready(server)
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _wait_ready(server: Server) -> None:
    deadline = trio.current_time() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
        for _ in range(int(START_TIMEOUT / 0.05) + 1):
            if server.process.returncode is not None or trio.current_time() > deadline:
                break
            try:
                r = await client.get("/health-check")
                health = r.json() if r.status_code == 200 else {}
            except (httpx.HTTPError, ValueError):
                health = {}
            if health.get("status") == "READY":
                return
            if health.get("status") in ("SETUP_FAILED", "DEFUNCT"):
                setup = health.get("setup") or {}
                raise ServerStartError(
                    f"{server.name} server: {health['status']}: {_tail(str(setup.get('logs')), 3)}"
                )
            await trio.sleep(0.05)
    log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    state = (
        f"exited with {server.process.returncode}"
        if server.process.returncode is not None
        else f"not READY after {START_TIMEOUT:.0f} s"
    )
    raise ServerStartError(f"{server.name} server {state}: {_tail(log, 8)}")


def _signal_group(process: trio.Process, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # the session (and group) this benchmark started
    except ProcessLookupError:
        pass


async def _stop(process: trio.Process) -> None:
    _signal_group(process, signal.SIGTERM)
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
    _signal_group(process, signal.SIGKILL)  # the leader's stray workers, if any
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
