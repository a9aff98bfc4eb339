"""Budgets: upper bounds on params, MACs and latency, written with human units (250k, 1.5M).

A budget is checked on closed-form costs before anything is built (a configuration over it is
never trained), recorded as Optuna constraints, and used by ``igc-nas pick``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from igcnas.errors import BadInput

__all__ = ["CONSTRAINT_NAMES", "LATENCY_CONSTRAINTS", "Budget", "is_feasible",
           "named_constraints", "parse_count", "record_constraints", "violation"]

# The one order of the constraints: Budget.violations yields them in it, and the list form that
# optuna-dashboard reads (``record_constraints``) is written in it. Latency is last because it is the
# only one that can be missing on a trial (measured only when the trial got that far), so a shorter
# list never shifts the meaning of a position.
CONSTRAINT_NAMES: tuple[str, ...] = ("max_params", "max_macs", "max_latency_ms", "max_latency_ms_measured")
# Each constraint's bound: the measured-latency constraint checks the trained network, timed again after
# training, against the same latency budget as the prediction did before training.
_BOUND_OF = {"max_params": "max_params", "max_macs": "max_macs", "max_latency_ms": "max_latency_ms",
             "max_latency_ms_measured": "max_latency_ms"}


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


def violation(cost: float, bound: float) -> float:
    """How far ``cost`` is over ``bound``, relative to the bound: the one rule of "within the budget".

    Optuna's convention: ``<= 0`` is within, so the bound itself is within (inclusive, for params, MACs and
    latency alike). The figure compared is the cost as measured or predicted, never a rounded copy (round
    only for display: a prediction rounded up to 5 decimals was once judged over a bound equal to itself).
    Written as a difference first: a float difference is zero exactly when the two are equal and has the
    sign of the comparison, so ``violation(c, b) <= 0`` is ``c <= b`` for every pair of floats.
    """
    return (cost - bound) / bound


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Upper bounds; ``None`` means unbounded. MACs are multiply-accumulates (FLOPs = 2 x MACs)."""

    max_params: float | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None

    def violations(self, *, params: float, macs: float, latency_ms: float | None = None,
                   measured_latency_ms: float | None = None) -> dict[str, float]:
        """Constraint values in Optuna's convention (<= 0 feasible), normalised by the bound, in
        ``CONSTRAINT_NAMES`` order; a bound that is unset, or a cost not measured, gives no entry.

        ``latency_ms`` is the figure known before training (predicted from a latency table, or the
        untrained network measured); ``measured_latency_ms`` the trained network timed after training: a
        trial predicted within the budget and measured over it is trained but infeasible.
        """
        costs = {"max_params": params, "max_macs": macs, "max_latency_ms": latency_ms,
                 "max_latency_ms_measured": measured_latency_ms}
        bounds = self.as_dict()
        return {name: violation(costs[name], bounds[_BOUND_OF[name]]) for name in CONSTRAINT_NAMES
                if bounds[_BOUND_OF[name]] is not None and costs[name] is not None}

    def fits(self, *, params: float, macs: float, latency_ms: float | None = None) -> bool:
        """Whether the costs are within every bound (``violation`` <= 0); what ``pick`` and the dashboard ask.

        Unlike :meth:`violations`, which leaves out a cost that was not measured, a latency budget is met
        only by a known latency: a trial without one cannot be shown to fit.
        """
        if self.max_latency_ms is not None and (latency_ms is None or latency_ms != latency_ms):  # None or NaN
            return False
        return is_feasible(self.violations(params=params, macs=macs, latency_ms=latency_ms))

    def without_latency(self) -> Budget:
        """The same params and MACs bounds, no latency bound: what closed-form costs alone can decide."""
        return Budget(max_params=self.max_params, max_macs=self.max_macs)

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in ("max_params", "max_macs", "max_latency_ms")}

    def admits(self, config: Any) -> bool:
        """Whether a NetworkConfig's closed-form params and MACs are within the budget (latency not checked)."""
        from igcnas.search_space.costs import closed_form_costs

        costs = closed_form_costs(config)
        return self.without_latency().fits(params=costs.params, macs=costs.macs)


# The constraints that belong to a device and runtime: a pick for another device judges latency anew.
LATENCY_CONSTRAINTS: tuple[str, ...] = ("max_latency_ms", "max_latency_ms_measured")


def is_feasible(constraints: Mapping[str, float], *, ignore: tuple[str, ...] = ()) -> bool:
    """Whether every named constraint (Optuna's convention: <= 0) holds, those in ``ignore`` left out."""
    return all(v <= 0.0 for k, v in constraints.items() if k not in ignore)


def named_constraints(constraints: Mapping[str, float]) -> dict[str, float]:
    """A trial's constraints by name, without the positional copies of the list form.

    Optuna's ``trial.constraints`` merges the list form (keys ``"0"``, ``"1"``, ...) with the
    per-key form, so a trial recorded by :func:`record_constraints` has every value twice; summing or
    showing them needs one copy. A trial with only the list form (written by another tool) keeps it.
    """
    named = {key: float(value) for key, value in constraints.items() if not key.isdigit()}
    return named if named else {key: float(value) for key, value in constraints.items()}


def record_constraints(trial: Any, constraints: Mapping[str, float],
                       already: Mapping[str, float] | None = None) -> None:
    """Record budget constraints on an Optuna trial in both of Optuna's forms.

    Per key (Optuna 5's ``constraints:<name>`` system attributes, which igcnas reads back by name), and
    as the list under the ``constraints`` system attribute in ``CONSTRAINT_NAMES`` order, which is the
    only form optuna-dashboard reads to tell feasible from infeasible trials. Keys already recorded
    keep their value (as Optuna's ``set_constraint`` has it), so it may be called again with more
    constraints (the latency one, once measured); the list is rewritten from everything recorded.
    ``already``: what the caller recorded on this trial before (a writer knows it), so the storage is
    not read back; None reads it.
    """
    from igcnas.nas.optuna_adapter import set_constraints

    unknown = set(constraints) - set(CONSTRAINT_NAMES)
    if unknown:
        raise ValueError(f"unknown constraint(s) {sorted(unknown)}; known: {list(CONSTRAINT_NAMES)}")
    if not constraints:
        return  # nothing new; no budget writes no list (optuna-dashboard reads a missing list as feasible)
    recorded = named_constraints(trial.constraints) if already is None else dict(already)
    new = {key: float(value) for key, value in constraints.items() if key not in recorded}
    recorded.update(new)
    if new:
        set_constraints(trial, new, [recorded[name] for name in CONSTRAINT_NAMES if name in recorded])
