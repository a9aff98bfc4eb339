"""Refining a study's finalists: the front retrained longer, with several seeds, recorded beside the search.

The search ranks networks by a short training (its ``--epochs``, rungs on the way); what a user deploys is
trained for longer. ``igc-nas refine`` takes the finalists -- the search's feasible Pareto front, within a
budget, the ``top`` most accurate by the search's own figure -- and trains each again from scratch for
``epochs`` with every seed in ``seeds``, on the search's own data split and training settings. Each
(finalist, epochs, seed) is one *unit*; its result is one study attribute (``StudyKey.REFINED``), never a
write to the trial, so the search-time values stay as they were and two workers never write the same key.

Workers share the units through the storage alone: a worker claims a unit (``StudyKey.REFINING``: owner and
last beat), beats while it trains, writes the result. A claim not renewed within the grace period is taken
over; a run started again skips what is done (resumable). Storages have no compare-and-set on study
attributes, so two workers claiming at once both write; after a short settle only the last writer trains
(were both to proceed, they would write the same seeded result).

Readers (``trials_frame``, ``pick``, the dashboard) take a trial's accuracy at the highest fidelity it has:
the mean over seeds at its longest refined training, the search's figure otherwise (:func:`refined_results`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from igcnas.errors import BadInput
from igcnas.nas.budget import Budget
from igcnas.nas.records import StudyKey, refine_key
from igcnas.nas.refined import Refined, refined_results

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_SEEDS", "DEFAULT_TOP", "Unit", "Refined", "RefineJob", "RefineReport",
           "Claims", "finalists", "plan_job", "parse_seeds", "refined_results", "train_unit", "record_result",
           "refine_here", "pending_units"]

log = logging.getLogger(__name__)

# Defaults of `igc-nas refine`. 30 epochs: on digits 40 networks trained that long all ended at 0.983-1.000
# validation accuracy (issue 21), near convergence; three seeds give a mean and a spread.
DEFAULT_EPOCHS = 30
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_TOP = 5
# After writing a claim, how long a worker waits before reading it back: a worker that claimed the same
# unit at the same moment has written by then, and only the last writer trains.
SETTLE_S = 0.5


@dataclass(frozen=True, order=True)
class Unit:
    """One training of a finalist: trial ``trial`` for ``epochs`` epochs with seed ``seed``."""

    trial: int
    epochs: int
    seed: int

    @property
    def result_key(self) -> str:
        return refine_key(StudyKey.REFINED, self.trial, self.epochs, self.seed)

    @property
    def claim_key(self) -> str:
        return refine_key(StudyKey.REFINING, self.trial, self.epochs, self.seed)


def parse_seeds(raw: str, flag: str = "--seeds") -> tuple[int, ...]:
    """``0,1,2`` as distinct non-negative seeds."""
    try:
        seeds = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise BadInput(f"{flag} must be comma-separated non-negative integers (0,1,2), got {raw!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise BadInput(f"{flag} must be comma-separated distinct non-negative integers (0,1,2), got {raw!r}")
    return seeds


def finalists(df: Any, budget: Budget, top: int) -> Any:
    """The ``top`` most accurate trials by the search's own accuracy on its feasible front, within ``budget``.

    Chosen on search-time figures only, so every worker (started before or after others finished units)
    chooses the same finalists. With a latency budget the front counts latency, as ``pick`` does.
    """
    import pandas as pd

    from igcnas.nas.pareto import at_search_fidelity, pareto_mask

    search = at_search_fidelity(df)
    front = search[pareto_mask(search, with_latency=budget.max_latency_ms is not None)]
    latency = front["latency_ms"] if "latency_ms" in front else [math.nan] * len(front)
    inside = [budget.fits(params=p, macs=m, latency_ms=None if lat is None or lat != lat else float(lat))
              for p, m, lat in zip(front["params"], front["macs"], latency)]
    chosen = front[pd.Series(inside, index=front.index, dtype=bool)].sort_values(["val_accuracy", "macs", "params", "number"],
                                       ascending=[False, True, True, True])
    return chosen.head(top)


@dataclass(frozen=True, kw_only=True)
class RefineJob:
    """What to refine and how; both backends take one (``Backend.refine``)."""

    study: Any
    record: dict[str, Any]  # the search's evaluation record (data set, split, training settings)
    units: tuple[Unit, ...]
    configs: dict[int, dict[str, Any]]  # trial number -> its network config (config_to_dict form)
    device: str = "auto"
    data_dir: str | None = None
    heartbeat_interval: float = 20.0
    grace_period: float = 60.0
    progress: bool = False
    settle_s: float = SETTLE_S
    # Ray only: the cluster and what each unit asks of it.
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval <= 0 or self.grace_period <= self.heartbeat_interval:
            raise BadInput(f"--grace-period ({self.grace_period}) must exceed --heartbeat-interval "
                           f"({self.heartbeat_interval}), which must be > 0")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise BadInput(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {self.cpus_per_trial} "
                           f"and {self.gpus_per_trial}")
        missing = {u.trial for u in self.units} - set(self.configs)
        if missing:
            raise ValueError(f"units of trials without a config: {sorted(missing)}")  # a bug, not input

    def run_record(self) -> dict[str, Any]:  # what a Ray node needs to load the search's split
        return {**self.record, "data_dir": self.data_dir or self.record.get("data_dir")}


def plan_job(study: Any, *, budget: Budget, top: int, epochs: int, seeds: Iterable[int],
             **settings: Any) -> tuple[RefineJob, Any]:
    """The job for the study's finalists (and the finalists' frame, for showing them)."""
    import json

    from igcnas.nas.pareto import trials_frame
    from igcnas.nas.pick import search_evaluation

    if top < 1:
        raise BadInput(f"--top must be >= 1, got {top}")
    if epochs < 1:
        raise BadInput(f"--epochs must be >= 1, got {epochs}")
    record = search_evaluation(study)
    chosen = finalists(trials_frame(study), budget, top)
    if chosen.empty:
        raise BadInput("no complete feasible trial of the study's front fits the budget: nothing to refine "
                       "(loosen --max-params/--max-macs/--max-latency-ms, or search first)")
    seeds = tuple(seeds)
    units = tuple(Unit(int(n), int(epochs), int(s)) for n in chosen["number"] for s in seeds)
    configs = {int(n): json.loads(text) for n, text in zip(chosen["number"], chosen["config"])}
    return RefineJob(study=study, record=record, units=units, configs=configs, **settings), chosen


@dataclass
class RefineReport:
    """What one run of refine did (the study holds the results)."""

    trained: int = 0
    failed: int = 0  # the training failed (diverged, over a limit): recorded, not retried
    already_done: int = 0  # a result was there before this run
    elsewhere: int = 0  # another live worker held the claim
    last_failure: str = ""

    def count_skipped(self, state: str) -> None:
        """Count a unit this run did not train: ``done`` by now, or held by another live worker."""
        if state == "done":
            self.already_done += 1
        else:
            self.elsewhere += 1


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Claims:
    """This worker's (or Ray driver's) claims on units, kept alive by a beat thread while they train."""

    def __init__(self, study: Any, *, interval: float, grace: float, settle_s: float = SETTLE_S,
                 owner: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.study, self.interval, self.grace, self.settle_s = study, interval, grace, settle_s
        self.owner = owner or _owner()
        self.clock = clock
        self.held: set[Unit] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self, unit: Unit, attrs: dict[str, Any] | None = None) -> str:
        """``done``, ``mine``, ``elsewhere`` (a live claim of another owner) or ``free``."""
        attrs = self.study.user_attrs if attrs is None else attrs
        if unit.result_key in attrs:
            return "done"
        claim = attrs.get(unit.claim_key)
        if not isinstance(claim, dict) or not claim.get("owner"):
            return "free"
        if claim["owner"] == self.owner:
            return "mine"
        return "elsewhere" if self.clock() - float(claim.get("beat", 0)) < self.grace else "free"

    def take(self, unit: Unit) -> str:
        """Claim ``unit``: ``mine`` when this owner trains it, else why not (``done`` or ``elsewhere``)."""
        return self.take_many([unit])[unit]

    def take_many(self, units: list[Unit]) -> dict[Unit, str]:
        """Claim each of ``units`` (one settle for all): each unit's state afterwards, ``mine`` if taken."""
        attrs = self.study.user_attrs
        states = {u: self.state(u, attrs) for u in units}
        wanted = [u for u, s in states.items() if s not in ("done", "elsewhere")]
        writing = time.monotonic()
        for unit in wanted:
            self.study.set_user_attr(unit.claim_key, {"owner": self.owner, "beat": self.clock()})
        if wanted:
            # Long enough for another worker's writes of the same claims (as slow as ours) to land first.
            time.sleep(self.settle_s + (time.monotonic() - writing if self.settle_s else 0.0))
            attrs = self.study.user_attrs
            states.update({u: self.state(u, attrs) for u in wanted})
        with self._lock:
            self.held.update(u for u, s in states.items() if s == "mine")
        return states

    def release(self, unit: Unit) -> None:
        """Stop beating ``unit``; a failed training's claim is made stale at once so another run retries it."""
        with self._lock:
            self.held.discard(unit)
            if unit.result_key not in self.study.user_attrs:
                self.study.set_user_attr(unit.claim_key, {"owner": None, "beat": 0.0})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="igcnas-refine-claims", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                units = sorted(self.held)
            for unit in units:
                with self._lock:  # a unit released meanwhile is not claimed again by a late beat
                    if unit not in self.held:
                        continue
                    try:
                        self.study.set_user_attr(unit.claim_key, {"owner": self.owner, "beat": self.clock()})
                    except Exception as exc:  # noqa: BLE001 - a missed beat is retried next interval
                        log.warning("refine: could not renew the claim on %s: %s", unit, exc)


