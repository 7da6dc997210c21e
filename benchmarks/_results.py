"""Collected figures, and the Markdown and JSON reports made of them.

Every figure is recorded once per repetition and server; the report quotes the median of
the repetitions, with the range when there were several, and the ratio project ÷ Cog.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Results", "Row", "Value"]

Value = float | int | bool | str | None
SERVERS = ("project", "cog")


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str = ""
    #: "lower" or "higher" is better; "" when neither (a count to read, not to win).
    better: str = ""
    digits: int = 1
    values: dict[str, list[Value]] = field(default_factory=dict)

    def median(self, server: str) -> float | None:
        numbers = [
            float(v)
            for v in self.values.get(server, [])
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        return statistics.median(numbers) if numbers else None

    def cell(self, server: str) -> str:
        values = self.values.get(server)
        if not values:
            return "—"
        if all(isinstance(v, bool) for v in values):
            yes = sum(1 for v in values if v)
            if len(values) == 1:
                return "yes" if yes else "no"
            return "yes" if yes == len(values) else ("no" if yes == 0 else f"{yes}/{len(values)}")
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        texts = [str(v) for v in values if isinstance(v, str)]
        if not numbers:
            return texts[0] if texts else "—"
        median = statistics.median(numbers)
        text = self._fmt(median)
        if len(numbers) > 1 and min(numbers) != max(numbers):
            text += f" ({self._fmt(min(numbers))}–{self._fmt(max(numbers))})"
        if texts:
            text += f"; {texts[0]}"
        return text

    def ratio(self) -> str:
        p, c = self.median("project"), self.median("cog")
        if p is None or c is None:
            return "—"
        if c == 0:
            return "—" if p == 0 else "∞"
        return f"{p / c:.2f}"

    def _fmt(self, x: float) -> str:
        if self.digits == 0 or (float(x).is_integer() and abs(x) >= 100):
            return f"{x:,.0f}"
        return f"{x:,.{self.digits}f}"


@dataclass
class Results:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    #: Remarks per scenario and server: caps hit, servers that did not start, ...
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: Webhook arrivals of scenario 1 for the plot: case -> server -> series.
    series: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def record(
        self,
        scenario: str,
        metric: str,
        server: str,
        value: Value,
        *,
        unit: str = "",
        better: str = "",
        digits: int = 1,
    ) -> None:
        row = self.rows.get((scenario, metric))
        if row is None:
            row = self.rows[(scenario, metric)] = Row(scenario, metric, unit, better, digits)
        row.values.setdefault(server, []).append(value)

    def note(self, scenario: str, text: str) -> None:
        items = self.notes.setdefault(scenario, [])
        if text not in items:
            items.append(text)

    def scenarios(self) -> list[str]:
        seen: list[str] = []
        for scenario, _ in self.rows:
            if scenario not in seen:
                seen.append(scenario)
        for scenario in self.notes:
            if scenario not in seen:
                seen.append(scenario)
        return seen

    def markdown(self, servers: tuple[str, ...]) -> str:
        with_cog = "cog" in servers
        lines: list[str] = []
        for scenario in self.scenarios():
            lines += [f"### {scenario}", ""]
            rows = [r for r in self.rows.values() if r.scenario == scenario]
            if rows:
                if with_cog:
                    lines += [
                        "| metric | project | Cog | project ÷ Cog | better |",
                        "|---|---:|---:|---:|---|",
                    ]
                else:
                    lines += ["| metric | project | better |", "|---|---:|---|"]
                for r in rows:
                    metric = f"{r.metric} ({r.unit})" if r.unit else r.metric
                    if with_cog:
                        lines.append(
                            f"| {metric} | {r.cell('project')} | {r.cell('cog')} | "
                            f"{r.ratio()} | {r.better} |"
                        )
                    else:
                        lines.append(f"| {metric} | {r.cell('project')} | {r.better} |")
                lines.append("")
            for text in self.notes.get(scenario, []):
                lines.append(f"- {text}")
            if self.notes.get(scenario):
                lines.append("")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(
            {
                "meta": self.meta,
                "rows": [
                    {
                        "scenario": r.scenario,
                        "metric": r.metric,
                        "unit": r.unit,
                        "better": r.better,
                        "values": r.values,
                        "median": {s: r.median(s) for s in SERVERS},
                    }
                    for r in self.rows.values()
                ],
                "notes": self.notes,
            },
            indent=1,
        )
