"""Orchestration cost against the study's size and the number of workers, with synthetic trials.

A synthetic trial trains nothing (no data is loaded): it sleeps (``--trial-seconds``, spread over its
epochs) where training would run, and does everything else a search does, through the project's own
code: the default evolutionary sampler proposes genes, the genome decodes them, the closed-form costs
and budget checks run, every epoch's curve and every rung result are written to the study and checked
at the rungs (multi-objective successive halving, epochs 9, rungs at 1 and 3), and the trial ends with
the same user attributes a trained one has. Accuracies are a fixed function of the architecture.

(a) Size: a SQLite study preloaded with 0, 1,000 and 10,000 finished trials written as a search writes
    them (stopped at rung 1 or 3, complete, failed; genes, costs, curves, rung results, the sampler's
    record). A process that has not read it joins (``prepare``, sampler, first ``ask``) and runs
    trials; reported: ``join_s``, ``per_trial_overhead_ms`` (a trial's whole cycle, ask to tell, minus
    its sleep), SQL statements and database milliseconds per trial, trials re-read per trial, and
    ``finish_s`` (the output writers). Each size runs twice in one run, on copies of the same file,
    taking turns trial by trial: ``incremental`` (the product) and ``full_scan``
    (``population.FULL_SCAN``: every reader scans all trials at every call, as before).
(b) Workers: 1 to 32 worker processes on one new study, on each storage available (SQLite, PostgreSQL on
    127.0.0.1, and when ``open_storage`` takes them, a journal file and ``igc-nas storage-proxy`` over
    PostgreSQL), 1-second trials (every trial sleeps the full second, stopped early or not, so rates
    compare): trials per second in a common window (each trial counted by the share of it inside the
    window) and ``scaling_efficiency`` = rate / (workers x the 1-worker rate).
(c) The same search on a loopback Ray cluster (a head and a worker node on 127.0.0.1, ``ray start``
    processes of this benchmark): ``igc-nas search --backend ray`` with the same synthetic trials (the
    project's Ray trainable, its evaluation replaced by the same sleep in the Ray workers), SQLite study,
    1, 2 and 4 concurrent trials (``--max-concurrent``); trials per second between the first and the
    last completion, ``scaling_efficiency`` against the 1-trial rate and against the ideal (concurrency
    / trial seconds), and Ray's per-trial overhead (a trial's time as the study records it, start to
    completion, minus its sleep). Early stopping is off here (Tune's scheduler stops trials its own way).

    python bench/scale.py [--quick] [--json PATH] [--sizes 0,1000,10000] [--workers 1,2,4,8,16,32]
        [--storages sqlite,postgresql,journal,grpc] [--trial-seconds 1] [--window 8]
        [--ray-concurrency 1,2,4] [--only size|workers|ray]

``--quick`` is a smoke run (< 1 minute on an idle machine). Ratios measured side by side in one run are
the figures to read; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")
EPOCHS, MIN_EPOCHS, ETA = 9, 1, 3  # rungs at epochs 1 and 3
DATA = types.SimpleNamespace(in_channels=1, input_size=8, num_classes=10, name="synthetic")  # digits' shape
GOAL_SIZE_RATIO, GOAL_EFFICIENCY = 1.5, 0.8


# -- the synthetic trial -------------------------------------------------------------------------------

def synthetic_accuracy(arch: str, params: int, epoch: int) -> float:
    """Validation accuracy after ``epoch`` epochs: larger networks do better with diminishing returns, each
    architecture has its own fixed offset, and the curve rises over the epochs."""
    offset = int(hashlib.blake2b(arch.encode(), digest_size=4).hexdigest(), 16) / 2**32 - 0.5
    final = 0.55 + 0.4 * (1.0 - math.exp(-params / 40_000)) + 0.08 * offset
    return round(min(0.999, final * (1.0 - 0.4 * math.exp(-epoch / 2.0))), 4)


class SyntheticTraining:
    """Stands in for ``igcnas.nas.objective.evaluate_config``: same arguments, same result and attributes,
    a sleep instead of training. ``constant``: a trial stopped at a rung sleeps out its remaining epochs
    too, so that every trial takes ``seconds`` (rates compare across worker counts)."""

    def __init__(self, seconds: float, *, constant: bool = False) -> None:
        self.seconds, self.constant = seconds, constant
        self.slept = 0.0  # seconds slept since the owner last reset it

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            start = time.perf_counter()
            time.sleep(seconds)
            self.slept += time.perf_counter() - start

    def __call__(self, config: Any, data: Any, *, train_settings: Any, budget: Any, measure_latency: bool = False,
                 model_seed: int = 0, on_epoch: Any = None, latency_table: Any = None,
                 latency_fingerprint: Any = None) -> Any:
        from igcnas.nas.early_stopping import StoppedAtRung
        from igcnas.nas.objective import precheck
        from igcnas.nas.records import TrialKey, TrialStatus

        evaluation = precheck(config, budget, latency_table)
        if evaluation.status == TrialStatus.OVER_BUDGET:
            return evaluation
        epochs = train_settings.epochs
        per_epoch = self.seconds / epochs
        arch = evaluation.attrs[TrialKey.ARCH_ID]
        curve: list[float] = []
        start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            self._sleep(per_epoch)
            curve.append(synthetic_accuracy(arch, evaluation.params, epoch))
            if on_epoch is not None:
                try:
                    on_epoch(epoch, curve[-1])
                except StoppedAtRung:
                    if self.constant:
                        self._sleep(per_epoch * (epochs - epoch))
                    raise
        evaluation.attrs.update({TrialKey.DEVICE: "cpu", TrialKey.PRECISION: "fp32"})
        evaluation.attrs.update(fvcore_macs=evaluation.macs, fvcore_total=evaluation.macs,
                                fvcore_params=evaluation.params)
        evaluation.val_accuracy = curve[-1]
        evaluation.status = TrialStatus.COMPLETE
        evaluation.attrs.update(curve=curve, train_loss=round(2.3 * (1.0 - curve[-1]), 4), epochs=len(curve),
                                train_seconds=round(time.perf_counter() - start, 3), images_per_second=1000.0)
        return evaluation


def stand_in_for_training(training: SyntheticTraining) -> None:
    """Make this process's searches synthetic: ``prepare`` gets a data set of the digits' shape (no images)
    and no device check, and the objective trains through ``training``. Patches module attributes the
    search code looks up at call time; for a benchmark process of its own, never a test session."""
    import igcnas.evaluators.data
    import igcnas.evaluators.device
    import igcnas.nas.objective

    igcnas.evaluators.data.load_dataset = lambda *args, **kwargs: DATA  # type: ignore[assignment]
    igcnas.evaluators.device.resolve_device = lambda name: name  # type: ignore[assignment]
    igcnas.evaluators.device.resolve_precision = lambda precision, device: precision  # type: ignore[assignment]
    igcnas.nas.objective.evaluate_config = training  # type: ignore[assignment]


def search_options(storage: str, study: str, output_dir: str, **changes: Any) -> Any:
    from igcnas.nas.options import SearchOptions

    return SearchOptions(storage=storage, study=study, output_dir=output_dir, epochs=EPOCHS, min_epochs=MIN_EPOCHS,
                         eta=ETA, seed_balanced=False, save_weights=False, **changes)


# -- preloading a study fast ---------------------------------------------------------------------------

def synthetic_trials(n: int, *, seed: int, fidelity: str, start: datetime.datetime) -> list[Any]:
    """``n`` finished trials as a search with rungs at 1 and 3 leaves them: about 60% stopped at rung 1,
    20% at rung 3, 17% complete, 3% failed mid-training; genes, closed-form attributes, curves, rung
    results, stop reasons and the sampler's record as the objective and the sampler write them."""
    import optuna

    from igcnas.nas.budget import Budget
    from igcnas.nas.evolution import EVOLUTION_ATTR
    from igcnas.nas.objective import precheck
    from igcnas.nas.records import TrialKey, TrialStatus
    from igcnas.nas.space import gene_distributions
    from igcnas.search_space.genome import genome_for
    from igcnas.search_space.spec import SearchSpec

    spec = SearchSpec.for_data(in_channels=DATA.in_channels, input_size=DATA.input_size,
                               num_classes=DATA.num_classes)
    genome = genome_for(spec)
    distributions = gene_distributions(genome)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        params = genome.random_params(rng)
        pre = precheck(genome.decode(params), Budget())
        arch = pre.attrs[TrialKey.ARCH_ID]
        draw = rng.random()
        reached = 1 if draw < 0.6 else 3 if draw < 0.8 else EPOCHS if draw < 0.97 else rng.randint(1, EPOCHS - 1)
        curve = [synthetic_accuracy(arch, pre.params, e) for e in range(1, reached + 1)]
        attrs: dict[str, Any] = {str(k): v for k, v in pre.attrs.items()}
        attrs.update({TrialKey.FIDELITY: fidelity, TrialKey.CURVE: curve,
                      TrialKey.RUNGS: {str(e): curve[e - 1] for e in (1, 3) if e <= reached}})
        state, values = optuna.trial.TrialState.PRUNED, None
        if draw < 0.8:
            attrs.update({TrialKey.STATUS: TrialStatus.STOPPED_EARLY, TrialKey.STOPPED_AT_EPOCH: reached,
                          TrialKey.STOP_REASON: f"stopped at rung epoch {reached}: accuracy {curve[-1]:.4f} is "
                                                f"dominated by 5 of 40 trials at this rung (promotion needs <= 2)"})
        elif draw < 0.97:
            state, values = optuna.trial.TrialState.COMPLETE, [curve[-1], float(pre.params), float(pre.macs)]
            attrs.update({TrialKey.STATUS: TrialStatus.COMPLETE, TrialKey.EPOCHS: EPOCHS, TrialKey.DEVICE: "cpu",
                          TrialKey.PRECISION: "fp32", "fvcore_macs": pre.macs, "fvcore_total": pre.macs,
                          "fvcore_params": pre.params, "train_loss": 0.3, "train_seconds": 60.0,
                          "images_per_second": 1000.0})
        else:
            state = optuna.trial.TrialState.FAIL
            attrs.update({TrialKey.STATUS: TrialStatus.FAILED, TrialKey.FAIL_REASON: "RuntimeError: diverged"})
        parents = sorted(rng.sample(range(i), min(i, 2)))
        began = start + datetime.timedelta(seconds=60 * i)
        out.append(optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=distributions, user_attrs=attrs,
            system_attrs={EVOLUTION_ATTR: {"parents": parents, "stages": parents[:1] * genome.num_stages,
                                           "ops": ["crossover", "step_l(1,+1)"], "tries": 1}}))
        out[-1].datetime_start = began
        out[-1].datetime_complete = began + datetime.timedelta(seconds=10 * len(curve))
    return out


