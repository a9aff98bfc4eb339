"""Fidelity: which short-training signal predicts long-training accuracy, what the rung rules stop, what users deploy.

Reads the 4-epoch table (``bench/tables/igc_digits.jsonl.gz``, for configs and costs) and its long-training
ground truth (``bench/tables/igc_digits_long.jsonl.gz``, made by ``bench/make_long_table.py``; its partial
file while that is unfinished, said so in the output). The ground truth of a network is its long-training
validation accuracy, averaged over the table's seeds.

1. ``rank_correlation``: for each signal the search could rank by -- the accuracy after each epoch of the
   search's 4-epoch schedule, as measured (``acc@e``) and with BatchNorm statistics re-estimated first
   (``acc@e+bn``), and minus the sum of training losses up to an epoch (``-loss@e``) -- Spearman, Kendall and
   the overlap of the top 10% with the ground truth's top 10%, per training seed (one seed is what a
   search sees) then averaged over seeds, overall and per family. ``long, seed vs seed`` (one seed's long
   accuracy against the other's) measures seed noise, and bounds how well any signal can do.
2. ``front_stopped_share``: of the long-training Pareto front (ground truth, params, MACs), the share that
   a rung at epoch ``e`` would stop, by the search's own rule (``should_promote``, eta 3) against every
   other network of the table trained with the same seed, per signal (as measured, and with BatchNorm
   re-estimated), overall and per family that has front members; once for the front of the seed-mean
   accuracy (a handful of networks), once weighted by each network's chance of being on the front over
   the ground truth's seed noise (``noise_aware_front``).
3. ``median_pick_regret`` (only on the complete ground truth: a replay may ask for any network): replays of
   the search (``bench/tabular.py``; the evolution sampler, 30 seeds, the sampler comparison's budget)
   under its defaults, each of their parts switched off with all else equal, and the old defaults (with
   each setting, also the fraction of the budget at which the
   sampler's median hypervolume, its trials scored by ground truth, reaches random search's final one); for 5 params budgets (quantiles 0.1-0.9 of the table) the best
   ground-truth accuracy the table has within the budget minus the ground-truth accuracy of what
   ``pick`` would choose from the run's completed trials: without refine (the search's accuracy), and
   with a simulated ``refine`` of the top ``--refine-top`` front trials within the budget (their long
   accuracy with one training seed, drawn per run: what a refine with one seed would measure).
4. ``targets``: each setting against issue 21's targets (see :func:`targets`).

The replays are simulated from the tables with fixed seeds, so a rerun prints the same figures; their
spread is the bootstrap interval over the 30 replay seeds, printed beside each median.

    python bench/fidelity.py [--json PATH] [--seeds 30] [--refine-top 5] [--long PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from igc_table import Row, load_table  # noqa: E402
from igcnas.nas.early_stopping import RungEntry, RungSchedule, domination_counts, promotion_threshold  # noqa: E402
from make_long_table import LONG_PARTIAL, LONG_PATH, SEARCH_EPOCHS, read_long  # noqa: E402

BUDGET_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
REACH_BOOTSTRAP = 300  # resamples of the replays for the interval of the budget fraction (each redraws a curve)
ETA = 3
TOP_SHARE = 0.10
FRONT_RESAMPLES = 200  # fronts drawn over the ground truth's seed noise (noise_aware_front)
FRONT_MEMBERS_MIN = 0.5  # a family "has front members" when it holds at least this many, expected over the draws
OLD_DEFAULTS = "old defaults (rung 2, as measured)"


def _settings() -> dict[str, tuple[RungSchedule | None, bool]]:
    """The search settings the replays compare: (schedule, whether rung and final accuracies are BatchNorm
    re-estimated). Today's defaults first, then each of their parts switched off with all else equal, then
    the old defaults. The defaults are read from ``SearchOptions``, their one home."""
    from igcnas.nas.options import SearchOptions

    d = SearchOptions.__dataclass_fields__
    rung, bn, eta = d["min_epochs"].default, d["recalibrate_bn"].default, d["eta"].default

    def words(re_estimated: bool) -> str:
        return "BatchNorm re-estimated" if re_estimated else "as measured"

    def schedule(first: int) -> RungSchedule:
        return RungSchedule(max_epochs=SEARCH_EPOCHS, min_epochs=first, eta=eta)

    other = 2 if rung != 2 else 3
    out: dict[str, tuple[RungSchedule | None, bool]] = {
        f"defaults (rung {rung}, {words(bn)})": (schedule(rung), bn),
        f"rung {rung}, {words(not bn)}": (schedule(rung), not bn),
        f"rung {other}, {words(bn)}": (schedule(other), bn),
        f"no early stopping, {words(bn)}": (None, bn),
        f"no early stopping, {words(not bn)}": (None, not bn)}
    if (schedule(2), False) not in out.values():
        out[OLD_DEFAULTS] = (schedule(2), False)
    return out


SETTINGS = _settings()


@dataclass(frozen=True)
class Net:
    """One network with its ground truth and, per seed, its long-table record."""

    arch_id: str
    family: str
    params: int
    macs: int
    seeds: dict[int, dict[str, Any]]

    @property
    def truth(self) -> float:
        return statistics.fmean(s["long_curve"][-1] for s in self.seeds.values())


def _signals() -> dict[str, Callable[[dict[str, Any]], float]]:
    out: dict[str, Callable[[dict[str, Any]], float]] = {}
    for e in range(1, SEARCH_EPOCHS + 1):
        out[f"acc@{e}"] = lambda s, e=e: s["search_curve"][e - 1]
        out[f"acc@{e}+bn"] = lambda s, e=e: s["search_recalibrated"][e - 1]
    for e in (1, 2, SEARCH_EPOCHS):
        out[f"-loss@{e}"] = lambda s, e=e: -sum(s["search_loss"][:e])
    return out


SIGNALS = _signals()


def load_nets(long_path: Path | None) -> tuple[list[Net], bool, Path]:
    """The networks with a long-table row for every one of their seeds; whether that is the whole table."""
    path = long_path or (LONG_PATH if LONG_PATH.exists() else LONG_PARTIAL)
    rows = read_long(path)
    table = load_table()
    nets = []
    for aid, row in rows.items():
        seeds = {int(k): v for k, v in row["seeds"].items()}
        if aid in table and seeds:
            nets.append(Net(aid, row["family"], int(row["params"]), int(row["macs"]), seeds))
    return nets, len(nets) == len(table), path


def _top_overlap(x: np.ndarray, y: np.ndarray) -> float:
    k = max(1, int(round(TOP_SHARE * len(x))))
    return len(set(np.argsort(-x)[:k]) & set(np.argsort(-y)[:k])) / k


def _rank_stats(nets: list[Net], signal: Callable[[dict[str, Any]], float], seeds: list[int],
                truth: Callable[[Net], float] = lambda n: n.truth) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    y = np.array([truth(n) for n in nets])
    per_seed = []
    for s in seeds:
        x = np.array([signal(n.seeds[s]) for n in nets])
        if len(nets) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        per_seed.append((float(spearmanr(x, y).statistic), float(kendalltau(x, y).statistic), _top_overlap(x, y)))
    if not per_seed:
        return {"spearman": float("nan"), "kendall": float("nan"), "top10_overlap": float("nan"), "n": len(nets)}
    sp, kt, top = (statistics.fmean(v) for v in zip(*per_seed))
    return {"spearman": sp, "kendall": kt, "top10_overlap": top, "n": len(nets)}


def rank_correlation(nets: list[Net], seeds: list[int]) -> dict[str, Any]:
    families = sorted({n.family for n in nets})
    out: dict[str, Any] = {}
    for name, signal in SIGNALS.items():
        out[name] = {"overall": _rank_stats(nets, signal, seeds),
                     "per_family": {f: _rank_stats([n for n in nets if n.family == f], signal, seeds)
                                    for f in families}}
    # The ceiling seed noise allows: one seed's long accuracy ranking the other seed's.
    if len(seeds) > 1:
        def other(group: list[Net]) -> dict[str, float]:
            return _rank_stats(group, lambda s: s["long_curve"][-1], seeds[:1],
                               truth=lambda n: n.seeds[seeds[1]]["long_curve"][-1])

        out[SEED_AGREEMENT] = {"overall": other(nets),
                               "per_family": {f: other([n for n in nets if n.family == f]) for f in families}}
    return out


SEED_AGREEMENT = "long, seed vs seed"


def ceiling(r: float, k: int) -> float:
    """About how far any signal's correlation with the mean of ``k`` seeds can go, when one seed's long
    accuracy agrees with another's by ``r`` (Spearman-Brown reliability of the mean, square-rooted)."""
    return float(np.sqrt(k * r / (1 + (k - 1) * r))) if r > 0 else float("nan")


