"""Sampler comparison on the tabular benchmark: hypervolume against simulated time, 30 seeds per arm.

Every arm replays the same search on ``bench/tables/igc_digits.jsonl.gz`` (``bench/tabular.py``): the same
simulated budget and workers, the same enqueued seed networks (the balance-condition and zoo networks the
search enqueues), the same early-stopping rule and schedule, the same draw of training seeds; only the way
networks are chosen differs:

* ``random``: ``RandomSampler`` over the search's genes (what ``igc-nas search --sampler random`` does);
* ``nsga2_plain``: the behaviour before the gene encoding: ``NSGAIISampler(seed, population_size=16)``
  (the search's ``nsga2``, then its default) over the OLD define-by-run encoding
  (``bench/legacy_space.py``), whose parameter names change with the family, so that NSGA-II's
  intersection search space is ``family`` alone and every other choice is drawn at random;
* ``nsga2_genes``: the same ``NSGAIISampler`` over the new genes, which separates the encoding's share
  from the sampler's;
* ``tpe``: ``TPESampler(seed, multivariate=True, group=True)`` over the genes;
* ``evolution_no_preselect``: the new default with its pre-selection on known costs switched off
  (``candidates=1``), which measures what the pre-selection contributes;
* ``evolution``: the new default, ``make_sampler("evolution", ...)`` over the genes, its ``n_trials``
  hint the number of full trainings the budget affords.

Every sampler is made by the search's own ``igcnas.nas.samplers.make_sampler``.

Reported: the median normalised hypervolume over seeds (definition and reference point in
``bench/tabular.py``: log-scaled costs, reference (1, 1.05, 1.05), divided by the table's true front) with
a 95% bootstrap interval (10,000 resamples of the seeds) at 25%, 50% and 100% of the budget; the fraction
of the budget each arm's median curve needs to reach random's final median; the bootstrap interval of the
difference of medians (evolution - random) at 50% (arms resampled independently). Then what early
stopping costs: per rung epoch, the rank correlation (Spearman, Kendall) of that epoch's accuracy with
the final accuracy over the whole table, the share of networks at chance, the share of the table's own
final Pareto front the rung rule stops (against the whole table, and against 30 random peers, the size of
a rung population in these replays); and the evolution arm under four schedules (a rung at 3, the
default; a rung at 2; rungs at 1 and 3; no early stopping), each compared with the default.

    python bench/sampler_comparison.py [--seeds 30] [--workers 4] [--budget-s S | --budget-networks 80]
                                       [--arms ...] [--jobs 1] [--json PATH] [--table PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from igc_table import TABLE_SPEC, Row, load_table  # noqa: E402
from igcnas.nas.early_stopping import RungEntry, RungSchedule, domination_counts, should_promote  # noqa: E402
from tabular import DEFAULT_SCHEDULE, HVReference, Run, replay, table_front_hv  # noqa: E402

ARMS = ("random", "nsga2_plain", "nsga2_genes", "tpe", "evolution_no_preselect", "evolution")
CHECKPOINTS = (0.25, 0.5, 1.0)
SCHEDULES: dict[str, RungSchedule | None] = {
    # The default first: the others are compared with it. The table holds accuracy as measured; the search's
    # default rung is on BatchNorm re-estimated accuracy, which bench/fidelity.py replays.
    "rung 3 (min_epochs=3, the default)": RungSchedule(max_epochs=4, min_epochs=3, eta=3),
    "rung 2 (min_epochs=2, the previous default)": RungSchedule(max_epochs=4, min_epochs=2, eta=3),
    "rungs 1,3 (min_epochs=1, an older default)": RungSchedule(max_epochs=4, min_epochs=1, eta=3),
    "no early stopping": None,
}
if DEFAULT_SCHEDULE != next(iter(SCHEDULES.values())):
    raise SystemExit(f"the search's default schedule {DEFAULT_SCHEDULE} is not the first of the compared ones")
# A network that predicts one class gets 0.098-0.101 on this validation split; "at chance" allows 2 points.
AT_CHANCE = 0.12
BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 20240601
FINE_POINTS = 400
RUNG_PEERS = 30
RUNG_DRAWS = 200


# ------------------------------------------------------------------------------------------------ arms


class Context:
    """What every arm shares: the space, its genome, the seed networks in both encodings, the table."""

    def __init__(self, table: dict[str, Row], n_trials_hint: int, spec: Any = None) -> None:
        from igcnas.nas.gene_suggestions import seed_trial_params
        from igcnas.search_space.genome import genome_for
        from igcnas.search_space.spec import choices_of
        from legacy_space import legacy_params_for

        self.table = table
        self.spec = spec if spec is not None else TABLE_SPEC
        self.genome = genome_for(self.spec)
        self.seed_genes = seed_trial_params(self.genome)
        self.seed_legacy = []
        for params in self.seed_genes:
            config = self.genome.decode(params)
            self.seed_legacy.append(legacy_params_for(self.spec, config.family, config.stem_width,
                                                      config.stages[0].blocks, choices_of(config)))
        self.n_trials_hint = n_trials_hint
        self.reference = HVReference.from_rows(table.values())
        self.true_hv = table_front_hv(table, self.reference)
        self.arch_cache: dict[Any, str] = {}


def make_arm(name: str, seed: int, ctx: Context) -> tuple[Any, Callable[[Any], Any], list[dict[str, Any]]]:
    """(sampler, suggest, params to enqueue) of one arm for one seed; samplers are the search's own
    (``make_sampler``), so the comparison follows any change to how the search builds them."""
    from igcnas.nas.samplers import make_sampler
    from igcnas.nas.gene_suggestions import suggest_config
    from legacy_space import legacy_suggest_config

    genome = ctx.genome

    def genes(trial: Any) -> Any:
        return suggest_config(trial, genome)

    def legacy(trial: Any) -> Any:
        return legacy_suggest_config(trial, ctx.spec)

    if name == "random":
        return make_sampler("random", seed), genes, ctx.seed_genes
    if name == "nsga2_plain":
        return make_sampler("nsga2", seed), legacy, ctx.seed_legacy
    if name == "nsga2_genes":
        return make_sampler("nsga2", seed), genes, ctx.seed_genes
    if name == "tpe":
        return make_sampler("tpe", seed), genes, ctx.seed_genes
    if name == "evolution":
        return (make_sampler("evolution", seed, spec=ctx.spec, budget=None, n_trials=ctx.n_trials_hint), genes,
                ctx.seed_genes)
    if name == "evolution_no_preselect":  # the same sampler with its pre-selection switched off
        sampler = make_sampler("evolution", seed, spec=ctx.spec, budget=None, n_trials=ctx.n_trials_hint)
        sampler.candidates = 1
        return sampler, genes, ctx.seed_genes
    raise ValueError(f"arm must be one of {', '.join(ARMS)}, got {name!r}")


def run_one(arm: str, seed: int, ctx: Context, *, budget_s: float, workers: int,
            schedule: RungSchedule | None) -> Run:
    sampler, suggest, enqueue = make_arm(arm, seed, ctx)
    run = replay(table=ctx.table, spec=ctx.spec, sampler=sampler, budget_s=budget_s, n_workers=workers,
                 schedule=schedule, seed=seed, seeds_to_enqueue=enqueue, suggest=suggest,
                 reference=ctx.reference, true_front_hv=ctx.true_hv, arch_cache=ctx.arch_cache)
    run.study = None  # keep memory flat (and results picklable) over 30 seeds x arms
    return run


def run_arm(arm: str, seeds: list[int], ctx: Context, *, budget_s: float, workers: int,
            schedule: RungSchedule | None) -> list[Run]:
    return [run_one(arm, seed, ctx, budget_s=budget_s, workers=workers, schedule=schedule) for seed in seeds]


_WORKER_CTX: Context | None = None


def _init_process(table_path: str | None, hint: int) -> None:
    """Each process of ``--jobs`` builds its own context (table, genome, caches) once."""
    global _WORKER_CTX
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _WORKER_CTX = Context(load_table(table_path), hint)


def _run_in_process(arm: str, seed: int, budget_s: float, workers: int, schedule: RungSchedule | None) -> Run:
    assert _WORKER_CTX is not None
    return run_one(arm, seed, _WORKER_CTX, budget_s=budget_s, workers=workers, schedule=schedule)


Task = tuple[str, str, "RungSchedule | None"]  # (label, arm, schedule)


def run_tasks(tasks: list[Task], seeds: list[int], ctx: Context, *, budget_s: float, workers: int, jobs: int,
              table_path: str | None) -> tuple[dict[str, list[Run]], dict[str, float]]:
    """Replays of every task for every seed, in this process or in ``jobs`` processes.

    Each replay is deterministic given its seed, so the results do not depend on ``jobs``.
    """
    runs: dict[str, list[Run]] = {}
    timings: dict[str, float] = {}
    if jobs <= 1:
        for label, arm, schedule in tasks:
            t0 = time.time()
            runs[label] = run_arm(arm, seeds, ctx, budget_s=budget_s, workers=workers, schedule=schedule)
            timings[label] = time.time() - t0
            print(f"  {label}: {timings[label]:.1f} s for {len(seeds)} replays", file=sys.stderr, flush=True)
        return runs, timings
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.time()
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_process,
                             initargs=(table_path, ctx.n_trials_hint)) as pool:
        futures = {label: [pool.submit(_run_in_process, arm, seed, budget_s, workers, schedule) for seed in seeds]
                   for label, arm, schedule in tasks}
        for label, fs in futures.items():
            runs[label] = [f.result() for f in fs]
            timings[label] = time.time() - t0  # wall time at which this task's replays were all back
            print(f"  {label}: done at {timings[label]:.1f} s", file=sys.stderr, flush=True)
    return runs, timings


# ------------------------------------------------------------------------------------------ statistics


def bootstrap_median(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """(median, 2.5% and 97.5% quantiles of the bootstrap medians) over the seeds in ``values``."""
    idx = rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))
    medians = np.median(values[idx], axis=1)
    return float(np.median(values)), float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """median(a) - median(b) with a 95% interval, each arm's seeds resampled independently."""
    ia = rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))
    ib = rng.integers(0, len(b), size=(BOOTSTRAP, len(b)))
    diffs = np.median(a[ia], axis=1) - np.median(b[ib], axis=1)
    return (float(np.median(a) - np.median(b)), float(np.quantile(diffs, 0.025)),
            float(np.quantile(diffs, 0.975)))


