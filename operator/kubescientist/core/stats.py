"""Seed statistics as a result is reported: confidence intervals, a test against a baseline, one precision rule.

Pure and stdlib-only. Comparisons use Welch's t (unequal variances), two-sided at 5%: with the 2 to 5 seeds a
run affords, an exact permutation test could never reach significance, and the t interval is what a reader
expects beside "mean ± s.e.".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from kubescientist.core.objective import SeedStats
from kubescientist.core.spec import Direction

T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
"""The 97.5% quantile of Student's t for 1..30 degrees of freedom (beyond: 1.96)."""

SIGNIFICANT = 4
"""Significant digits of a number reported without an error bar."""

Verdict = Literal["better", "worse", "within noise", "single run", "identical"]


def t_quantile(df: float) -> float:
    """Two-sided 95% critical value; a fractional df is rounded down (the conservative side)."""
    whole = max(1, int(math.floor(df)))
    return T_975[whole - 1] if whole <= len(T_975) else 1.96


def ignores_seed(stats: SeedStats) -> bool:
    """Several seeds, all the same value: the program does not use its seed, so ± 0 would be a false claim."""
    return stats.n > 1 and max(stats.values) == min(stats.values)


def confidence_interval(stats: SeedStats) -> tuple[float, float] | None:
    """The 95% t interval of the mean; None for a single run."""
    if stats.n < 2:
        return None
    half = t_quantile(stats.n - 1) * stats.stderr
    return stats.mean - half, stats.mean + half


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate's seed mean against a baseline's."""

    difference: float
    """Candidate mean minus baseline mean."""
    interval: tuple[float, float] | None
    """95% Welch interval of the difference; None when either side is a single run."""
    df: float | None
    """Welch-Satterthwaite degrees of freedom."""
    verdict: Verdict
    """better / worse (the interval excludes 0, in the objective's direction), within noise, single run, or
    identical (both sides ignore their seeds: no noise to measure)."""

    def to_dict(self) -> dict[str, Any]:
        return {"difference": self.difference, "ci95": None if self.interval is None else list(self.interval),
                "df": self.df, "test": "Welch t, two-sided, 5%", "verdict": self.verdict}


def compare(candidate: SeedStats, baseline: SeedStats, direction: Direction) -> Comparison:
    difference = candidate.mean - baseline.mean
    sign = 1.0 if direction == "maximize" else -1.0
    if candidate.n < 2 or baseline.n < 2:
        return Comparison(difference, None, None, "single run")
    variance = candidate.stderr ** 2 + baseline.stderr ** 2
    if variance == 0.0:
        verdict: Verdict = "identical" if difference == 0 else ("better" if sign * difference > 0 else "worse")
        return Comparison(difference, (difference, difference), None, verdict)
    df = variance ** 2 / (candidate.stderr ** 4 / (candidate.n - 1) + baseline.stderr ** 4 / (baseline.n - 1))
    half = t_quantile(df) * math.sqrt(variance)
    low, high = difference - half, difference + half
    if low <= 0.0 <= high:
        verdict = "within noise"
    else:
        verdict = "better" if sign * difference > 0 else "worse"
    return Comparison(difference, (low, high), df, verdict)


def decimals_for(stderr: float) -> int:
    """The precision rule: decimal places that show a standard error to one significant digit (two when it
    starts with 1, where rounding to one would change it by up to a third). Means and differences follow it."""
    if stderr <= 0.0 or not math.isfinite(stderr):
        return 0
    magnitude = math.floor(math.log10(stderr))
    leading = int(f"{stderr:.0e}"[0])
    return max(0, -magnitude + (1 if leading == 1 else 0))


def plain(value: float, digits: int = SIGNIFICANT) -> str:
    """A number without an error bar: ``digits`` significant digits, trailing zeros dropped."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    places = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    text = f"{round(value, places):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_stats(stats: SeedStats | None, single: float | None = None, *, plus: str = "±") -> str:
    """A result as text under the one precision rule: ``0.670 ± 0.031 (n=3)``; ``0.7277 (single run)``;
    ``2991 (n=3, identical: the program ignores its seed)``."""
    if stats is None:
        return "-" if single is None else f"{plain(single)} (single run)"
    if stats.n == 1:
        return f"{plain(stats.mean)} (single run)"
    if ignores_seed(stats):
        return f"{plain(stats.mean)} (n={stats.n}, identical: the program ignores its seed)"
    places = decimals_for(stats.stderr)
    return f"{stats.mean:.{places}f} {plus} {stats.stderr:.{places}f} (n={stats.n})"


def fmt_delta(delta: float, stderr: float | None) -> str:
    """A signed difference, to the precision of its uncertainty when there is one."""
    if stderr is not None and stderr > 0:
        places = decimals_for(stderr)
        return f"{delta:+.{places}f}"
    return ("+" if delta >= 0 else "") + plain(delta)


def stats_dict(stats: SeedStats) -> dict[str, Any]:
    """The JSON form used throughout summary.json."""
    interval = confidence_interval(stats)
    return {"mean": stats.mean, "stderr": stats.stderr, "n": stats.n, "values": list(stats.values),
            "ci95": None if interval is None else list(interval), "singleRun": stats.n == 1,
            "ignoresSeed": ignores_seed(stats), "text": fmt_stats(stats)}