def bulk_add_trials(storage: Any, study_id: int, trials: list[Any]) -> None:
    """Write finished trials into an RDB study in one transaction, row for row what ``study.add_trials``
    writes (Optuna's own tables and representations), hundreds of times faster: benchmark set-up only."""
    import sqlalchemy
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    engine = storage.engine
    with engine.begin() as connection:
        first = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(models.TrialModel)
                                   .where(models.TrialModel.study_id == study_id)).scalar_one()
        table = models.TrialModel.__table__
        rows = [{"number": first + i, "study_id": study_id, "state": t.state, "datetime_start": t.datetime_start,
                 "datetime_complete": t.datetime_complete} for i, t in enumerate(trials)]
        ids = connection.execute(table.insert().returning(table.c.trial_id, sort_by_parameter_order=True),
                                 rows).scalars().all()
        values, params, user, system = [], [], [], []
        for trial_id, t in zip(ids, trials):
            for objective, value in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
            for name, value in t.params.items():
                distribution = t.distributions[name]
                params.append({"trial_id": trial_id, "param_name": name,
                               "param_value": distribution.to_internal_repr(value),
                               "distribution_json": distribution_to_json(distribution)})
            user.extend({"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in t.user_attrs.items())
            system.extend({"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                          for k, v in t.system_attrs.items())
        for model, batch in ((models.TrialValueModel, values), (models.TrialParamModel, params),
                             (models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
            if batch:
                connection.execute(model.__table__.insert(), batch)


def preload(url: str, study_name: str, n: int, *, seed: int = 0) -> float:
    """Create ``study_name`` with ``n`` synthetic finished trials; seconds taken."""
    from igcnas.nas.objectives import objectives_for
    from igcnas.nas.study import open_storage, open_study

    start = time.perf_counter()
    storage = open_storage(url, heartbeat=False)
    study = open_study(storage, study_name, create=True, objectives=objectives_for(latency=False))
    fidelity = search_options(url, study_name, tempfile.gettempdir()).fidelity
    for offset in range(0, n, 2000):  # in batches: bounded memory
        batch = synthetic_trials(min(2000, n - offset), seed=seed + offset, fidelity=fidelity,
                                 start=datetime.datetime(2025, 1, 1) + datetime.timedelta(minutes=offset))
        bulk_add_trials(storage, study._study_id, batch)
    storage.engine.dispose()
    return time.perf_counter() - start


# -- one worker: join, run, measure -----------------------------------------------------------------

class _Statements:
    """SQL statements this process sends, and the milliseconds they take, counted on the engine."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = self.selects = 0
        self.seconds = 0.0
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()
        self.count += 1
        self.selects += statement.lstrip()[:6].upper() == "SELECT"

    def _after(self, conn: Any, cursor: Any, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())


class Worker:
    """One search worker with synthetic trials, as ``igc-nas search`` runs one with the Optuna backend.

    :meth:`join` is ``prepare`` plus what ``OptunaBackend.run`` sets up (which would import torch only to
    set its thread count); :meth:`run` is its ``study.optimize``, callable again and again (the size
    measurement alternates studies trial by trial). Every finished trial appends a cycle: its whole
    time, ask to tell, and what of it was sleep, SQL statements, database time and trials re-read.
    """

    def __init__(self, url: str, study_name: str, output_dir: str, *, training: SyntheticTraining,
                 full_scan: bool = False) -> None:
        self.options = search_options(url, study_name, output_dir, n_trials=10**6)
        self.training, self.full_scan = training, full_scan
        self.cycles: list[dict[str, Any]] = []

    def join(self) -> Worker:
        from igcnas.nas import population
        from igcnas.nas.backends import optuna_backend
        from igcnas.nas.orchestrator import prepare

        population.FULL_SCAN = self.full_scan
        began = time.perf_counter()
        prep = self.prep = prepare(self.options)
        self.prepare_s = time.perf_counter() - began
        engine = getattr(prep.storage, "engine", None)
        self.statements = _Statements(engine) if engine is not None else None
        self.reread = 0
        if hasattr(prep.storage, "_get_trials"):  # count the trials each incremental read brings back
            inner = prep.storage._get_trials

            def counted(*args: Any, **kwargs: Any) -> Any:
                out = inner(*args, **kwargs)
                self.reread += len(out)
                return out

            prep.storage._get_trials = counted
        self.stopper = optuna_backend._StopAfter(self.options.n_trials, len(prep.earlier), total=None)
        prep.study.sampler = prep.sampler()
        objective = optuna_backend.make_objective(prep)
        self.first_call: float | None = None

        def stamped(trial: Any) -> Any:
            if self.first_call is None:
                self.first_call = time.perf_counter()
            return objective(trial)

        self.objective = stamped
        self._last = self._marks(time.perf_counter())
        return self

    def _marks(self, now: float) -> tuple[float, int, int, float, int, float]:
        count, selects = (self.statements.count, self.statements.selects) if self.statements else (0, 0)
        return (now, count, selects, self.statements.seconds if self.statements else 0.0, self.reread,
                time.process_time())

    def _record(self, study: Any, trial: Any) -> None:
        marks = self._marks(time.perf_counter())
        last = self._last
        self.cycles.append({"number": trial.number, "end": time.time(), "cycle_s": marks[0] - last[0],
                            "slept_s": self.training.slept, "statements": marks[1] - last[1],
                            "selects": marks[2] - last[2], "db_s": marks[3] - last[3], "reread": marks[4] - last[4],
                            "cpu_s": marks[5] - last[5], "status": trial.user_attrs.get("status")})
        self.training.slept = 0.0
        self._last = marks

    def run(self, n_trials: int | None = None, timeout: float | None = None) -> None:
        import optuna

        from igcnas.nas import population

        population.FULL_SCAN = self.full_scan
        self.training.slept = 0.0
        self._last = self._marks(time.perf_counter())
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.prep.study.optimize(self.objective, n_trials=n_trials, timeout=timeout, n_jobs=1, catch=(Exception,),
                                 callbacks=[self.stopper, self._record], gc_after_trial=False)

    def finish(self) -> float:
        """Seconds the output writers take (trials.csv, pareto.csv, summary.json)."""
        from igcnas.nas.orchestrator import finish

        began = time.perf_counter()
        finish(self.prep, self.stopper.report)
        return time.perf_counter() - began


def _child(args: argparse.Namespace) -> int:
    """``--child PATH``: the size measurement (a) in a process of its own, as PATH (JSON) describes it.

    Every study (a copy per size and mode, each with its own storage object: nothing is shared or
    already read) is joined, one after the other, and gets one trial (its first builds this process's
    view of the study); then the studies take turns, one trial each, so that all of them see the same
    machine load; at the end each writes its outputs (``finish``)."""
    import optuna  # noqa: F401  (imports, which do not grow with the study, are not part of a join)

    import igcnas.nas.orchestrator  # noqa: F401

    spec = json.loads(Path(args.child).read_text())
    training = SyntheticTraining(spec["trial_seconds"])
    stand_in_for_training(training)
    warm = spec["warmup"]  # a first study, not reported: what a process does once whatever the study's size
    Worker(warm["url"], warm["study_name"], warm["output_dir"], training=training).join().run(n_trials=2)
    workers, joins = [], []
    for entry in spec["entries"]:
        began = time.perf_counter()
        worker = Worker(entry["url"], entry["study_name"], entry["output_dir"], training=training,
                        full_scan=entry["full_scan"]).join()
        worker.run(n_trials=1)
        joins.append({"join_s": (worker.first_call or math.nan) - began, "prepare_s": worker.prepare_s})
        workers.append(worker)
    limits = [e["trials"] for e in spec["entries"]]
    for _ in range(max(limits)):
        for worker, limit in zip(workers, limits):
            if len(worker.cycles) < limit:
                worker.run(n_trials=1)
    finishes = [worker.finish() for worker in workers]
    result = {"cycles": [w.cycles for w in workers], "joins": joins, "finish_s": finishes}
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def _run_child(work: Path, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec, out=str(work / f"{name}.out.json"))
    path = work / f"{name}.json"
    path.write_text(json.dumps(spec))
    subprocess.run([sys.executable, __file__, "--child", str(path)], check=True)
    return json.loads(Path(spec["out"]).read_text())


# -- (a) study size ------------------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def measure_size(work: Path, sizes: list[int], *, trials: int, full_scan_trials: int, trial_seconds: float
                 ) -> list[dict[str, Any]]:
    """Per size and mode, on copies of one preloaded file, in one child process (see ``_child``). The first
    trial of each study is reported apart (``first_trial_ms``), not in the per-trial medians."""
    entries, preloads = [], {}
    for size in sizes:
        base = work / f"size{size}.db"
        preloads[size] = preload(f"sqlite:///{base}", "scale", size)
        for mode in ("incremental", "full_scan"):
            shutil.copy(base, work / f"size{size}-{mode}.db")
            entries.append({"size": size, "mode": mode, "url": f"sqlite:///{work / f'size{size}-{mode}.db'}",
                            "study_name": "scale", "output_dir": str(work / f"out-{size}-{mode}"),
                            "full_scan": mode == "full_scan",
                            "trials": 1 + (trials if mode == "incremental" else min(trials, full_scan_trials))})
    warmup = {"url": f"sqlite:///{work / 'warmup.db'}", "study_name": "warmup", "output_dir": str(work / "warmup")}
    result = _run_child(work, "size", {"entries": entries, "warmup": warmup, "trial_seconds": trial_seconds})
    rows = []
    for entry, cycles, join, finish_s in zip(entries, result["cycles"], result["joins"], result["finish_s"]):
        first, measured = cycles[0], cycles[1:]
        overhead = [1000 * (c["cycle_s"] - c["slept_s"]) for c in measured]
        rows.append({
            "size": entry["size"], "mode": entry["mode"], "preload_s": round(preloads[entry["size"]], 2),
            "trials": len(measured), "join_s": round(join["join_s"], 3), "prepare_s": round(join["prepare_s"], 3),
            "first_trial_ms": round(1000 * (first["cycle_s"] - first["slept_s"]), 1), "finish_s": round(finish_s, 3),
            "per_trial_overhead_ms": round(_median(overhead), 1),
            "per_trial_overhead_mean_ms": round(statistics.fmean(overhead), 1) if overhead else None,
            "statements_per_trial": round(_median([c["statements"] for c in measured]), 1),
            "selects_per_trial": round(_median([c["selects"] for c in measured]), 1),
            "db_ms_per_trial": round(1000 * _median([c["db_s"] for c in measured]), 1),
            "trials_reread_per_trial": round(_median([c["reread"] for c in measured]), 1),
            "worker_cpu_ms_per_trial": round(1000 * _median([c["cpu_s"] for c in measured]), 1),
            "stopped_early": sum(c["status"] == "stopped_early" for c in measured),
        })
        print(_size_line(rows[-1]), flush=True)
    return rows


def _size_line(row: dict[str, Any]) -> str:
    return (f"{row['size']:>7,} {row['mode']:<12}{row['trials']:>5}{row['per_trial_overhead_ms']:>10.1f}"
            f"{row['statements_per_trial']:>8.0f}{row['db_ms_per_trial']:>8.1f}{row['worker_cpu_ms_per_trial']:>8.0f}"
            f"{row['trials_reread_per_trial']:>8.0f}{row['join_s']:>9.2f}{row['first_trial_ms']:>10.0f}"
            f"{row['finish_s']:>9.2f}")


SIZE_HEADER = (f"{'trials':>7} {'mode':<12}{'ran':>5}{'ms/trial':>10}{'SQL/tr':>8}{'db ms':>8}{'cpu ms':>8}"
               f"{'reread':>8}{'join s':>9}{'1st ms':>10}{'finish s':>9}")


# -- (b) worker count ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_available() -> bool:
    from igcnas.nas.study import database_reachable

    return database_reachable(PG_URL)


def storage_kinds(requested: list[str], work: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The storages to measure: kind -> {url workers use, url to create studies on}; and why others are not."""
    from igcnas.nas import study as study_module

    kinds: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    pg = postgres_available()
    has_kind = hasattr(study_module, "storage_kind")
    for kind in requested:
        if kind == "sqlite":
            kinds[kind] = {"url": f"sqlite:///{work / 'workers.db'}"}
        elif kind == "postgresql":
            if pg:
                kinds[kind] = {"url": PG_URL}
            else:
                skipped[kind] = "PostgreSQL on 127.0.0.1 not available (.ci/postgres-up starts it)"
        elif kind == "journal":
            if has_kind and study_module.storage_kind("journal:///x") == "journal":
                kinds[kind] = {"url": f"journal://{work / 'workers.log'}"}
            else:
                skipped[kind] = "open_storage does not take journal:/// URLs in this checkout"
        elif kind == "grpc":
            if not (has_kind and hasattr(study_module, "serve_storage_proxy")):
                skipped[kind] = "no igc-nas storage-proxy in this checkout"
            elif not pg:
                skipped[kind] = "the proxy is measured over PostgreSQL, which is not available"
            else:
                kinds[kind] = {"url": None, "backend": PG_URL}
    return kinds, skipped


class _Proxy:
    """``igc-nas storage-proxy`` over a database, as its own process (ended by its id)."""

    def __init__(self, backend_url: str) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "storage-proxy", "--storage", backend_url,
                                         "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        line = self.process.stderr.readline() if self.process.stderr else ""
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"storage proxy did not start: {line.strip()}")
        self.url = f"grpc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _forked_worker(spec: dict[str, Any]) -> None:
    """A worker process of (b), forked from this interpreter: joins, says so (``ready``), waits for the
    common start and stop times (``go``), runs; its cycles (or its error) go to ``out``."""
    try:
        training = SyntheticTraining(spec["trial_seconds"], constant=True)
        stand_in_for_training(training)
        worker = Worker(spec["url"], spec["study_name"], spec["output_dir"], training=training).join()
        Path(spec["ready"]).write_text("ready")
        go = Path(spec["go"])
        while not go.exists():
            time.sleep(0.05)
        times = json.loads(go.read_text())
        time.sleep(max(0.0, times["start_at"] - time.time()))
        worker.run(timeout=max(0.1, times["stop_at"] - time.time()))
        result: dict[str, Any] = {"cycles": worker.cycles}
    except BaseException as exc:  # reported by the parent, which reads the file
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(spec["out"]).write_text(json.dumps(result))


def measure_workers(work: Path, requested: list[str], counts: list[int], *, trial_seconds: float, window: float,
                    warmup: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
    from igcnas.nas.objectives import objectives_for
    from igcnas.nas.study import open_storage, open_study

    kinds, skipped = storage_kinds(requested, work)
    rows: list[dict[str, Any]] = []
    import igcnas.evaluators.data  # noqa: F401  (imports torch once, before the workers are forked)

    context = multiprocessing.get_context("fork")  # the workers start from this interpreter's imports
    for kind, where in kinds.items():
        proxy = _Proxy(where["backend"]) if kind == "grpc" else None
        try:
            url = proxy.url if proxy else where["url"]
            create_url = where.get("backend", url)
            base_rate = None
            for workers in counts:
                name = f"scale-{kind}-{workers}-{uuid.uuid4().hex[:8]}"
                storage = open_storage(create_url, heartbeat=False)
                open_study(storage, name, create=True, objectives=objectives_for(latency=False))
                if hasattr(storage, "engine"):
                    storage.engine.dispose()  # no pooled connection may cross the fork
                del storage
                folder = work / f"workers-{kind}-{workers}"
                folder.mkdir()
                ready = [folder / f"ready{i}" for i in range(workers)]
                go = folder / "go.json"
                processes = []
                for i in range(workers):
                    spec = {"url": url, "study_name": name, "output_dir": str(folder), "trial_seconds": trial_seconds,
                            "ready": str(ready[i]), "go": str(go), "out": str(folder / f"worker{i}.json")}
                    process = context.Process(target=_forked_worker, args=(spec,))
                    process.start()
                    processes.append(process)
                deadline = time.time() + 300
                while not all(r.exists() for r in ready) and time.time() < deadline:
                    if any(p.exitcode not in (None, 0) for p in processes):
                        break
                    time.sleep(0.2)
                start_at = time.time() + 1.0
                stop_at = start_at + warmup + window
                go.write_text(json.dumps({"start_at": start_at, "stop_at": stop_at}))
                for process in processes:
                    process.join(timeout=window + warmup + 120)
                    if process.is_alive():
                        process.kill()
                results = [json.loads((folder / f"worker{i}.json").read_text())
                           if (folder / f"worker{i}.json").exists() else {"error": "no result"} for i in range(workers)]
                errors = [r["error"] for r in results if "error" in r]
                cycles = [c for r in results if "cycles" in r for c in r["cycles"]]
                begin = start_at + warmup
                counted = [c for c in cycles if begin <= c["end"] <= stop_at]
                # A trial counts by the share of its cycle inside the window: no rounding to whole trials.
                rate = sum(max(0.0, min(c["end"], stop_at) - max(c["end"] - c["cycle_s"], begin)) / c["cycle_s"]
                           for c in cycles if c["cycle_s"] > 0) / window
                if workers == counts[0] and workers == 1:
                    base_rate = rate
                overhead = [1000 * (c["cycle_s"] - c["slept_s"]) for c in counted]
                row = {"storage": kind, "workers": workers, "trials_in_window": len(counted), "window_s": window,
                       "trials_per_s": round(rate, 3),
                       "scaling_efficiency": round(rate / (workers * base_rate), 3) if base_rate else None,
                       "per_trial_overhead_ms": round(_median(overhead), 1),
                       "statements_per_trial": round(_median([c["statements"] for c in counted]), 1),
                       "db_ms_per_trial": round(1000 * _median([c["db_s"] for c in counted]), 1),
                       "trials_reread_per_trial": round(_median([c["reread"] for c in counted]), 1),
                       "worker_cpu_ms_per_trial": round(1000 * _median([c["cpu_s"] for c in counted]), 1),
                       "load_average_after": round(os.getloadavg()[0], 1), "errors": errors[:3]}
                rows.append(row)
                print(_worker_line(row), flush=True)
                _drop_study(create_url, name)
        finally:
            if proxy:
                proxy.stop()
    return rows, skipped


def _drop_study(url: str, name: str) -> None:
    import optuna

    from igcnas.nas.study import open_storage

    try:
        storage = open_storage(url, heartbeat=False)
        optuna.delete_study(study_name=name, storage=storage)
        if hasattr(storage, "engine"):
            storage.engine.dispose()
    except Exception as exc:  # a leftover study in a scratch database is harmless
        print(f"note: study {name} not deleted: {exc}", file=sys.stderr)


def _worker_line(row: dict[str, Any]) -> str:
    eff = row["scaling_efficiency"]
    return (f"{row['storage']:<11}{row['workers']:>8}{row['trials_in_window']:>8}{row['trials_per_s']:>10.2f}"
            f"{(f'{eff:.2f}' if eff is not None else '-'):>8}{row['per_trial_overhead_ms']:>10.1f}"
            f"{row['statements_per_trial']:>8.0f}{row['db_ms_per_trial']:>8.1f}{row['worker_cpu_ms_per_trial']:>8.0f}"
            f"{row['trials_reread_per_trial']:>8.0f}" + (f"  errors: {row['errors']}" if row["errors"] else ""))


WORKER_HEADER = (f"{'storage':<11}{'workers':>8}{'trials':>8}{'trials/s':>10}{'eff':>8}{'ms/trial':>10}{'SQL/tr':>8}"
                 f"{'db ms':>8}{'cpu ms':>8}{'reread':>8}")


# -- main ----------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes and counts (< 1 minute)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--sizes", help="preloaded trials, comma-separated (default 0,1000,10000)")
    parser.add_argument("--trials", type=int, help="trials per size and mode (default 20)")
    parser.add_argument("--full-scan-trials", type=int, default=3,
                        help="at most this many trials in full-scan mode (its rung checks grow as n^2)")
    parser.add_argument("--size-sleep", type=float, default=0.0, help="sleep per synthetic trial in (a), s")
    parser.add_argument("--workers", help="worker counts, comma-separated (default 1,2,4,8,16,32)")
    parser.add_argument("--storages", help="sqlite,postgresql,journal,grpc (default all; --quick: sqlite,postgresql)")
    parser.add_argument("--trial-seconds", type=float, default=1.0, help="sleep per synthetic trial in (b)")
    parser.add_argument("--window", type=float, help="seconds of each worker-count measurement (default 8)")
    parser.add_argument("--ray-concurrency", help="concurrent Ray trials, comma-separated (default 1,2,4)")
    parser.add_argument("--ray-trials-per-slot", type=int, help="trials per concurrent slot in (c) (default 6)")
    parser.add_argument("--only", choices=("all", "size", "workers", "ray"), default="all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ray-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    if args.ray_child:
        return _ray_child(args)
    sizes = [int(s) for s in (args.sizes or ("0,200" if args.quick else "0,1000,10000")).split(",")]
    trials = args.trials or (3 if args.quick else 20)
    counts = [int(s) for s in (args.workers or ("1,2" if args.quick else "1,2,4,8,16,32")).split(",")]
    window = args.window or (2.0 if args.quick else 8.0)
    warmup = 1.0 if args.quick else 2.0
    storages = args.storages or ("sqlite,postgresql" if args.quick else "sqlite,postgresql,journal,grpc")
    requested = storages.split(",")
    work = Path(tempfile.mkdtemp(prefix="igcnas-scale-"))
    result: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "epochs": EPOCHS, "rungs": [1, 3],
                              "sizes": sizes, "trials_per_size": trials,
                              "load_average_at_start": round(os.getloadavg()[0], 1)}
    try:
        if args.only in ("all", "size"):
            print("(a) per-trial orchestration against study size (SQLite; one process joins every copy, then "
                  f"the copies take turns trial by trial; sleep {args.size_sleep:g} s, excluded)")
            print(SIZE_HEADER, flush=True)
            rows = measure_size(work, sizes, trials=trials, full_scan_trials=args.full_scan_trials,
                                trial_seconds=args.size_sleep)
            result["size"] = rows
            result["size_ratios"] = size_ratios(rows, sizes)
            for line in result["size_ratios"]["lines"]:
                print(line)
        if args.only in ("all", "workers"):
            print(f"\n(b) trials per second against worker processes ({args.trial_seconds:g} s synthetic trials, "
                  f"{window:g} s window after {warmup:g} s warm-up, {os.cpu_count()} CPUs)")
            print(WORKER_HEADER, flush=True)
            rows, skipped = measure_workers(work, requested, counts, trial_seconds=args.trial_seconds,
                                            window=window, warmup=warmup)
            result["workers"], result["workers_skipped"] = rows, skipped
            for kind, why in skipped.items():
                print(f"{kind}: skipped ({why})")
            result["worker_goals"] = worker_goals(rows)
            for line in result["worker_goals"]["lines"]:
                print(line)
        if args.only in ("all", "ray"):
            concurrency = [int(c) for c in (args.ray_concurrency or ("1,2" if args.quick else "1,2,4")).split(",")]
            print(f"\n(c) the same search on a loopback Ray cluster ({args.trial_seconds:g} s synthetic trials, "
                  "SQLite, no early stopping)", flush=True)
            result["ray"] = measure_ray(work, concurrency, trial_seconds=args.trial_seconds,
                                        trials_per_slot=args.ray_trials_per_slot or (2 if args.quick else 6))
            if "skipped" in result["ray"]:
                print(f"ray: skipped ({result['ray']['skipped']})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def size_ratios(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """per_trial_overhead_ms at the largest size over the next one, per mode; and full scan over incremental."""
    by = {(r["size"], r["mode"]): r["per_trial_overhead_ms"] for r in rows}
    out: dict[str, Any] = {"lines": []}
    if len(sizes) >= 2:
        big, ref = sizes[-1], sizes[-2]
        for mode in ("incremental", "full_scan"):
            ratio = by[(big, mode)] / by[(ref, mode)] if by.get((ref, mode)) else math.nan
            out[f"{mode}_{big}_over_{ref}"] = round(ratio, 2)
            goal = mode == "incremental" and (ref, big) == (1000, 10_000)  # the goal is stated for these sizes
            out["lines"].append(f"{mode}: per-trial overhead at {big:,} trials / at {ref:,}: {ratio:.2f}x"
                                + (f" (goal <= {GOAL_SIZE_RATIO}x: {'met' if ratio <= GOAL_SIZE_RATIO else 'not met'})"
                                   if goal else ""))
            if goal:
                out["goal_met"] = ratio <= GOAL_SIZE_RATIO
    for size in sizes:
        if by.get((size, "incremental")):
            ratio = by[(size, "full_scan")] / by[(size, "incremental")]
            out[f"full_scan_over_incremental_{size}"] = round(ratio, 2)
            out["lines"].append(f"at {size:,} trials: full scan / incremental per-trial overhead {ratio:.2f}x")
    return out


# -- (c) the loopback Ray cluster ----------------------------------------------------------------------

def synthetic_trainable_for(seconds: float) -> Any:
    """The project's Ray trainable with its evaluation replaced by :class:`SyntheticTraining`, in the Ray worker.

    Defined here (``__main__`` of a ``--ray-child`` process), so cloudpickle ships it to the workers by
    value, with :class:`SyntheticTraining`: no file of this benchmark needs to be importable there.
    """
    def synthetic_trainable(config: dict[str, Any]) -> None:
        import igcnas.nas.objective as objective
        from igcnas.nas.backends import ray_parts

        objective.evaluate_config = SyntheticTraining(seconds, constant=True)  # type: ignore[assignment]
        ray_parts.trainable(config)

    return synthetic_trainable


def _ray_child(args: argparse.Namespace) -> int:
    """``--ray-child PATH``: one synthetic Ray search (the driver), as PATH (JSON) describes it."""
    import igcnas.nas.backends.ray_backend as ray_backend
    from igcnas.nas.orchestrator import run_search

    spec = json.loads(Path(args.ray_child).read_text())
    stand_in_for_training(SyntheticTraining(spec["trial_seconds"], constant=True))
    ray_backend.trainable = synthetic_trainable_for(spec["trial_seconds"])  # type: ignore[assignment]
    options = search_options(spec["url"], spec["study_name"], spec["output_dir"], backend="ray",
                             address=spec["address"], n_trials=spec["n_trials"], max_concurrent=spec["concurrency"],
                             early_stopping=False)
    began = time.time()
    run_search(options)
    Path(spec["out"]).write_text(json.dumps({"wall_s": time.time() - began}))
    return 0


def measure_ray(work: Path, concurrency: list[int], *, trial_seconds: float, trials_per_slot: int
                ) -> dict[str, Any]:
    """(c): one loopback cluster (head and a worker node, ``max(concurrency) / 2`` logical CPUs each)."""
    import optuna

    try:
        from tests.nas.conftest import LOOPBACK_ENV, LoopbackCluster
    except ImportError as exc:
        return {"skipped": f"the loopback cluster helper (tests/nas/conftest.py) cannot be imported: {exc}"}
    cpus = max(1, -(-max(concurrency) // 2))
    cluster = LoopbackCluster(work / "ray")
    (work / "ray").mkdir()
    rows: list[dict[str, Any]] = []
    try:
        cluster.start_head(f"--num-cpus={cpus}")
        cluster.add_worker(f"--num-cpus={cpus}")
        base = None
        for c in concurrency:
            name = f"ray-{c}"
            folder = work / name
            folder.mkdir()
            url = f"sqlite:///{folder / 'study.db'}"
            spec = {"url": url, "study_name": name, "output_dir": str(folder), "address": cluster.address,
                    "trial_seconds": trial_seconds, "n_trials": trials_per_slot * c + c, "concurrency": c,
                    "out": str(folder / "out.json")}
            (folder / "spec.json").write_text(json.dumps(spec))
            subprocess.run([sys.executable, __file__, "--ray-child", str(folder / "spec.json")], check=True,
                           env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.DEVNULL)
            trials = [t for t in optuna.load_study(study_name=name, storage=url).trials
                      if t.state == optuna.trial.TrialState.COMPLETE]
            ends = sorted(t.datetime_complete.timestamp() for t in trials)
            # Rate between the c-th completion (every slot has finished a trial) and the last one.
            span = ends[-1] - ends[c - 1] if len(ends) > c else math.nan
            rate = (len(ends) - c) / span if span and span > 0 else math.nan
            if c == concurrency[0] == 1:
                base = rate
            overhead = [1000 * ((t.datetime_complete - t.datetime_start).total_seconds() - trial_seconds)
                        for t in trials]
            row = {"concurrency": c, "trials": len(trials), "trials_per_s": round(rate, 3),
                   "ideal_trials_per_s": round(c / trial_seconds, 3),
                   "efficiency_vs_ideal": round(rate / (c / trial_seconds), 3),
                   "scaling_efficiency": round(rate / (c * base), 3) if base else None,
                   "per_trial_overhead_ms": round(_median(overhead), 1),
                   "wall_s": round(json.loads(Path(spec["out"]).read_text())["wall_s"], 1),
                   "load_average_after": round(os.getloadavg()[0], 1)}
            rows.append(row)
            print(f"ray     {c:>3} concurrent  {row['trials_per_s']:>7.3f} trials/s  ideal {row['ideal_trials_per_s']:>6.3f}  "
                  f"efficiency vs ideal {row['efficiency_vs_ideal']:.2f}  vs 1 trial "
                  f"{row['scaling_efficiency'] if row['scaling_efficiency'] is not None else float('nan'):.2f}  "
                  f"overhead {row['per_trial_overhead_ms']:.0f} ms/trial  ({len(trials)} trials, {row['wall_s']:.0f} s)",
                  flush=True)
    finally:
        cluster.stop()
    return {"nodes": 2, "cpus_per_node": cpus, "rows": rows}


def worker_goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": []}
    for kind in ("postgresql", "grpc"):
        at8 = [r for r in rows if r["storage"] == kind and r["workers"] == 8]
        if at8 and at8[0]["scaling_efficiency"] is not None:
            eff = at8[0]["scaling_efficiency"]
            out[f"{kind}_8_workers"] = eff
            out["lines"].append(f"{kind}: scaling efficiency at 8 workers {eff:.2f} "
                                f"(goal >= {GOAL_EFFICIENCY}: {'met' if eff >= GOAL_EFFICIENCY else 'not met'})")
    return out


if __name__ == "__main__":
    sys.exit(main())
