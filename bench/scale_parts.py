"""What the scale benchmark's parts share (``bench/scale.py`` runs them): the synthetic trial, a fast
preload of finished trials, one measured search worker and its SQL counter, and the constants.

A synthetic trial trains nothing (no data is loaded): it sleeps where training would run and does
everything else a search does, through the project's own code. It reaches the search through the seams
``prepare`` has for it (``data=DATA``, ``evaluate=SyntheticTraining(...)``): nothing is patched.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import random
import re
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Any

PG_URL = os.environ.get("IGCNAS_TEST_POSTGRES", "postgresql+psycopg2://igcnas:igcnas@127.0.0.1:5432/igcnas")
EPOCHS, MIN_EPOCHS, ETA = 9, 1, 3  # rungs at epochs 1 and 3
DATA = types.SimpleNamespace(in_channels=1, input_size=8, num_classes=10, name="synthetic")  # digits' shape
GOAL_SIZE_RATIO, GOAL_EFFICIENCY = 1.5, 0.8
COMMAND = Path(__file__).with_name("scale.py")  # the command; its child processes run it again


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


# -- the synthetic trial -------------------------------------------------------------------------------

def synthetic_accuracy(arch: str, params: int, epoch: int) -> float:
    """Validation accuracy after ``epoch`` epochs: larger networks do better with diminishing returns, each
    architecture has its own fixed offset, and the curve rises over the epochs."""
    offset = int(hashlib.blake2b(arch.encode(), digest_size=4).hexdigest(), 16) / 2**32 - 0.5
    final = 0.55 + 0.4 * (1.0 - math.exp(-params / 40_000)) + 0.08 * offset
    return round(min(0.999, final * (1.0 - 0.4 * math.exp(-epoch / 2.0))), 4)


class SyntheticTraining:
    """Stands in for ``igcnas.nas.trial_evaluation.evaluate_config``: same arguments, same result and attributes,
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
        from igcnas.nas.trial_evaluation import precheck
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
        evaluation.attrs.update({TrialKey.FVCORE_MACS: evaluation.macs, TrialKey.FVCORE_TOTAL: evaluation.macs,
                                 TrialKey.FVCORE_PARAMS: evaluation.params})
        evaluation.val_accuracy = curve[-1]
        evaluation.status = TrialStatus.COMPLETE
        evaluation.attrs.update({TrialKey.CURVE: curve,
                                 TrialKey.TRAIN_LOSS: [round(2.3 * (1.0 - a), 4) for a in curve],
                                 TrialKey.EPOCHS: len(curve),
                                 TrialKey.TRAIN_SECONDS: round(time.perf_counter() - start, 3),
                                 TrialKey.IMAGES_PER_SECOND: 1000.0})
        return evaluation


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
    from igcnas.nas.trial_evaluation import precheck
    from igcnas.nas.records import RECORD_ATTR, SystemKey, TrialKey, TrialStatus, check_record
    from igcnas.nas.gene_suggestions import gene_distributions
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
                          TrialKey.PRECISION: "fp32", TrialKey.FVCORE_MACS: pre.macs,
                          TrialKey.FVCORE_TOTAL: pre.macs, TrialKey.FVCORE_PARAMS: pre.params,
                          TrialKey.TRAIN_LOSS: [0.3] * EPOCHS, TrialKey.TRAIN_SECONDS: 60.0,
                          TrialKey.IMAGES_PER_SECOND: 1000.0})
        else:
            state = optuna.trial.TrialState.FAIL
            attrs.update({TrialKey.STATUS: TrialStatus.FAILED, TrialKey.FAIL_REASON: "RuntimeError: diverged"})
        parents = sorted(rng.sample(range(i), min(i, 2)))
        began = start + datetime.timedelta(seconds=60 * i)
        out.append(optuna.trial.create_trial(
            state=state, values=values, params=params, distributions=distributions,
            user_attrs={RECORD_ATTR: check_record(attrs)},
            system_attrs={SystemKey.EVOLUTION: {"parents": parents, "stages": parents[:1] * genome.num_stages,
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

def import_worker_modules() -> None:
    """Import what a :class:`Worker` imports to join and run trials (torch is not among them: a synthetic
    trial builds no network), so that processes forked afterwards start with them."""
    import optuna  # noqa: F401
    import pandas  # noqa: F401

    import igcnas.evaluators.datasets  # noqa: F401
    import igcnas.nas.backends.optuna_backend  # noqa: F401
    import igcnas.nas.evolution  # noqa: F401
    import igcnas.nas.orchestrator  # noqa: F401
    import igcnas.nas.pareto  # noqa: F401
    import igcnas.nas.population  # noqa: F401
    import igcnas.nas.samplers  # noqa: F401


# Optuna's RDB storage reads whole trials (a study's trials, or the new and unfinished ones) and then
# loads their values with one ``IN`` list of the trial ids the read brought back; a single trial (a
# write's look-up, ``get_trial``) is read by ``= ?`` instead.
_WHOLE_TRIALS_READ = re.compile(r"FROM trial_values\s+WHERE trial_values\.trial_id IN \(", re.IGNORECASE)


class Statements:
    """SQL statements this process sends on ``engine``, the milliseconds they take, and the trials they
    re-read (``reread``: trials brought back by reads of whole trials, each counted once per read; the
    length of the ids list those reads bind). SQLAlchemy's cursor events only: nothing is patched."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = self.selects = self.reread = 0
        self.seconds = 0.0
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()
        self.count += 1
        self.selects += statement.lstrip()[:6].upper() == "SELECT"

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())
        if _WHOLE_TRIALS_READ.search(statement):
            self.reread += len(parameters)


class Worker:
    """One search worker with synthetic trials, as ``igc-nas search`` runs one with the Optuna backend.

    :meth:`join` is ``prepare`` (given the synthetic data set and training) plus what ``OptunaBackend.run``
    sets up (which would import torch only to set its thread count); :meth:`run` is its
    ``study.optimize``, callable again and again (the size measurement alternates studies trial by
    trial). Every finished trial appends a cycle: its whole time, ask to tell, and what of it was sleep,
    SQL statements, database time and trials re-read.
    """

    def __init__(self, url: str, study_name: str, output_dir: str, *, training: SyntheticTraining) -> None:
        self.options = search_options(url, study_name, output_dir, n_trials=10**6)
        self.training = training
        self.cycles: list[dict[str, Any]] = []

    def join(self) -> Worker:
        from igcnas.nas.backends import optuna_backend
        from igcnas.nas.orchestrator import prepare

        began = time.perf_counter()
        prep = self.prep = prepare(self.options, data=DATA, evaluate=self.training)
        self.prepare_s = time.perf_counter() - began
        engine = getattr(prep.storage, "engine", None)
        self.statements = Statements(engine) if engine is not None else None
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
        s = self.statements
        return (now, s.count if s else 0, s.selects if s else 0, s.seconds if s else 0.0, s.reread if s else 0,
                time.process_time())

    def _record(self, study: Any, trial: Any) -> None:
        from igcnas.nas.records import TrialKey, record_of

        marks = self._marks(time.perf_counter())
        last = self._last
        self.cycles.append({"number": trial.number, "end": time.time(), "cycle_s": marks[0] - last[0],
                            "slept_s": self.training.slept, "statements": marks[1] - last[1],
                            "selects": marks[2] - last[2], "db_s": marks[3] - last[3], "reread": marks[4] - last[4],
                            "cpu_s": marks[5] - last[5], "status": record_of(trial.user_attrs).get(TrialKey.STATUS)})
        self.training.slept = 0.0
        self._last = marks

    def run(self, n_trials: int | None = None, timeout: float | None = None) -> None:
        import optuna

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