def long_front(nets: list[Net]) -> list[int]:
    counts = domination_counts([RungEntry(n.truth, float(n.params), float(n.macs)) for n in nets])
    return [i for i, c in enumerate(counts) if c == 0]


def _stops(nets: list[Net], seeds: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per rung signal and seed: which networks the search's rule (``should_promote``, eta 3) stops at that
    rung against every other network of the table trained with the same seed."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for e in range(1, SEARCH_EPOCHS):
        for name in (f"acc@{e}", f"acc@{e}+bn"):
            out[name] = {}
            for s in seeds:
                entries = [RungEntry(SIGNALS[name](n.seeds[s]), float(n.params), float(n.macs)) for n in nets]
                # should_promote's rule, each network against all the others: that population is the whole
                # table every time, so one set of domination counts serves every network.
                counts = domination_counts(entries)
                out[name][s] = counts > promotion_threshold(counts, ETA)
    return out


def noise_aware_front(nets: list[Net], seeds: list[int], draws: int = FRONT_RESAMPLES,
                      seed: int = 0) -> np.ndarray:
    """Each network's chance of being on the long-training front, over the ground truth's seed noise.

    The front of the seed-mean accuracy has a handful of members (5 on digits), each as likely there by the
    luck of two seeds as by merit, so a share of it stopped moves by 10 points per member. Each draw gives
    every network the long accuracy of one of its seeds, chosen at random, and takes that front; a
    network's weight is the share of draws it is on. A stopped share weighted by it says what a rung stops
    of the front as far as the ground truth can tell the front.
    """
    rng = np.random.default_rng(seed)
    long_acc = np.array([[n.seeds[s]["long_curve"][-1] for s in seeds] for n in nets])
    costs = [(float(n.params), float(n.macs)) for n in nets]
    member = np.zeros(len(nets))
    for _ in range(draws):
        truth = long_acc[np.arange(len(nets)), rng.integers(0, len(seeds), len(nets))]
        member += domination_counts([RungEntry(a, p, m) for a, (p, m) in zip(truth, costs)]) == 0
    return member / draws


def front_stopped_share(nets: list[Net], seeds: list[int]) -> dict[str, Any]:
    """Per rung epoch and signal: the share of the long-training front the rung rule stops (vs the table).

    Twice: of the front of the seed-mean accuracy (``strict``), and weighted by each network's chance of
    being on the front over the ground truth's seed noise (``noise_aware``; a family counts as having front
    members when it holds at least ``FRONT_MEMBERS_MIN`` of them, expected)."""
    front = long_front(nets)
    families = sorted({nets[i].family for i in front})
    weight = noise_aware_front(nets, seeds)
    expected = {f: float(sum(w for w, n in zip(weight, nets) if n.family == f)) for f in sorted({n.family for n in nets})}
    expected = {f: round(v, 2) for f, v in expected.items() if v > 0}
    out: dict[str, Any] = {"front_size": len(front),
                           "front_by_family": {f: sum(nets[i].family == f for i in front) for f in families},
                           "noise_aware_front": {"expected_size": round(float(weight.sum()), 2),
                                                 "networks_ever_on_it": int((weight > 0).sum()),
                                                 "draws": FRONT_RESAMPLES, "expected_by_family": expected}}
    stops = _stops(nets, seeds)
    for name, per_seed in stops.items():
        strict: dict[str, list[bool]] = {f: [] for f in families}
        for s in seeds:
            for i in front:
                strict[nets[i].family].append(bool(per_seed[s][i]))
        every = [v for values in strict.values() for v in values]
        stopped = np.mean([per_seed[s] for s in seeds], axis=0)  # per network, the share of seeds stopped
        aware = {f: float(np.sum(weight * stopped * is_f) / np.sum(weight * is_f))
                 for f in expected if expected[f] >= FRONT_MEMBERS_MIN
                 for is_f in [np.array([n.family == f for n in nets], dtype=float)]}
        out[f"rung {name[4]}, {name}"] = {
            "overall": float(np.mean(every)) if every else float("nan"),
            "per_family": {f: float(np.mean(v)) for f, v in strict.items() if v},
            "noise_aware": float(np.sum(weight * stopped) / weight.sum()) if weight.sum() else float("nan"),
            "noise_aware_per_family": aware}
    return out


def noise_floor(nets: list[Net], seeds: list[int]) -> dict[str, float]:
    """Seed-to-seed spread of the long-training accuracy (what a regret below it cannot be told from)."""
    if len(seeds) < 2:
        return {}
    gaps = [abs(n.seeds[seeds[0]]["long_curve"][-1] - n.seeds[seeds[1]]["long_curve"][-1]) for n in nets]
    ordered = sorted(gaps)
    return {"median_abs_seed_gap": float(statistics.median(gaps)), "mean_abs_seed_gap": float(statistics.fmean(gaps)),
            "p90_abs_seed_gap": float(ordered[int(0.9 * (len(ordered) - 1))])}


# --------------------------------------------------------------------------------------- pick regret


def _table_with(table: dict[str, Row], nets: dict[str, Net], recalibrated: bool) -> dict[str, Row]:
    """The 4-epoch table with each seed's curve as measured, or BatchNorm re-estimated (from the long table)."""
    from dataclasses import replace

    key = "search_recalibrated" if recalibrated else "search_curve"
    return {a: replace(r, curves={s: list(nets[a].seeds[s][key]) for s in r.curves}) for a, r in table.items()}


def _choose(rows: list[tuple[float, int, int, str]]) -> str:
    """pick's rule on (accuracy, params, MACs, arch_id): most accurate, then fewer MACs, then fewer params."""
    return min(rows, key=lambda r: (-r[0], r[2], r[1], r[3]))[3]


def _front(rows: list[tuple[float, int, int, str]]) -> list[tuple[float, int, int, str]]:
    counts = domination_counts([RungEntry(a, float(p), float(m)) for a, p, m, _ in rows])
    return [r for r, c in zip(rows, counts) if c == 0]


def pick_regret(run_trials: list[tuple[str, float]], nets: dict[str, Net], budgets: list[float], top: int,
                refine_seed: int) -> dict[str, dict[str, float]]:
    """Regret per budget without and with a simulated refine of the ``top`` front trials within the budget."""
    best: dict[str, float] = {}
    for a, acc in run_trials:  # a network trained twice in a run keeps its best search figure
        best[a] = max(acc, best.get(a, -1.0))
    out: dict[str, dict[str, float]] = {"no_refine": {}, "refine": {}}
    for b in budgets:
        label = f"{b:.0f}"
        inside = [(acc, nets[a].params, nets[a].macs, a) for a, acc in best.items() if nets[a].params <= b]
        ceiling = max(n.truth for n in nets.values() if n.params <= b)
        if not inside:
            out["no_refine"][label] = out["refine"][label] = ceiling  # nothing to pick: all of it is lost
            continue
        front = _front(inside)
        out["no_refine"][label] = ceiling - nets[_choose(front)].truth
        # As igc-nas refine then pick do: the finalists' accuracy becomes their refined one, every other trial
        # keeps its search figure, and pick takes the most accurate of the front recomputed over all of them.
        finalists = {r[3] for r in sorted(front, key=lambda r: (-r[0], r[2], r[1], r[3]))[:top]}
        mixed = [(nets[a].seeds[refine_seed]["long_curve"][-1] if a in finalists else acc, p, m, a)
                 for acc, p, m, a in inside]
        out["refine"][label] = ceiling - nets[_choose(_front(mixed))].truth
    return out


def long_fidelity_runs(runs: list[Any], nets: dict[str, Net], reference: Any) -> list[Any]:
    """Each replay's hypervolume over simulated time with its completed trials scored by ground truth.

    Normalised by the hypervolume of the table's long-training front, as the search-fidelity curves are by
    the 4-epoch front; the same ``Run`` shape, so the sampler comparison's curve helpers apply.
    """
    from tabular import FrontTracker, Run

    whole = FrontTracker()
    for n in nets.values():
        whole.add(reference.point(n.truth, n.params, n.macs))
    out = []
    for run in runs:
        scored = Run(budget_s=run.budget_s, n_workers=run.n_workers)
        tracker = FrontTracker()
        for t in sorted((t for t in run.trials if t.status == "complete"), key=lambda t: t.end_s):
            n = nets[t.arch_id]
            scored.times.append(t.end_s)
            scored.hv.append(tracker.add(reference.point(n.truth, n.params, n.macs)) / whole.value)
        out.append(scored)
    return out


def regret_study(nets: list[Net], n_seeds: int, top: int, budget_networks: float, workers: int) -> dict[str, Any]:
    """Replays of the default search per setting; median regret over seeds per budget, with and without refine."""
    import optuna

    from sampler_comparison import Context, make_arm
    from tabular import replay

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = load_table()
    by_id = {n.arch_id: n for n in nets}
    params = sorted(n.params for n in nets)
    budgets = [float(params[int(q * (len(params) - 1))]) for q in BUDGET_QUANTILES]
    mean_s = float(np.mean([r.mean_seconds() for r in table.values()]))
    budget_s = mean_s * budget_networks / workers
    hint = int(round(budget_s * workers / mean_s))
    out: dict[str, Any] = {"budgets_params": budgets, "seeds": n_seeds, "refine_top": top, "budget_s": budget_s}
    from sampler_comparison import BOOTSTRAP_SEED, bootstrap_median, fraction_to_reach


    def replays(arm: str, variant: dict[str, Row], ctx: Any, schedule: RungSchedule | None) -> list[Any]:
        runs = []
        for seed in range(n_seeds):
            sampler, suggest, enqueue = make_arm(arm, seed, ctx)
            runs.append(replay(table=variant, spec=ctx.spec, sampler=sampler, budget_s=budget_s, n_workers=workers,
                               schedule=schedule, seed=seed, seeds_to_enqueue=enqueue, suggest=suggest,
                               reference=ctx.reference, true_front_hv=ctx.true_hv, arch_cache=ctx.arch_cache))
        return runs

    for label, (schedule, recalibrated) in SETTINGS.items():
        # Each setting's own bootstrap stream, so its intervals do not depend on which settings ran before it.
        rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(label.encode())])
        variant = _table_with(table, by_id, recalibrated)
        ctx = Context(variant, hint)
        runs = replays("evolution", variant, ctx, schedule)
        per_seed: list[dict[str, dict[str, float]]] = []
        for seed, run in enumerate(runs):
            done = [(t.arch_id, t.accuracy) for t in run.trials if t.status == "complete"]
            refine_seed = random.Random(seed).choice(sorted(next(iter(by_id.values())).seeds))
            per_seed.append(pick_regret(done, by_id, budgets, top, refine_seed))
        # Scored at long fidelity: when does the default sampler's median reach random search's final median?
        random_runs = long_fidelity_runs(replays("random", variant, ctx, schedule), by_id, ctx.reference)
        target = float(np.median([r.final_hv for r in random_runs]))
        scored = long_fidelity_runs(runs, by_id, ctx.reference)
        reach = fraction_to_reach(scored, budget_s, target)
        draws = [fraction_to_reach([scored[i] for i in rng.integers(0, len(scored), len(scored))], budget_s, target)
                 for _ in range(REACH_BOOTSTRAP)]
        reach_ci = [float(np.quantile([2.0 if d is None else d for d in draws], q)) for q in (0.025, 0.975)]
        summary: dict[str, Any] = {}
        overall_by_mode = {}
        for mode in ("no_refine", "refine"):
            per_budget = {f"{b:.0f}": float(np.median([r[mode][f"{b:.0f}"] for r in per_seed])) for b in budgets}
            overall_by_mode[mode] = np.array([np.mean(list(r[mode].values())) for r in per_seed])
            median, lo, hi = bootstrap_median(overall_by_mode[mode], rng)
            summary[mode] = {"per_budget": per_budget, "overall": median, "overall_ci95": [lo, hi]}
        # Paired by replay seed: the same search, picked with and without refine.
        paired = overall_by_mode["refine"] - overall_by_mode["no_refine"]
        median, lo, hi = bootstrap_median(paired, rng)
        summary["refine_minus_no_refine"] = {"median": median, "ci95": [lo, hi]}
        summary["long_fidelity_fraction_to_reach_random"] = reach
        summary["long_fidelity_fraction_ci95"] = reach_ci  # 2.0 stands for "never within the budget"
        out[label] = summary
        nr, rf, d = summary["no_refine"], summary["refine"], summary["refine_minus_no_refine"]
        print(f"  {label}: median pick regret without refine {nr['overall']:.4f} [{nr['overall_ci95'][0]:.4f}, "
              f"{nr['overall_ci95'][1]:.4f}], with refine {rf['overall']:.4f} [{rf['overall_ci95'][0]:.4f}, "
              f"{rf['overall_ci95'][1]:.4f}], paired difference {d['median']:+.4f} [{d['ci95'][0]:+.4f}, "
              f"{d['ci95'][1]:+.4f}]; at long fidelity the sampler reaches random search's final hypervolume at "
              f"{'never' if reach is None else f'{reach:.2f}'} [{reach_ci[0]:.2f}, {reach_ci[1]:.2f}] of the budget",
              flush=True)
    return out


