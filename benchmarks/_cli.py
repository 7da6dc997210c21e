"""``python -m benchmarks``: run the scenarios, write the report and the plot."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import trio

from ._plot import plot_arrivals
from ._receiver import WebhookReceiver
from ._results import Results
from ._scenarios import PRESETS, SCENARIOS, Context, Sizes
from ._servers import REPO, CogPeer, ServerStartError, ensure_cog_peer

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
RUN = "Run"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load benchmarks of the prediction service's webhooks, optionally side "
        "by side with Cog's server. Run from the repository root.",
    )
    parser.add_argument(
        "--peer",
        choices=["cog"],
        help="also measure Cog's server, installed on first use into benchmarks/.peer-cog/",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="smaller sizes, one repetition (a few minutes)"
    )
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, project only, one repetition (seconds; what the tests run)",
    )
    parser.add_argument("--repeat", type=int, help="repetitions of each case (medians are quoted)")
    parser.add_argument(
        "--only",
        help="comma-separated scenarios to run: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--out", type=Path, help="directory for the report (default: %(prog)s)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=12.0,
        help="no case starts after this many minutes (default 12; each case has its own cap)",
    )
    parser.add_argument(
        "--reinstall-peer", action="store_true", help="recreate the peer's virtual environment"
    )
    args = parser.parse_args(argv)
    if args.smoke and args.peer:
        parser.error("--smoke measures the project only; drop --peer")
    if args.repeat is not None and not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    if args.only:
        unknown = set(args.only.split(",")) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes: Sizes = PRESETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.repeat is not None:
        sizes = replace(sizes, repeat=args.repeat)
    out: Path = args.out or (RESULTS / "smoke.tmp" if args.smoke else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    workdir = out / "logs.tmp"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    results = Results()
    servers: tuple[str, ...] = ("project",)
    peer: CogPeer | None = None
    if args.peer == "cog":
        peer, why = ensure_cog_peer(reinstall=args.reinstall_peer, log=log)
        if peer is None:
            log(f"Cog's server is not available: {why}; measuring the project alone")
            results.note(RUN, f"Cog's server could not be measured: {why}")
        else:
            servers = ("project", "cog")
            log(f"Cog's server: {peer.versions}")
    selected = args.only.split(",") if args.only else list(SCENARIOS)
    results.meta = _meta(args, sizes, servers, peer, argv)

    errors = trio.run(_run, sizes, servers, peer, results, workdir, selected, args, log)

    elapsed = time.monotonic() - started
    results.meta["elapsed_seconds"] = round(elapsed, 1)
    results.meta["load_average_end"] = os.getloadavg()
    plot_path = out / "scenario1-webhook-arrivals.png"
    why_no_plot = plot_arrivals(results.series, plot_path) if "streaming" in selected else None
    if why_no_plot:
        results.note(RUN, why_no_plot)
    report = _report(results, servers, plot_path if not why_no_plot else None, elapsed)
    (out / "report.md").write_text(report)
    (out / "report.json").write_text(results.to_json())
    log(f"wrote {out / 'report.md'} in {elapsed:.0f} s; server logs in {workdir}")
    if errors:
        log(f"{errors} case(s) of the project failed; see the notes in the report")
    return 1 if errors else 0


async def _run(
    sizes: Sizes,
    servers: tuple[str, ...],
    peer: CogPeer | None,
    results: Results,
    workdir: Path,
    selected: list[str],
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> int:
    """Run the selected scenarios, server after server within each repetition, so that
    both meet the same background load. Returns how many project cases failed."""
    receiver = WebhookReceiver()
    errors = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(receiver.serve)
        ctx = Context(
            sizes=sizes,
            servers=servers,
            peer=peer,
            receiver=receiver,
            results=results,
            workdir=workdir,
            deadline=trio.current_time() + args.max_minutes * 60,
            log=log,
            reuse_servers=args.smoke,
        )
        try:
            if args.smoke:
                await ctx.prewarm("project", ("Stream", "SyncStream", "Trivial"))
            for scenario in selected:
                for rep in range(sizes.repeat):
                    for name in servers:
                        if ctx.time_left() <= 0:
                            results.note(
                                RUN,
                                f"the {args.max_minutes:g}-minute budget was spent: "
                                f"{scenario} was cut short",
                            )
                            continue
                        try:
                            await SCENARIOS[scenario](ctx, name, rep)
                        except Exception as exc:  # one case's failure is noted, not fatal
                            if name == "project":
                                errors += 1
                            detail = str(exc) if isinstance(exc, ServerStartError) else repr(exc)
                            results.note(RUN, f"{scenario} on {name} failed: {detail[:400]}")
                            with open(workdir / "errors.log", "a") as f:
                                f.write(f"--- {scenario} on {name}, repetition {rep + 1}\n")
                                f.write(traceback.format_exc())
                            log(f"{scenario} on {name} failed: {detail[:200]}")
        finally:
            with trio.CancelScope(shield=True):
                await ctx.aclose()
            nursery.cancel_scope.cancel()
    return errors


def _meta(
    args: argparse.Namespace,
    sizes: Sizes,
    servers: tuple[str, ...],
    peer: CogPeer | None,
    argv: Sequence[str] | None,
) -> dict[str, object]:
    from service import __version__

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--", "service"):
        commit += " with uncommitted changes in service/"
    return {
        "command": command.strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "servers": list(servers),
        "project_version": __version__,
        "project_commit": commit or "unknown",
        "peer_versions": peer.versions if peer else None,
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "sizes": asdict(sizes),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _report(results: Results, servers: tuple[str, ...], plot: Path | None, elapsed: float) -> str:
    m = results.meta
    peer = m.get("peer_versions") or {}
    lines = [
        "# Benchmark report",
        "",
        f"- Command: `{m['command']}` (from the repository root), "
        f"{m['sizes']['name']} sizes, {m['sizes']['repeat']} repetition(s) per case; "
        f"took {elapsed / 60:.1f} min.",
        f"- When: {m['date']}. Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), "
        f"Python {m['python']}; load average at start "
        f"{_load(m['load_average_start'])}, at end {_load(m.get('load_average_end'))}.",
        f"- Servers: project {m['project_version']} (commit {m['project_commit']})"
        + (
            f"; Cog: cog {peer.get('cog')}, coglet {peer.get('coglet')}"
            if "cog" in servers
            else "; Cog not measured"
        )
        + ".",
        "- Cells are the median of the repetitions, with (min–max) when they differ; "
        "the ratio is project ÷ Cog of the medians; `better` says which way is better.",
        "",
    ]
    if plot is not None:
        lines += [f"![Scenario 1: webhook arrivals over time]({plot.name})", ""]
    lines.append(results.markdown(servers))
    lines.append(METHOD)
    return "\n".join(lines)


def _load(value: object) -> str:
    if isinstance(value, list | tuple) and value:
        return " / ".join(f"{float(v):.2f}" for v in value)
    return "?"


METHOD = """
## How it is measured

- Both servers run as subprocesses on 127.0.0.1 with the same models
  (`benchmarks/models/project.py`, and `benchmarks/models/cog_predict.py` written against
  Cog's SDK), a fresh server for every case. The webhook receiver (Trio and raw h11) and the
  load driver (Trio and httpx) share the benchmark's own process.
- Arrival times are taken when a request's body has fully arrived, on `time.monotonic()`,
  the clock the models stamp their outputs with, so staleness is measured across processes.
- Staleness: for every output and log line, the time from the model making it to the
  arrival of the first webhook body that carries it; items never carried are counted apart.
- Peak RSS: the resident set of the server's whole process tree (Cog runs the model in a
  worker process), sampled from /proc every 100 ms (50 ms in scenario 6).
- Every case has a time cap; a case that hits it records what it saw, says so, and is not
  repeated on that server.
"""
