"""How BENCHMARKS.md writes its figures: ratios, durations and markdown tables."""

from __future__ import annotations

from typing import Any


def ratio(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"x{value:.{digits}f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]
