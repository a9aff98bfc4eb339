"""Search efficiency: hypervolume against wall-clock time for five ways of searching the same networks.

Methods, each given the same wall-clock budget per run, on the same data, with the same trainer
(igc-nas's fast CPU training path) and the same epochs, so that only the search strategy differs:

* ``random``: random search at full fidelity over igc-nas's valid space (no seeds, no early stopping);
* ``nsga2_plain``: a plain Optuna NSGA-II loop as a typical user writes it: family, width, blocks and,
  per stage, L and the K's as integers in an unconstrained space; configurations that break the
  complementary condition (or any other rule) are rejected at run time (pruned); in-memory study;
* ``ray_asha``: Ray Tune with OptunaSearch (multi-objective, igc-nas's valid space) and the
  single-metric ASHA scheduler on accuracy; every trial reports params and MACs with each epoch, so a
  trial ASHA stops keeps the accuracy it last reported (as Tune hands it to OptunaSearch);
* ``igcnas``: ``igc-nas search`` defaults (its default sampler, seeded with the balance-condition and zoo
  networks, multi-objective successive halving);
* ``igcnas_random``: exactly ``igcnas`` but ``--sampler random`` (same seeds, same early stopping), so that
  ``igcnas`` - ``igcnas_random`` is the optimiser's share measured on real training (the tabular
  ``bench/sampler_comparison.py`` measures it over many more seeds on a simulated clock).

``random``, ``igcnas`` and ``igcnas_random`` set ``n_trials`` to 100, more than fit in the default budget
on 2 cores (about 30-70 trained trials), so that the wall-clock budget, not the trial count, ends the run;
the evolution sampler sizes its population from it (10), as for a user's ``--n-trials 100``.

Every run is its own process (Ray, the allocator and thread settings are process-wide). A run's
completed trials are kept with their completion time; the hypervolume at time t is that of the trials
completed by t, on (1 - accuracy, log params, log MACs), the cost axes scaled to [0, 1] between the
smallest and largest network of the space, with the same reference point (1, 1.05, 1.05) for every
method. Trials igc-nas stopped early are not counted for it (they are not on its front); for Ray the
last reported accuracy of every trial counts, as the user would see it.

    python bench/search_efficiency.py [--budget 60] [--seeds 0 1 2] [--datasets digits cifar10-sample]
                                      [--json PATH] [--html PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = ("random", "nsga2_plain", "ray_asha", "igcnas", "igcnas_random")
CIFAR_SAMPLE = ROOT.parent / "shared" / "data" / "cifar10-sample"
EPOCHS = {"digits": 4, "cifar10-sample": 4}
BATCH = 64
# Where every method trains (--device; workers inherit it through the environment).
DEVICE = os.environ.get("IGCNAS_BENCH_DEVICE", "cpu")
LR = 0.05
N_TRIALS = 100  # more than a 60 s budget trains: the clock ends each run (see the module docstring)


def dataset_args(name: str) -> dict:
    if name == "digits":
        return {"dataset": "digits", "data_dir": None}
    if name == "cifar10-sample":
        return {"dataset": "cifar10", "data_dir": str(CIFAR_SAMPLE)}
    raise ValueError(f"dataset must be digits or cifar10-sample, got {name!r}")


# ----------------------------------------------------------------------------------------------- methods


def run_igcnas_driver(ds: str, seed: int, budget: float, out: Path, t0: float, *, method: str) -> list:
    """``random``, ``igcnas`` and ``igcnas_random`` go through igc-nas's own driver (SQLite study in a temp folder).

    ``igcnas`` leaves every search option at its default (the sampler included), so the arm follows the
    search; ``igcnas_random`` changes only the sampler; ``random`` also drops the seeds and early stopping.
    """
    from igcnas.nas.options import SearchOptions
    from igcnas.nas.orchestrator import run_search

    changes: dict = {}
    if method == "igcnas_random":
        changes = {"sampler": "random"}
    elif method == "random":
        changes = {"sampler": "random", "seed_balanced": False, "early_stopping": False}
    elif method != "igcnas":
        raise ValueError(method)
    options = SearchOptions(**dataset_args(ds), n_trials=N_TRIALS, timeout=budget, seed=seed, output_dir=str(out),
                            epochs=EPOCHS[ds], batch_size=BATCH, lr=LR, save_weights=False, device=DEVICE,
                            **changes)
    outcome = run_search(options)
    points = []
    for t in outcome.study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE":
            points.append((t.datetime_complete.timestamp() - t0, t.values[0], t.values[1], t.values[2]))
    return points


def _plain_config(trial, spec):
    """A typical user's space: integers for L and the K's, no knowledge of the conditions."""
    from igcnas.search_space.families import get_family

    family = trial.suggest_categorical("family", list(spec.families))
    width = trial.suggest_categorical("width", list(spec.widths))
    blocks = trial.suggest_categorical("blocks", list(spec.blocks))
    choices = []
    for i in range(spec.num_stages):
        choice: dict = {}
        for name in get_family(family).params:
            if name == "k1":
                choice["k1"] = trial.suggest_int(f"s{i}.k1", 1, 64, log=True)
            elif name == "chain":
                length = trial.suggest_int(f"s{i}.L", 2, spec.max_l)
                choice["chain"] = tuple(trial.suggest_int(f"s{i}.K{j}", 1, 64, log=True) for j in range(2, length + 1))
            elif name == "k":
                choice["k"] = trial.suggest_int(f"s{i}.K", 1, 64, log=True)
            elif name == "l":
                choice["l"] = trial.suggest_int(f"s{i}.L", 2, spec.max_l)
            elif name == "expansion":
                choice["expansion"] = trial.suggest_int(f"s{i}.t", 1, 6)
            elif name == "groups":
                choice["groups"] = trial.suggest_int(f"s{i}.G", 1, 8)
        choices.append(choice)
    return spec.build(family, width, blocks, choices)


def run_nsga2_plain(ds: str, seed: int, budget: float, t0: float) -> list:
    import optuna

    from igcnas.evaluators.train import TrainSettings
    from igcnas.nas.trial_evaluation import evaluate_config
    from igcnas.nas.budget import Budget
    from igcnas.search_space.plan import resolve

    spec, data = _spec_and_data(ds, seed)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=seed, population_size=16))
    points = []

    def objective(trial):
        try:
            config = _plain_config(trial, spec)
            resolve(config)  # the layer plan checks every stage's parameters
        except ValueError as exc:  # the rules reject it: only now, at run time
            raise optuna.TrialPruned(str(exc)) from None
        settings = TrainSettings(epochs=EPOCHS[ds], batch_size=BATCH, lr=LR, seed=seed + trial.number, device=DEVICE)
        ev = evaluate_config(config, data, train_settings=settings, budget=Budget(), model_seed=seed + trial.number)
        points.append((time.time() - t0, ev.val_accuracy, ev.params, ev.macs))
        return ev.val_accuracy, ev.params, ev.macs

    study.optimize(objective, timeout=budget)
    return points


def _spec_and_data(ds: str, seed: int):
    from igcnas.nas.options import SearchOptions
    from igcnas.nas.orchestrator import prepare

    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(SearchOptions(**dataset_args(ds), seed=seed, output_dir=tmp, seed_balanced=False,
                                     save_weights=False))
        return prep.spec, prep.data


def _ray_trainable(config):
    import torch
    from ray import tune

    from igcnas.evaluators.train import TrainSettings, train_model
    from igcnas.models import build_model
    from igcnas.search_space.config_io import config_from_dict
    from igcnas.search_space.costs import closed_form_costs

    torch.set_num_threads(1)
    run = config["run"]
    network = config_from_dict(config["network"])
    costs = closed_form_costs(network)
    data = _ray_data(run["ds"], run["seed"])
    settings = TrainSettings(epochs=run["epochs"], batch_size=BATCH, lr=LR, seed=run["seed"] + config["number"],
                             device=DEVICE)
    model = build_model(network, seed=run["seed"] + config["number"])

    def on_epoch(epoch, accuracy):
        tune.report({"val_accuracy": accuracy, "params": float(costs.params), "macs": float(costs.macs),
                     "epoch": epoch, "wall_time": time.time()})

    train_model(model, data, settings, on_epoch=on_epoch)


_RAY_DATA: dict = {}


def _ray_data(ds: str, seed: int):
    if (ds, seed) not in _RAY_DATA:
        from igcnas.evaluators.datasets import load_dataset

        where = dataset_args(ds)
        _RAY_DATA[(ds, seed)] = load_dataset(where["dataset"], data_dir=where["data_dir"], seed=seed)
    return _RAY_DATA[(ds, seed)]


class _RaySpace:
    def __init__(self, spec, run):
        self.spec, self.run = spec, run

    def __call__(self, trial):
        from igcnas.nas.gene_suggestions import suggest_config
        from igcnas.search_space.genome import genome_for
        from igcnas.search_space.config_io import config_to_dict

        return {"network": config_to_dict(suggest_config(trial, genome_for(self.spec))), "number": trial.number,
                "run": self.run}


def run_ray_asha(ds: str, seed: int, budget: float, out: Path, t0: float) -> list:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from igcnas.nas.samplers import make_sampler

    spec, _ = _spec_and_data(ds, seed)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}})
    run = {"ds": ds, "seed": seed, "epochs": EPOCHS[ds]}
    # igc-nas's NSGA-II (Optuna's, made picklable): Tune pickles the searcher with its sampler, and Optuna's
    # own NSGAIISampler holds a thread lock since 5.1 ("cannot pickle '_thread.lock' object").
    searcher = OptunaSearch(space=_RaySpace(spec, run), metric=["val_accuracy", "params", "macs"],
                            mode=["max", "min", "min"], sampler=make_sampler("nsga2", seed))
    scheduler = ASHAScheduler(metric="val_accuracy", mode="max", time_attr="epoch", max_t=EPOCHS[ds],
                              grace_period=1, reduction_factor=3)
    tuner = tune.Tuner(_ray_trainable, tune_config=tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, num_samples=-1, time_budget_s=max(budget - (time.time() - t0), 1)),
        run_config=tune.RunConfig(storage_path=str(out / "ray"), verbose=0))
    results = tuner.fit()
    if results.errors and not any(r.metrics for r in results if r.error is None):
        # Tune records a failing trainable's error per trial and returns normally: without this, an arm whose
        # every trial crashed would report "0 trials" as if the budget were simply too short.
        raise RuntimeError(f"every ray_asha trial failed; first error: {results.errors[0]!r}")
    points = []
    for result in results:
        m = result.metrics or {}
        if "val_accuracy" in m and "wall_time" in m:
            points.append((m["wall_time"] - t0, m["val_accuracy"], m["params"], m["macs"]))
    ray.shutdown()
    return points


def worker(method: str, ds: str, seed: int, budget: float) -> list:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if method in ("random", "igcnas", "igcnas_random"):
            return run_igcnas_driver(ds, seed, budget, out, t0, method=method)
        if method == "nsga2_plain":
            return run_nsga2_plain(ds, seed, budget, t0)
        if method == "ray_asha":
            return run_ray_asha(ds, seed, budget, out, t0)
    raise ValueError(method)


# ------------------------------------------------------------------------------------------ hypervolume


def cost_bounds(ds: str) -> dict:
    from igcnas.search_space.spec import space_bounds

    spec, _ = _spec_and_data(ds, 0)
    b = space_bounds(spec)
    return {"params": (b.min_params, b.max_params), "macs": (b.min_macs, b.max_macs)}


def hv_curve(points: list, bounds: dict, times: list[float]) -> list[float]:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    def scale(value: float, lo_hi: tuple[int, int]) -> float:
        lo, hi = (math.log(v) for v in lo_hi)
        return min(max((math.log(max(value, 1.0)) - lo) / (hi - lo), 0.0), 1.0)

    ref = np.array([1.0, 1.05, 1.05])
    out = []
    for t in times:
        done = [(1.0 - a, scale(p, bounds["params"]), scale(m, bounds["macs"])) for (tc, a, p, m) in points if tc <= t]
        done = [d for d in done if d[0] < 1.0]
        out.append(float(compute_hypervolume(np.array(done), ref, assume_pareto=False)) if done else 0.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per run (default 60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["digits", "cifar10-sample"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--checkpoints", type=int, default=6, help="reported time points (default 6)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--device", default=DEVICE, help="where every method trains (cpu, cuda, cuda:N; default cpu)")
    parser.add_argument("--html", default="search_efficiency.html", help="plotly HTML of the curves")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "DATASET", "SEED", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["IGCNAS_BENCH_DEVICE"] = args.device  # the worker processes read it at import

    if args.worker:
        method, ds, seed, budget = args.worker
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(worker(method, ds, int(seed), float(budget))))
        return 0

    times = [args.budget * (i + 1) / args.checkpoints for i in range(args.checkpoints)]
    fine = [args.budget * i / 120 for i in range(1, 121)]
    summary: dict = {"budget_s": args.budget, "seeds": args.seeds, "checkpoints_s": times, "datasets": {}}
    for ds in args.datasets:
        bounds = cost_bounds(ds)
        runs: dict = {m: {} for m in args.methods}
        for seed in args.seeds:
            for method in args.methods:
                print(f"[{ds}] seed {seed}: {method} for {args.budget:g} s ...", file=sys.stderr, flush=True)
                cmd = [sys.executable, __file__, "--worker", method, ds, str(seed), str(args.budget)]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget * 4 + 300)
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{method} failed on {ds} seed {seed}")
                runs[method][seed] = json.loads(done.stdout.strip().splitlines()[-1])
        result = summarise(ds, runs, bounds, times, fine, args)
        summary["datasets"][ds] = result
    if "digits" in summary["datasets"]:
        d = summary["datasets"]["digits"]
        for key in ("time_fraction_to_random_final_hv", "highest_hv_at_every_checkpoint", "optimiser_share_median_hv"):
            if key in d:  # present only when the methods it compares were run
                summary[key] = d[key]
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    write_html(summary, args.html)
    print(f"\ncurves: {args.html}")
    return 0


def summarise(ds: str, runs: dict, bounds: dict, times: list, fine: list, args) -> dict:
    med = statistics.median
    result: dict = {"methods": {}, "bounds": bounds}
    print(f"\n{ds}: hypervolume, median [min-max] over seeds {args.seeds}, at seconds of a {args.budget:g} s budget")
    header = f"{'method':<13}" + "".join(f"{t:>21.0f}s" for t in times) + f"{'trials (median)':>17}"
    print(header)
    for method, by_seed in runs.items():
        curves = {s: hv_curve(points, bounds, times) for s, points in by_seed.items()}
        fine_curves = {s: hv_curve(points, bounds, fine) for s, points in by_seed.items()}
        at = [[curves[s][i] for s in curves] for i in range(len(times))]
        counts = [len(p) for p in by_seed.values()]
        # a trial running when the budget ran out still completes, after the last checkpoint: it counts as
        # completed but not in the hypervolume, which only sees trials done within the budget
        in_budget = [sum(1 for point in p if point[0] <= times[-1]) for p in by_seed.values()]
        result["methods"][method] = {
            "median": [med(v) for v in at], "min": [min(v) for v in at], "max": [max(v) for v in at],
            "per_seed": curves, "fine_median": [med([fine_curves[s][i] for s in fine_curves])
                                                for i in range(len(fine))],
            "completed_trials": counts, "completed_within_budget": in_budget,
        }
        cells = "".join(f"{med(v):.4f} [{min(v):.3f}-{max(v):.3f}]".rjust(22) for v in at)
        print(f"{method:<13}{cells}{med(counts):>17.0f}")
    result["fine_times_s"] = fine
    methods = result["methods"]
    if "random" in methods and "igcnas" in methods:
        fractions = []
        for seed in args.seeds:
            target = methods["random"]["per_seed"][seed][-1]
            mine = hv_curve(runs["igcnas"][seed], bounds, fine)
            reached = next((t for t, v in zip(fine, mine) if v >= target), None)
            fractions.append(reached / args.budget if reached is not None else math.inf)
        result["time_fraction_to_random_final_hv_per_seed"] = fractions
        result["time_fraction_to_random_final_hv"] = med(fractions)
        highest = all(methods["igcnas"]["median"][i] >= max(m["median"][i] for m in methods.values())
                      for i in range(len(times)))
        result["highest_hv_at_every_checkpoint"] = highest
        print(f"igc-nas reaches random search's final hypervolume at {med(fractions):.2f} of the budget (median; "
              f"per seed {', '.join(f'{f:.2f}' for f in fractions)}; target <= 0.33); highest median at every "
              f"checkpoint: {highest}")
    if "igcnas" in methods and "igcnas_random" in methods:
        share = [a - b for a, b in zip(methods["igcnas"]["median"], methods["igcnas_random"]["median"])]
        result["optimiser_share_median_hv"] = share
        print("the optimiser's share (igcnas - igcnas_random, median hypervolume) at each checkpoint: "
              + ", ".join(f"{v:+.4f}" for v in share))
    return result


def write_html(summary: dict, path: str) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(summary["datasets"])
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"{n} (median over seeds)" for n in names])
    colors = {"random": "#7f7f7f", "nsga2_plain": "#1f77b4", "ray_asha": "#ff7f0e", "igcnas": "#d62728",
              "igcnas_random": "#9467bd"}
    for col, ds in enumerate(names, start=1):
        d = summary["datasets"][ds]
        for method, m in d["methods"].items():
            fig.add_trace(go.Scatter(x=d["fine_times_s"], y=m["fine_median"], mode="lines", name=method,
                                     line={"color": colors.get(method)}, legendgroup=method,
                                     showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="wall-clock seconds", row=1, col=col)
        fig.update_yaxes(title_text="hypervolume (1-acc, log params, log MACs)", row=1, col=col)
    fig.update_layout(title="Search efficiency: hypervolume against time", template="plotly_white")
    fig.write_html(path, include_plotlyjs=True)


if __name__ == "__main__":
    sys.exit(main())