def targets(regret: dict[str, Any], stopped: dict[str, Any], floor: dict[str, float]) -> dict[str, Any]:
    """Each setting against issue 21's targets, printed and returned: pick regret with refine at most the
    noise floor plus half a point and no worse than without (the median paired difference at most zero); its
    rung, if any, stopping at most 10% of the noise-aware front in every family with front members; the
    sampler reaching random search's final hypervolume, scored at long fidelity, within half the budget."""
    limit = floor["median_abs_seed_gap"] + 0.005
    out: dict[str, Any] = {}
    print(f"targets (regret with refine <= noise floor + 0.005 = {limit:.4f} and <= without; rung stops <= 10% of "
          "the noise-aware front per family; reaches random's hypervolume within 0.5 of the budget):")
    for label, (schedule, recalibrated) in SETTINGS.items():
        r = regret[label]
        rung_key = (f"rung {schedule.min_epochs}, acc@{schedule.min_epochs}{'+bn' if recalibrated else ''}"
                    if schedule is not None and schedule.rungs else None)
        worst_family = (max(stopped[rung_key]["noise_aware_per_family"].values(), default=0.0)
                        if rung_key else 0.0)
        reach = r["long_fidelity_fraction_to_reach_random"]
        checks = {"regret_with_refine": r["refine"]["overall"] <= limit,
                  "refine_no_worse": r["refine_minus_no_refine"]["median"] <= 0.0,
                  "rung_front_share": worst_family <= 0.10,
                  "reach_half_budget": reach is not None and reach <= 0.5}
        out[label] = {**checks, "worst_family_stopped": worst_family, "all": all(checks.values())}
        print(f"  {label}: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items())
              + f" (rung stops at most {worst_family:.1%} of a family's front)")
    return out


