"""Turning the receiver's arrivals into figures: pure functions, no I/O.

The receiver has already counted the outputs and log lines of every body (see
``_receiver.carried``); only the fullest body of a prediction is parsed here, once, for
the time at which the model made each output and log line.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ._receiver import Arrival, carried

__all__ = [
    "StreamStats",
    "analyse_stream",
    "max_in_window",
    "percentile",
    "predict_time",
    "stamps",
]

_SUCCEEDED = b'"status":"succeeded"'
_STAMP = re.compile(r"[#@](\d+) (\d+\.\d+)")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def max_in_window(times: Sequence[float], window: float = 0.5) -> int:
    """The most of ``times`` (sorted) that fall in any half-open window of ``window`` s."""
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def stamps(body: bytes) -> tuple[list[float], list[float]]:
    """When the model made each output and each log line of a body, by index."""
    prediction = json.loads(body)
    output = prediction.get("output") or []
    if not isinstance(output, list):
        output = [output]
    out_times = [float(m.group(2)) for m in map(_STAMP.match, map(str, output)) if m]
    log_times = [float(m.group(2)) for m in _STAMP.finditer(prediction.get("logs") or "")]
    return out_times, log_times


@dataclass
class StreamStats:
    requests: int
    max_in_500ms: int
    #: Seconds from an output or log line being made to the first request carrying it.
    staleness_median: float | None
    staleness_max: float | None
    #: Outputs and log lines that no request carried (of ``2 n``).
    undelivered: int
    #: Requests whose body carried fewer outputs or log lines than one before it.
    out_of_order: int
    terminal_received: bool
    terminal_last: bool
    final_complete: bool
    #: Seconds from the model's last output to the terminal request's arrival.
    terminal_delay: float | None
    #: When the model made each output (from the fullest body), for the plot.
    made: list[float]
    #: ``metrics.predict_time`` of the terminal body: the model's own run time.
    predict_time: float | None

    @property
    def made_per_second(self) -> float | None:
        """The model's output rate, from the stamps the bodies carried."""
        if len(self.made) < 2 or self.made[-1] <= self.made[0]:
            return None
        return (len(self.made) - 1) / (self.made[-1] - self.made[0])

    @property
    def in_order(self) -> bool:
        return self.out_of_order == 0 and self.terminal_last


def analyse_stream(
    arrivals: Sequence[Arrival], n: int, fullest: bytes | None, terminal_body: bytes | None
) -> StreamStats:
    """Figures for one prediction whose model made ``n`` stamped outputs and log lines;
    ``fullest`` and ``terminal_body`` are the bodies the receiver kept for it."""
    out_of_order = best_out = best_logs = 0
    for a in arrivals:
        if a.outputs < best_out or a.logs < best_logs:
            out_of_order += 1
        best_out, best_logs = max(best_out, a.outputs), max(best_logs, a.logs)

    terminals = [i for i, a in enumerate(arrivals) if a.terminal]
    terminal = arrivals[terminals[0]] if terminals else None
    final_complete = (
        terminal_body is not None
        and _SUCCEEDED in terminal_body
        and carried(terminal_body) == (n, n)
    )
    out_times, log_times = stamps(fullest) if fullest is not None else ([], [])
    staleness = _first_carried([(a.at, a.outputs) for a in arrivals], out_times)
    staleness += _first_carried([(a.at, a.logs) for a in arrivals], log_times)
    return StreamStats(
        requests=len(arrivals),
        max_in_500ms=max_in_window([a.at for a in arrivals]),
        staleness_median=statistics.median(staleness) if staleness else None,
        staleness_max=max(staleness) if staleness else None,
        undelivered=2 * n - len(staleness),
        out_of_order=out_of_order,
        terminal_received=terminal is not None,
        terminal_last=len(terminals) == 1 and terminals[0] == len(arrivals) - 1,
        final_complete=final_complete,
        terminal_delay=terminal.at - max(out_times) if terminal and out_times else None,
        made=out_times,
        predict_time=predict_time(terminal_body) if terminal_body is not None else None,
    )


def predict_time(body: bytes) -> float | None:
    """``metrics.predict_time`` of a prediction body, if it has one."""
    value = (json.loads(body).get("metrics") or {}).get("predict_time")
    return float(value) if isinstance(value, int | float) else None


def _first_carried(carried: Sequence[tuple[float, int]], made: Sequence[float]) -> list[float]:
    """For each item (index i, made at ``made[i]``), the time from its making to the first
    arrival (``carried``: arrival time, items in the body, in arrival order) whose body
    carries more than i of them."""
    result: list[float] = []
    i = 0
    for at, count in carried:
        for _ in range(max(0, min(count, len(made)) - i)):
            result.append(at - made[i])
            i += 1
    return result
