"""Dominance, non-dominated fronts and crowding: the ranking both the early-stopping rule and the sampler use.

Points are in minimisation form (accuracy negated). ``dominates`` is the one place that says what
"dominates" means here: no worse in every objective and better in at least one.
"""

from __future__ import annotations

from typing import Sequence

import math

import numpy as np

__all__ = ["dominates", "nondominated_mask", "dominance_matrix", "nondominated_ranks", "crowding_distance",
           "constrained_ranks", "hypervolume_gains"]


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[i, j]`` is True when ``a[i]`` dominates ``b[j]`` (minimisation: no worse in every objective, better in
    at least one). Built an objective at a time, so large sets need no (n, m, objectives) temporaries."""
    no_worse = np.ones((len(a), len(b)), dtype=bool)
    better = np.zeros((len(a), len(b)), dtype=bool)
    for k in range(a.shape[1] if a.ndim == 2 else 0):
        column_a, column_b = a[:, k, None], b[None, :, k]
        no_worse &= column_a <= column_b
        better |= column_a < column_b
    return no_worse & better


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """True for each row no other row dominates (equal rows are all kept), in memory linear in the rows.

    Rows are visited in lexicographic order: a later row is lexicographically no better, so it can never
    dominate an earlier one, and each row is compared only with the front found so far (a whole study's
    ``n x n`` matrix would take gigabytes at tens of thousands of trials).
    """
    mask = np.zeros(len(points), dtype=bool)
    front: list[int] = []
    for i in np.lexsort(points.T[::-1]) if len(points) else []:
        if not front or not dominates(points[front], points[i][None, :]).any():
            front.append(int(i))
    mask[front] = True
    return mask


def dominance_matrix(points: np.ndarray) -> np.ndarray:
    """``[i, j]`` is True when point i dominates point j: :func:`dominates` within one set."""
    return dominates(points, points)


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of a minimisation problem."""
    n = len(points)
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    dominates = dominance_matrix(points)
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        dominated = (dominates[remaining][:, remaining]).any(axis=0)
        current = np.flatnonzero(remaining)[~dominated]
        ranks[current] = front
        remaining[current] = False
        front += 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within one front (boundary points are infinitely far)."""
    n, m = points.shape if points.ndim == 2 else (len(points), 0)
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        span = points[order[-1], k] - points[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span <= 0:
            continue
        distance[order[1:-1]] += (points[order[2:], k] - points[order[:-2], k]) / span
    return distance


def constrained_ranks(values: Sequence[Sequence[float]], violations: Sequence[float]) -> list[tuple[int, float]]:
    """(rank, crowding) per point: feasible points (violation <= 0) by front, then infeasible ones by violation.

    This is NSGA-II's constrained domination: any feasible point beats any infeasible one, and among
    infeasible points the smaller total violation wins.
    """
    scores: list[tuple[int, float]] = [(0, 0.0)] * len(values)
    feasible = [i for i, v in enumerate(violations) if v <= 0]
    infeasible = sorted((i for i, v in enumerate(violations) if v > 0), key=lambda i: violations[i])
    fronts = 0
    if feasible:
        points = np.array([values[i] for i in feasible], dtype=float)
        ranks = nondominated_ranks(points)
        fronts = int(ranks.max()) + 1
        for r in range(fronts):
            in_front = np.flatnonzero(ranks == r)
            for j, c in zip(in_front, crowding_distance(points[in_front])):
                scores[feasible[j]] = (r, float(c))
    for k, i in enumerate(infeasible):
        scores[i] = (fronts + k, 0.0)
    return scores


def hypervolume_gains(front: Sequence[Sequence[float]], candidates: Sequence[Sequence[float]]) -> list[float]:
    """How much hypervolume each candidate (-accuracy, params, MACs) would add to ``front`` alone.

    Costs are compared on a log scale (networks span orders of magnitude); the reference point lies just
    beyond the worst of all points, so every candidate can add something.
    """
    from igcnas.nas.optuna_adapter import compute_hypervolume

    def point(values: Sequence[float]) -> list[float]:
        return [values[0], math.log(max(values[1], 1.0)), math.log(max(values[2], 1.0))]

    base_points = [point(v) for v in front]
    new_points = [point(v) for v in candidates]
    reference = np.array(base_points + new_points, dtype=float).max(axis=0) + np.array([0.01, 0.1, 0.1])
    base = float(compute_hypervolume(np.array(base_points), reference)) if base_points else 0.0
    return [float(compute_hypervolume(np.array(base_points + [p]), reference)) - base for p in new_points]
