"""What ``igc-nas refine`` recorded for a trial, read back: its accuracy at the highest fidelity it has.

Kept apart from ``refine`` (which runs the work and imports the front and the pick) so that the trials
frame can read refined results without an import circle.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from igcnas.nas.records import StudyKey

__all__ = ["Refined", "refined_results", "fidelity_words"]


@dataclass(frozen=True)
class Refined:
    """A trial's refined accuracy at its highest fidelity: the longest training at which a seed finished."""

    epochs: int
    accuracies: tuple[float, ...]  # one per seed that trained to the end
    seeds: tuple[int, ...]
    failed: int = 0  # seeds whose training failed (diverged, over a limit) at this length

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def words(self) -> str:
        """``30 epochs, mean of 3 seeds (sd 0.0021)``: how the figure was measured."""
        n = len(self.accuracies)
        text = f"{self.epochs} epochs, " + (f"mean of {n} seeds (sd {self.std:.4f})" if n > 1 else
                                             f"1 seed ({self.seeds[0]})" if n else "no seed finished")
        return text + (f", {self.failed} failed" if self.failed else "")


def fidelity_words(fidelity: Any, search_accuracy: Any) -> str:
    """At which fidelity an accuracy was measured, with the search's figure beside a refined one (what pick,
    report.md and the dashboard's hover say)."""
    words = fidelity if isinstance(fidelity, str) and fidelity else "search"
    if words.startswith("refined") and search_accuracy is not None and search_accuracy == search_accuracy:
        return f"{words}; search {float(search_accuracy):.4f}"
    return words


def refined_results(attrs: dict[str, Any]) -> dict[int, Refined]:
    """Each refined trial's :class:`Refined` from a study's user attributes (``StudyKey.REFINED`` keys).

    The highest fidelity is the longest training at which at least one seed finished; a trial whose every
    refinement failed has a :class:`Refined` with no accuracies (and so keeps its search figure).
    """
    by: dict[int, dict[int, dict[int, dict[str, Any]]]] = {}
    prefix = StudyKey.REFINED + ":"
    for key, value in attrs.items():
        if not key.startswith(prefix) or not isinstance(value, dict):
            continue
        try:
            trial, epochs, seed = (int(part) for part in key[len(prefix):].split(":"))
        except ValueError:
            continue
        by.setdefault(trial, {}).setdefault(epochs, {})[seed] = value
    out = {}
    for trial, lengths in by.items():
        finished = [e for e, runs in lengths.items() if any(r.get("val_accuracy") is not None for r in runs.values())]
        epochs = max(finished) if finished else max(lengths)
        runs = lengths[epochs]
        done = sorted(s for s, r in runs.items() if r.get("val_accuracy") is not None)
        out[trial] = Refined(epochs=epochs, accuracies=tuple(float(runs[s]["val_accuracy"]) for s in done),
                             seeds=tuple(done), failed=len(runs) - len(done))
    return out
