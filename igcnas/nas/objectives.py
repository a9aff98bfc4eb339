"""The search's objectives: one table of name, direction and unit.

Every reader of a study (the backends, the Pareto front, the hypervolume, the
dashboard, the study's own ``metric_names``) takes the objectives from here, so
adding latency or reordering is one edit. MACs are multiply-accumulates;
where FLOPs are shown they are 2 x MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Objective", "OBJECTIVES", "LATENCY", "objectives_for", "ACCURACY", "PARAMS", "MACS"]


@dataclass(frozen=True)
class Objective:
    name: str  # the Optuna metric name and the trials-table column
    direction: str  # "maximize" or "minimize" (Optuna's words)
    unit: str

    @property
    def tune_mode(self) -> str:
        """Ray Tune's word for the direction."""
        return "max" if self.direction == "maximize" else "min"


ACCURACY = Objective("val_accuracy", "maximize", "fraction of validation images")
PARAMS = Objective("params", "minimize", "trainable parameters")
MACS = Objective("macs", "minimize", "multiply-accumulates per image (FLOPs = 2 x MACs)")
LATENCY = Objective("latency_ms", "minimize", "ms per forward pass: predicted from the latency table (its device, "
                    "runtime, threads and batch), else measured at batch 1 on this machine's CPU")
OBJECTIVES: tuple[Objective, ...] = (ACCURACY, PARAMS, MACS)


def objectives_for(*, latency: bool) -> tuple[Objective, ...]:
    """The objectives of a search, with measured latency as a fourth when asked for."""
    return OBJECTIVES + ((LATENCY,) if latency else ())
