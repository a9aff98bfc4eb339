"""How a latency table turns the sum of its parts into a network's latency, and how far it can be trusted.

A part timed alone costs a little more or less than inside a network (a runtime's per-call cost, layout
conversions at its edges), so a table fits a :class:`Calibration` on whole networks measured once. Which
form is fitted is chosen by cross-validation on those networks, simplest first: a form with more terms is
kept only when it predicts the networks left out of each fit clearly better. The old choice (leave-one-out
over seven forms, per-family terms among them) changed form from run to run on the same machine (a scale
of 0.59 in one run, 1.13 in the next): with noisy measurements, extra terms fit the noise.

A table then measures networks it was neither fitted nor chosen on (held out) and stores its own error
(:class:`Assessment`): the share within +-10%, median and worst relative error, and the noise it saw (the
same networks measured twice, and how often the timer found the machine busy).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from igcnas.errors import BadInput

__all__ = ["Calibration", "FORMS", "fit_calibration", "choose_calibration", "predict_from_features", "Assessment",
           "assess", "check_min_share", "require_share", "GOAL_SHARE", "BUSY_REPEAT", "BUSY_CONTENDED"]

GOAL_SHARE = 0.90  # held-out networks within +-10%: what a table must reach to be called good
BUSY_REPEAT = 0.05  # median disagreement of a network measured twice above which a build warns
BUSY_CONTENDED = 0.20  # share of figures the timer could not take in a fast phase above which a build warns


@dataclass(frozen=True)
class Calibration:
    """``scale * parts_ms + per_part * (parts - 1) + offset``: a network's latency from its parts' sum.

    ``per_part`` is what a part pays alone and not inside a network (or the reverse). ``name`` is the form
    (:data:`FORMS`) the terms were fitted in.
    """

    name: str = "sum"
    scale: float = 1.0
    per_part: float = 0.0
    offset: float = 0.0

    def apply(self, row: dict[str, Any]) -> float:
        """The network's latency from its features (``parts_ms``, ``parts``)."""
        return self.scale * row["parts_ms"] + self.per_part * (row["parts"] - 1) + self.offset

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The forms tried, simplest first, and the terms each fits (a term not fitted keeps its neutral value).
FORMS: dict[str, tuple[str, ...]] = {
    "sum": (), "offset": ("offset",), "scale": ("scale",), "affine": ("scale", "offset"),
    "per_part": ("per_part", "offset"), "full": ("scale", "per_part", "offset"),
}
_COLUMNS: dict[str, Callable[[dict[str, Any]], float]] = {
    "scale": lambda r: r["parts_ms"], "per_part": lambda r: r["parts"] - 1, "offset": lambda r: 1.0,
}


def predict_from_features(calibration: Calibration, row: dict[str, Any]) -> float:
    """The prediction: the calibrated sum, never below a quarter of the parts' sum (a fitted line can go
    below zero far from the networks it was fitted on; a network never costs less than a small share of its
    parts timed alone)."""
    return max(calibration.apply(row), 0.25 * row["parts_ms"])


def fit_calibration(rows: Sequence[dict[str, Any]], name: str) -> Calibration:
    """Least squares of relative error (each network weighted by 1 / its latency) in form ``name``."""
    terms = FORMS[name]
    if not terms or not rows:
        return Calibration()
    design = np.array([[_COLUMNS[t](r) for t in terms] for r in rows], dtype=float)
    target = np.array([r["measured_ms"] for r in rows], dtype=float)
    fixed = np.zeros(len(rows)) if "scale" in terms else np.array([r["parts_ms"] for r in rows])  # scale 1
    weights = 1.0 / target  # the goal is a share within +-10%: relative errors matter
    solved, *_ = np.linalg.lstsq(design * weights[:, None], (target - fixed) * weights, rcond=None)
    return Calibration(name=name, **{t: float(v) for t, v in zip(terms, solved)})


def _cv_error(rows: Sequence[dict[str, Any]], name: str, *, folds: int, repeats: int, seed: int) -> float:
    """Mean absolute relative error on networks left out of each fit (repeated k-fold)."""
    rng = random.Random(seed)
    errors = []
    for _ in range(repeats):
        order = list(range(len(rows)))
        rng.shuffle(order)
        for k in range(folds):
            out = set(order[k::folds])
            fit = fit_calibration([r for i, r in enumerate(rows) if i not in out], name)
            errors += [abs(predict_from_features(fit, rows[i]) / rows[i]["measured_ms"] - 1.0) for i in out]
    return float(np.mean(errors)) if errors else 0.0


