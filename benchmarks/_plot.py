"""The plot of scenario 1: webhook arrivals over time, one line per server.

One row per streaming case. Left: how many webhook requests had arrived by each moment
(log scale: the servers differ by orders of magnitude). Right: how many outputs each
arriving body carried, against how many the model had made (dashed): the vertical gap
between a server's steps and the dashed line is its staleness.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_arrivals"]

COLORS = {"project": "tab:blue", "cog": "tab:orange"}
LABELS = {"project": "project", "cog": "Cog"}


def plot_arrivals(series: dict[str, dict[str, dict[str, Any]]], path: Path) -> str | None:
    """Write the PNG; returns why not when it could not (matplotlib missing, no data)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no plot"
    if not series:
        return "scenario 1 did not run; no plot"
    cases = list(series)
    fig, axes = plt.subplots(
        len(cases), 2, figsize=(13, 3.6 * len(cases)), squeeze=False, layout="constrained"
    )
    for row, case in enumerate(cases):
        left, right = axes[row]
        for server, data in series[case].items():
            color, label = COLORS.get(server, "tab:gray"), LABELS.get(server, server)
            times = [t for t, _ in data["arrivals"]]
            if times:
                left.step(
                    times,
                    range(1, len(times) + 1),
                    where="post",
                    color=color,
                    linewidth=2.2 if server == "project" else 1.2,
                    zorder=3 if server == "project" else 2,
                    label=f"{label}: {len(times):,} requests",
                )
            carried = [(t, c) for t, c in data["arrivals"] if c is not None]
            if carried:
                right.plot(
                    [t for t, _ in carried],
                    [c for _, c in carried],
                    ".",
                    color=color,
                    markersize=4 if len(carried) < 200 else 1.5,
                    zorder=3 if server == "project" else 2,
                    label=f"{label}: outputs in each webhook body",
                )
            made = data["made"]
            if made:
                right.plot(
                    [t for t, _ in made],
                    [i for _, i in made],
                    "--",
                    color=color,
                    linewidth=0.8,
                    alpha=0.7,
                    label=f"{label}: outputs made (stamps in the fullest body)",
                )
        left.set_yscale("log")
        left.set_title(f"{case}: webhook requests arrived", fontsize=10)
        left.set_xlabel("seconds since the prediction was requested")
        left.set_ylabel("requests so far")
        left.grid(True, alpha=0.3)
        left.legend(fontsize=8, loc="best")
        right.set_title(f"{case}: outputs carried vs made", fontsize=10)
        right.set_xlabel("seconds since the prediction was requested")
        right.set_ylabel("outputs")
        right.grid(True, alpha=0.3)
        right.legend(fontsize=8, loc="best")
    fig.suptitle("Scenario 1: streaming under the webhook throttle (last repetition)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