# -------------------------------------------------------------------------------------------- report


def _print_correlations(result: dict[str, Any]) -> None:
    families = sorted(next(iter(result.values()))["per_family"])
    print(f"{'signal':<18}{'Spearman':>9}{'Kendall':>9}{'top10%':>8}   Spearman per family: "
          + " ".join(f"{f[:10]:>10}" for f in families))
    for name, entry in result.items():
        o = entry["overall"]
        fam = " ".join(f"{entry['per_family'][f]['spearman']:>10.3f}" for f in families)
        print(f"{name:<18}{o['spearman']:>9.3f}{o['kendall']:>9.3f}{o['top10_overlap']:>8.2f}   "
              f"{'':<21}{fam}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--long", type=Path, help="ground-truth file (default: the committed one, else the partial)")
    parser.add_argument("--seeds", type=int, default=30, help="replays per setting for the pick regret (default 30)")
    parser.add_argument("--refine-top", type=int, default=5, help="finalists a simulated refine retrains (default 5)")
    parser.add_argument("--budget-networks", type=float, default=80.0,
                        help="replay budget: full trainings on the workers at the table's mean time (default 80)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--no-replays", action="store_true", help="skip the pick regret (the replays)")
    args = parser.parse_args()
    started = time.time()
    nets, complete, path = load_nets(args.long)
    if len(nets) < 3:
        raise SystemExit(f"{path}: {len(nets)} networks with a long-training record; generate them first "
                         "(python bench/make_long_table.py)")
    seeds = sorted(set.intersection(*(set(n.seeds) for n in nets)))
    epochs = {len(n.seeds[seeds[0]]["long_curve"]) for n in nets}
    print(f"ground truth: {path.name}, {len(nets)} networks" + ("" if complete else " (PARTIAL: the table is not "
          "finished; figures cover these networks only)") + f", seeds {seeds}, long training {sorted(epochs)} epochs")
    floor = noise_floor(nets, seeds)
    if floor:
        print(f"noise floor (|seed {seeds[0]} - seed {seeds[1]}| of the long accuracy): median "
              f"{floor['median_abs_seed_gap']:.4f}, mean {floor['mean_abs_seed_gap']:.4f}, "
              f"90th percentile {floor['p90_abs_seed_gap']:.4f}")
    correlations = rank_correlation(nets, seeds)
    _print_correlations(correlations)
    if SEED_AGREEMENT in correlations:
        r = correlations[SEED_AGREEMENT]["overall"]["spearman"]
        correlations[SEED_AGREEMENT]["ceiling_vs_mean"] = ceiling(r, len(seeds))
        print(f"({SEED_AGREEMENT}: one seed's long accuracy against another's; with that agreement no signal can "
              f"correlate with the mean of {len(seeds)} seeds much beyond {ceiling(r, len(seeds)):.2f})")
    stopped = front_stopped_share(nets, seeds)
    aware = stopped["noise_aware_front"]
    print(f"long-training front: {stopped['front_size']} networks {stopped['front_by_family']}; over the seed noise "
          f"(one seed's accuracy per network, {aware['draws']} draws) {aware['expected_size']} expected, "
          f"{aware['networks_ever_on_it']} networks ever on it {aware['expected_by_family']}")
    print("share a rung stops (vs every other network, eta 3), of the front / of the noise-aware front (families "
          f"with at least {FRONT_MEMBERS_MIN} expected members):")
    for key, value in stopped.items():
        if isinstance(value, dict) and "overall" in value:
            fam = ", ".join(f"{f} {v:.0%}" for f, v in value["per_family"].items())
            noisy = ", ".join(f"{f} {v:.1%}" for f, v in value["noise_aware_per_family"].items())
            print(f"  {key:<22} {value['overall']:>5.0%} ({fam})   {value['noise_aware']:>6.1%} ({noisy})")
    result: dict[str, Any] = {"ground_truth": str(path), "complete": complete, "networks": len(nets),
                              "seeds": seeds, "long_epochs": sorted(epochs), "noise_floor": floor,
                              "rank_correlation": correlations, "front_stopped_share": stopped}
    if args.no_replays or not complete:
        why = ("--no-replays" if args.no_replays else
               "the ground truth is partial and a replay may ask for any network of the table")
        print(f"pick regret: skipped ({why})")
        result["median_pick_regret"] = None
        result["median_pick_regret_skipped"] = why
    else:
        print(f"pick regret ({args.seeds} replays per setting, refine top {args.refine_top}):", flush=True)
        result["median_pick_regret"] = regret_study(nets, args.seeds, args.refine_top, args.budget_networks,
                                                    args.workers)
    if result["median_pick_regret"] and floor:
        result["targets"] = targets(result["median_pick_regret"], stopped, floor)
    result["seconds"] = round(time.time() - started, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