def pending_units(job: RefineJob, claims: Claims) -> tuple[list[Unit], int, int]:
    """(units no one has done or holds, how many are done, how many another live worker holds)."""
    attrs = job.study.user_attrs
    states = {u: claims.state(u, attrs) for u in job.units}
    return ([u for u in job.units if states[u] in ("free", "mine")],
            sum(s == "done" for s in states.values()), sum(s == "elsewhere" for s in states.values()))


def train_unit(config: dict[str, Any], data: Any, record: dict[str, Any], unit: Unit, *, device: str = "auto",
               progress: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Train one unit from scratch with the search's settings at the unit's length and seed; its result.

    The result is plain data (what the study stores): the validation accuracy of the deployable network
    after the last epoch (for structured stages the projected one, as in the search), the curve, the
    training loss, seconds and where it ran. A training that fails by its own limits (diverged, over its
    time or memory) gives ``val_accuracy`` None and the reason; anything else raises.
    """
    from igcnas.evaluators.settings import settings_from_record
    from igcnas.evaluators.train import TrialDiverged, TrialLimitExceeded, train_model
    from igcnas.models import build_model
    from igcnas.search_space.config_io import config_from_dict

    network = config_from_dict(config)
    settings = settings_from_record(record, epochs=unit.epochs, seed=unit.seed, device=device, progress=progress,
                                    threads=threads, max_batches_per_epoch=record.get("max_batches_per_epoch"))
    model = build_model(network, seed=unit.seed, form=settings.model_form)
    start = time.perf_counter()
    where = socket.gethostname()
    try:
        result = train_model(model, data, settings)
    except (TrialDiverged, TrialLimitExceeded) as exc:
        return {"val_accuracy": None, "error": f"{type(exc).__name__}: {exc}", "epochs": unit.epochs,
                "seed": unit.seed, "host": where, "seconds": round(time.perf_counter() - start, 3)}
    return {"val_accuracy": float(result.val_accuracy), "curve": [round(float(a), 6) for a in result.curve],
            "final_train_loss": float(result.train_loss[-1]) if result.train_loss else None,
            "epochs": unit.epochs, "seed": unit.seed, "device": result.device, "host": where,
            "seconds": round(time.perf_counter() - start, 3)}


def record_result(study: Any, unit: Unit, result: dict[str, Any], report: RefineReport) -> None:
    """Store one unit's result on the study (its own key) and count it."""
    study.set_user_attr(unit.result_key, result)
    if result.get("val_accuracy") is None:
        report.failed += 1
        report.last_failure = f"trial {unit.trial} seed {unit.seed}: {result.get('error')}"
    else:
        report.trained += 1


OnResult = Callable[[Unit, dict[str, Any]], None]


def begin(job: RefineJob) -> tuple[RefineReport, Claims, list[Unit]]:
    """Every backend's first step: this run's report, its claims, and the units no one has done or holds."""
    report = RefineReport()
    claims = Claims(job.study, interval=job.heartbeat_interval, grace=job.grace_period, settle_s=job.settle_s)
    todo, report.already_done, report.elsewhere = pending_units(job, claims)
    return report, claims, todo


def finish(job: RefineJob, claims: Claims, unit: Unit, result: dict[str, Any], report: RefineReport,
           on_result: OnResult | None) -> None:
    """Every backend's last step for a unit: the result recorded, the claim released, the caller told."""
    try:
        record_result(job.study, unit, result, report)
    finally:
        claims.release(unit)
    if on_result is not None:
        on_result(unit, result)


def refine_here(job: RefineJob, *, on_result: OnResult | None = None) -> RefineReport:
    """Train this job's free units in this process, one after another (the Optuna backend's refine)."""
    from igcnas.nas.pick import load_search_data

    report, claims, todo = begin(job)
    if not todo:
        return report
    data = load_search_data(job.record, data_dir=job.data_dir)
    claims.start()
    try:
        for unit in todo:
            state = claims.take(unit)
            if state != "mine":
                report.count_skipped(state)
                continue
            log.info("refine: trial %d, %d epochs, seed %d", unit.trial, unit.epochs, unit.seed)
            try:
                result = train_unit(job.configs[unit.trial], data, job.record, unit, device=job.device,
                                    progress=job.progress)
            except BaseException:
                claims.release(unit)  # a bug or an interruption: the unit is free for a later run
                raise
            finish(job, claims, unit, result, report, on_result)
    finally:
        claims.stop()
    return report

