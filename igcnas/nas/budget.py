"""Budgets: upper bounds on params, MACs and latency, written with human units (250k, 1.5M).

A budget is checked on closed-form costs before anything is built (a configuration over it is
never trained), recorded as Optuna constraints, and used by ``igc-nas pick``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from igcnas.errors import BadInput

__all__ = ["Budget", "parse_count"]


def parse_count(text: str | int | float | None, what: str) -> float | None:
    """Parse ``250k``, ``1.5M``, ``30M``, ``2G`` or a plain number; must be positive."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
        if not match:
            raise BadInput(f"{what} must be a positive number with an optional k/M/G suffix "
                             f"(e.g. 250k, 1.5M), got {text!r}")
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    if not value > 0:
        raise BadInput(f"{what} must be > 0, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Upper bounds; ``None`` means unbounded. MACs are multiply-accumulates (FLOPs = 2 x MACs)."""

    max_params: float | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None

    def violations(self, *, params: float, macs: float, latency_ms: float | None = None) -> dict[str, float]:
        """Constraint values in Optuna's convention (<= 0 feasible), normalised by the bound."""
        out = {}
        if self.max_params is not None:
            out["max_params"] = params / self.max_params - 1.0
        if self.max_macs is not None:
            out["max_macs"] = macs / self.max_macs - 1.0
        if self.max_latency_ms is not None and latency_ms is not None:
            out["max_latency_ms"] = latency_ms / self.max_latency_ms - 1.0
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {"max_params": self.max_params, "max_macs": self.max_macs, "max_latency_ms": self.max_latency_ms}