def at_checkpoints(runs: list[Run], budget_s: float) -> dict[float, np.ndarray]:
    return {c: np.array([r.hv_at(c * budget_s) for r in runs]) for c in CHECKPOINTS}


def median_curve(runs: list[Run], budget_s: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(budget_s / FINE_POINTS, budget_s, FINE_POINTS)
    return grid, np.median(np.array([[r.hv_at(t) for t in grid] for r in runs]), axis=0)


def fraction_to_reach(runs: list[Run], budget_s: float, target: float) -> float | None:
    """First fraction of the budget at which the arm's median curve reaches ``target`` (None: never)."""
    grid, curve = median_curve(runs, budget_s)
    hit = np.flatnonzero(curve >= target - 1e-12)
    return float(grid[hit[0]] / budget_s) if len(hit) else None


def summarise(runs: dict[str, list[Run]], budget_s: float, rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {"median_hv": {}, "hv_ci95": {}, "trials": {}}
    for arm, arm_runs in runs.items():
        values = at_checkpoints(arm_runs, budget_s)
        out["median_hv"][arm], out["hv_ci95"][arm] = {}, {}
        for c, v in values.items():
            med, lo, hi = bootstrap_median(v, rng)
            out["median_hv"][arm][f"{c:.0%}"] = med
            out["hv_ci95"][arm][f"{c:.0%}"] = [lo, hi]
        out["trials"][arm] = {
            "started": float(np.median([len(r.trials) for r in arm_runs])),
            "complete": float(np.median([r.count("complete") for r in arm_runs])),
            "stopped_early": float(np.median([r.count("stopped_early") for r in arm_runs])),
            "distinct_complete": float(np.median([len({t.arch_id for t in r.trials if t.status == "complete"})
                                                  for r in arm_runs])),
        }
    return out


# ------------------------------------------------------------------------------------- early stopping


def true_front_ids(table: dict[str, Row]) -> list[str]:
    """arch_ids on the table's final Pareto front (accuracy averaged over seeds, exact params and MACs)."""
    rows = list(table.values())
    counts = domination_counts([RungEntry(r.final_accuracy(), float(r.params), float(r.macs)) for r in rows])
    return [r.arch_id for r, c in zip(rows, counts) if c == 0]


def rung_analysis(table: dict[str, Row], rng: np.random.Generator) -> dict[str, Any]:
    """Per epoch: rank correlation with the final accuracy, share at chance, share of the true front stopped.

    Correlations pool (network, seed) pairs, each epoch's accuracy against the same run's final one. The
    rule is the search's ``should_promote`` (eta 3) with the rung population taken as (a) every other
    network of the table trained with the same seed, the limit of a long search, and (b) ``RUNG_PEERS``
    networks drawn at random, about the population a rung has in these replays; (b) is averaged over
    ``RUNG_DRAWS`` draws per front network and seed.
    """
    from scipy.stats import kendalltau, spearmanr

    rows = list(table.values())
    seeds = sorted(set.intersection(*(set(r.curves) for r in rows)))
    epochs = min(r.epochs for r in rows)
    front = set(true_front_ids(table))
    front_idx = [i for i, r in enumerate(rows) if r.arch_id in front]
    out: dict[str, Any] = {"epochs": {}, "true_front_size": len(front), "seeds": seeds, "rung_peers": RUNG_PEERS,
                           "at_chance_threshold": AT_CHANCE}
    for epoch in range(1, epochs + 1):
        x = np.array([r.curves[s][epoch - 1] for r in rows for s in seeds])
        y = np.array([r.curves[s][-1] for r in rows for s in seeds])
        entry: dict[str, Any] = {"spearman": float(spearmanr(x, y).statistic),
                                 "kendall": float(kendalltau(x, y).statistic),
                                 "share_at_chance": float((x <= AT_CHANCE).mean())}
        if epoch < epochs:
            stopped_all, stopped_sample = [], []
            for s in seeds:
                entries = [RungEntry(r.curves[s][epoch - 1], float(r.params), float(r.macs)) for r in rows]
                for i in front_idx:
                    peers = entries[:i] + entries[i + 1:]
                    stopped_all.append(not should_promote(entries[i], peers, 3)[0])
                    draws = 0
                    for _ in range(RUNG_DRAWS):
                        pick = rng.choice(len(peers), size=RUNG_PEERS, replace=False)
                        draws += not should_promote(entries[i], [peers[j] for j in pick], 3)[0]
                    stopped_sample.append(draws / RUNG_DRAWS)
            entry["front_stopped_vs_table"] = float(np.mean(stopped_all))
            entry["front_stopped_vs_30_peers"] = float(np.mean(stopped_sample))
        out["epochs"][str(epoch)] = entry
    return out


# ---------------------------------------------------------------------------------------------- report


def fmt_cell(median: float, lo: float, hi: float) -> str:
    return f"{median:.3f} [{lo:.3f}, {hi:.3f}]"


def print_hv_table(title: str, summary: dict[str, Any], fractions: dict[str, float | None] | None) -> None:
    labels = [f"{c:.0%}" for c in CHECKPOINTS]
    print(f"\n{title}")
    header = f"{'arm':<24}" + "".join(f"{'HV at ' + lab:>26}" for lab in labels)
    header += f"{'trials (complete/stopped)':>28}"
    if fractions is not None:
        header += f"{'to random final':>17}"
    print(header)
    for arm in summary["median_hv"]:
        cells = "".join(fmt_cell(summary["median_hv"][arm][lab], *summary["hv_ci95"][arm][lab]).rjust(26)
                        for lab in labels)
        t = summary["trials"][arm]
        counts = f"{t['started']:.0f} ({t['complete']:.0f}/{t['stopped_early']:.0f})".rjust(28)
        line = f"{arm:<24}{cells}{counts}"
        if fractions is not None:
            f = fractions.get(arm)
            line += (f"{f:.2f}" if f is not None else "never").rjust(17)
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds per arm (0..N-1; default 30)")
    parser.add_argument("--workers", type=int, default=4, help="simulated asynchronous workers (default 4)")
    parser.add_argument("--budget-s", type=float, help="simulated seconds per run (default: see --budget-networks)")
    parser.add_argument("--budget-networks", type=float, default=80.0,
                        help="default budget: the time these many full trainings take on the workers, at the "
                             "table's mean training time (default 80)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--no-schedules", action="store_true", help="skip the early-stopping schedule comparison")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes for the replays (default 1; results do not depend on it)")
    parser.add_argument("--table", help="table file (default: the committed table, else the partial one)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import optuna
    import torch

    from igcnas.search_space.design_space import DesignSpace

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    started = time.time()
    table = load_table(args.table)
    total = DesignSpace(TABLE_SPEC).count()
    if len(table) < total:
        raise SystemExit(f"the table has {len(table)} of {total} networks; finish it (python bench/make_table.py) "
                         "before comparing samplers, or every arm would stumble on missing networks")
    mean_s = float(np.mean([r.mean_seconds() for r in table.values()]))
    budget_s = args.budget_s or mean_s * args.budget_networks / args.workers
    hint = int(round(budget_s * args.workers / mean_s))
    seeds = list(range(args.seeds))
    ctx = Context(table, hint)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    print(f"table: {len(table)} networks, mean training {mean_s:.2f} s (4 epochs); budget {budget_s:.1f} simulated s "
          f"on {args.workers} workers (~{hint} full trainings); {len(seeds)} seeds; "
          f"{len(ctx.seed_genes)} enqueued seed networks; schedule: rungs {list(DEFAULT_SCHEDULE.rungs)}, eta 3")
    print("hypervolume: (1 - acc, log params, log MACs scaled to [0, 1] over the table), reference (1, 1.05, 1.05), "
          f"divided by the table's true front ({ctx.true_hv:.4f}); median [95% bootstrap CI] over seeds")

    tasks: list[Task] = [(arm, arm, DEFAULT_SCHEDULE) for arm in args.arms]
    with_schedules = not args.no_schedules and "evolution" in args.arms
    if with_schedules:
        tasks += [(f"evolution / {label}", "evolution", schedule) for label, schedule in SCHEDULES.items()
                  if schedule != DEFAULT_SCHEDULE]
    all_runs, timings = run_tasks(tasks, seeds, ctx, budget_s=budget_s, workers=args.workers, jobs=args.jobs,
                                  table_path=args.table)
    runs = {arm: all_runs[arm] for arm in args.arms}

    summary = summarise(runs, budget_s, rng)
    fractions: dict[str, float | None] = {}
    if "random" in runs:
        target = summary["median_hv"]["random"]["100%"]
        fractions = {arm: fraction_to_reach(r, budget_s, target) for arm, r in runs.items()}
    print_hv_table("Samplers (default early stopping): median normalised hypervolume [95% CI], trials started "
                   "(complete/stopped), fraction of the budget to reach random's final median", summary,
                   fractions if "random" in runs else None)
    result: dict[str, Any] = {
        "table": {"rows": len(table), "mean_training_s": mean_s}, "budget_s": budget_s, "workers": args.workers,
        "seeds": seeds, "n_trials_hint": hint, "checkpoints": [f"{c:.0%}" for c in CHECKPOINTS],
        "hypervolume": {"points": "(1 - accuracy, log-scaled params, log-scaled MACs)", "reference": [1, 1.05, 1.05],
                        "normaliser_true_front_hv": ctx.true_hv, "scaling": ctx.reference.__dict__},
        "median_hv": summary["median_hv"], "hv_ci95": summary["hv_ci95"], "trials": summary["trials"],
        "fraction_of_budget_to_random_final_hv": fractions, "replay_seconds": timings,
    }
    if "random" in runs and "evolution" in runs:
        a = at_checkpoints(runs["evolution"], budget_s)[0.5]
        b = at_checkpoints(runs["random"], budget_s)[0.5]
        diff, lo, hi = bootstrap_difference(a, b, rng)
        result["difference_evolution_minus_random_at_50%"] = {"median_difference": diff, "ci95": [lo, hi]}
        print(f"\nevolution - random at 50% of the budget: {diff:+.4f} [95% CI {lo:+.4f}, {hi:+.4f}] "
              f"(difference of medians, seeds resampled independently)")

    print("\nWhat early stopping costs (whole table, pooled over training seeds):")
    analysis = rung_analysis(table, rng)
    result["early_stopping"] = analysis
    print(f"{'epoch':>5}{'Spearman':>10}{'Kendall':>9}{'at chance':>11}"
          f"{'front stopped (vs table)':>26}{'(vs ' + str(RUNG_PEERS) + ' peers)':>16}")
    for epoch, e in analysis["epochs"].items():
        stop_t = f"{e['front_stopped_vs_table']:.0%}" if "front_stopped_vs_table" in e else "-"
        stop_s = f"{e['front_stopped_vs_30_peers']:.0%}" if "front_stopped_vs_30_peers" in e else "-"
        print(f"{epoch:>5}{e['spearman']:>10.3f}{e['kendall']:>9.3f}{e['share_at_chance']:>11.0%}{stop_t:>26}"
              f"{stop_s:>16}")
    print(f"(true front: {analysis['true_front_size']} networks; 'at chance': accuracy <= {AT_CHANCE}; "
          "rule: should_promote with eta 3)")

    if with_schedules:
        sched_runs = {label: runs["evolution"] if schedule == DEFAULT_SCHEDULE else all_runs[f"evolution / {label}"]
                      for label, schedule in SCHEDULES.items()}
        sched = summarise(sched_runs, budget_s, rng)
        print_hv_table("Evolution under each early-stopping schedule: median normalised hypervolume [95% CI]",
                       sched, None)
        result["schedules"] = {"median_hv": sched["median_hv"], "hv_ci95": sched["hv_ci95"],
                               "trials": sched["trials"], "difference_vs_default_at_100%": {}}
        label_default = next(iter(SCHEDULES))
        for label in list(SCHEDULES)[1:]:
            a = at_checkpoints(sched_runs[label], budget_s)[1.0]
            b = at_checkpoints(sched_runs[label_default], budget_s)[1.0]
            diff, lo, hi = bootstrap_difference(a, b, rng)
            result["schedules"]["difference_vs_default_at_100%"][label] = {"median_difference": diff,
                                                                           "ci95": [lo, hi]}
            print(f"{label} - {label_default} at 100%: {diff:+.4f} [95% CI {lo:+.4f}, {hi:+.4f}]")

    result["wall_seconds"] = time.time() - started
    print(f"\n(total {result['wall_seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