def choose_calibration(rows: Sequence[dict[str, Any]], names: Iterable[str] = tuple(FORMS), *,
                       margin: float = 0.10, seed: int = 0) -> Calibration:
    """The simplest form whose cross-validated error is within ``margin`` (relative) of the best form's.

    Forms need three networks more than they have terms to be tried at all; with fewer networks than that
    for every form, the plain sum. Preferring the simplest near-best form is what keeps the choice from
    following the noise of one set of measurements.
    """
    rows = list(rows)
    candidates = [n for n in names if len(rows) >= len(FORMS[n]) + 3]
    if not candidates:
        return Calibration()
    folds = min(5, len(rows))
    errors = {n: _cv_error(rows, n, folds=folds, repeats=4, seed=seed) for n in candidates}
    best = min(errors.values())
    name = next(n for n in candidates if errors[n] <= best * (1.0 + margin) + 1e-12)
    return fit_calibration(rows, name)


@dataclass(frozen=True)
class Assessment:
    """A table's own error on held-out networks, and the noise its build saw."""

    networks: int = 0
    share_within_10pct: float = float("nan")
    median_rel_error: float = float("nan")
    worst_rel_error: float = float("nan")
    repeat_median: float = float("nan")  # |first / second - 1| of the held-out networks measured twice
    repeat_worst: float = float("nan")
    contended_share: float = float("nan")  # share of the build's figures taken without a fast phase

    @property
    def below_goal(self) -> bool:
        return self.networks > 0 and not self.share_within_10pct >= GOAL_SHARE

    @property
    def busy(self) -> bool:
        return self.repeat_median > BUSY_REPEAT or self.contended_share > BUSY_CONTENDED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """One line of what the table's error is, and one more for each thing that is wrong with it."""
        if not self.networks:
            return ["held-out error: not measured (a table from an older igc-nas, or --holdout 0)"]
        out = [f"held-out error: {self.share_within_10pct:.0%} of {self.networks} networks within +-10% "
               f"(median {self.median_rel_error:.1%}, worst {self.worst_rel_error:.1%}); noise: measured twice "
               f"{self.repeat_median:.1%} apart (median, worst {self.repeat_worst:.1%}), "
               f"{self.contended_share:.0%} of figures on a busy machine"]
        if self.below_goal:
            # One decimal: 89.6% shown as "90%" beside a goal of 90% reads as no shortfall at all.
            out.append(f"this table is below its goal: {self.share_within_10pct:.1%} of held-out networks within "
                       f"+-10% (goal {GOAL_SHARE:.0%}); its predictions may miss a latency budget")
        if self.busy:
            out.append(f"this table was built on a busy machine: networks measured twice differ by "
                       f"{self.repeat_median:.1%} (median; warn above {BUSY_REPEAT:.0%}) and {self.contended_share:.0%}"
                       f" of figures found no quiet moment (warn above {BUSY_CONTENDED:.0%}); rebuild it when idle")
        return out


def check_min_share(value: float | None, *, has_table: bool, flag: str = "--latency-table-min-share") -> None:
    """BadInput unless ``value`` is None or a share in (0, 1] given with a latency table."""
    if value is None:
        return
    if not has_table:
        raise BadInput(f"{flag} needs --latency-table PATH")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise BadInput(f"{flag} must be a share between 0 and 1 (e.g. 0.9), got {value!r}")


def require_share(assessment: Assessment, min_share: float | None, *, source: str) -> None:
    """BadInput when a table's own held-out share is below ``min_share`` (or was never measured)."""
    if min_share is None:
        return
    if not assessment.networks:
        raise BadInput(f"{source} states no held-out error (built by an older igc-nas or with --holdout 0), so "
                       f"it cannot be shown to reach {min_share:.0%}: rebuild it with igc-nas latency-table")
    if assessment.share_within_10pct < min_share:
        raise BadInput(f"{source} predicts {assessment.share_within_10pct:.0%} of its held-out networks within "
                       f"+-10%, below the {min_share:.0%} asked for: rebuild it on an idle machine")


def assess(calibration: Calibration, rows: Sequence[dict[str, Any]], *, contended_share: float) -> Assessment:
    """The held-out error of ``calibration`` on ``rows`` (features, ``measured_ms`` and ``repeat_ms``)."""
    if not rows:
        return Assessment(contended_share=contended_share)
    errors = [abs(predict_from_features(calibration, r) / r["measured_ms"] - 1.0) for r in rows]
    repeats = [abs(r["measured_ms"] / r["repeat_ms"] - 1.0) for r in rows if r.get("repeat_ms")]
    return Assessment(networks=len(rows), share_within_10pct=sum(e <= 0.10 for e in errors) / len(errors),
                      median_rel_error=statistics.median(errors), worst_rel_error=max(errors),
                      repeat_median=statistics.median(repeats) if repeats else float("nan"),
                      repeat_worst=max(repeats) if repeats else float("nan"), contended_share=contended_share)
