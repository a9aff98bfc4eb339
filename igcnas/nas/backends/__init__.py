"""Backends run a prepared search; the orchestrator (``igcnas.nas.orchestrator``) does everything else.

A backend is anything with a ``name``, the set of options it does not honour
(``unsupported``: the orchestrator refuses them with a one-line error instead
of silently ignoring them), ``run(prepared, callbacks=...)`` returning a
:class:`BackendReport`, and ``refine(job, on_result=...)``, which trains a
study's finalists longer (``igcnas.nas.refine``) where the backend trains. Backends never import each other; only the Ray backend
imports ray, and it is imported only when asked for by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from igcnas.errors import BadInput
from igcnas.nas.trial_evaluation import evaluate_config
from igcnas.nas.options import BACKENDS, SearchOptions
from igcnas.search_space.spec import SearchSpec

if TYPE_CHECKING:
    from igcnas.nas.refine import OnResult, RefineJob, RefineReport

__all__ = ["Backend", "BackendReport", "PreparedSearch", "TrialCallback", "get_backend", "run_limits"]

TrialCallback = Callable[[Any, Any], None]  # (study, finished trial), called once per trial of this run



@dataclass
class PreparedSearch:
    """A validated search, ready for a backend: options, space, data and the opened study."""

    options: SearchOptions
    spec: SearchSpec
    genome: Any  # igcnas.search_space.genome.Genome over ``spec``
    data: Any  # igcnas.evaluators.data_splits.DataSplits
    storage: Any
    study: Any
    reference: Any  # igcnas.nas.pareto.ReferencePoint
    # Trials that existed before this run, enqueued seeds (WAITING) left out: this run will train those.
    earlier: frozenset[int] = frozenset()
    latency_table: Any = None  # igcnas.evaluators.latency_table.LatencyTable (--latency-table), checked for this device
    # Trains and measures one configuration (nas.trial_evaluation.evaluate_config's signature): the Optuna backend's
    # trials call it; the scale benchmark passes a synthetic one.
    evaluate: Callable[..., Any] = evaluate_config

    def sampler(self) -> Any:
        """A fresh sampler of the options' kind for this space and budget (each backend makes its own)."""
        from igcnas.nas.samplers import make_sampler

        seed = self.options.seed if self.options.sampler_seed is None else self.options.sampler_seed
        return make_sampler(self.options.sampler, seed, spec=self.spec, budget=self.options.budget,
                            n_trials=self.options.total_trials or self.options.n_trials)


@dataclass
class BackendReport:
    """What a backend ran in this run (the study holds the details)."""

    trained: int = 0  # trained to the end (COMPLETE)
    stopped_early: int = 0  # trained, then stopped at a rung
    skipped: int = 0  # never trained: over budget, or no slot left under --total-trials
    failed: int = 0
    last_failure: str = ""

    def add(self, trial: Any) -> None:
        """Count one finished trial of this run (the same classification on every backend)."""
        from optuna.trial import TrialState

        from igcnas.nas.records import TrialKey, TrialStatus, record_of

        record = record_of(trial.user_attrs)
        status = record.get(TrialKey.STATUS)
        if trial.state == TrialState.COMPLETE:
            self.trained += 1
        elif trial.state == TrialState.FAIL or status == TrialStatus.FAILED:
            self.failed += 1
            self.last_failure = str(record.get(TrialKey.FAIL_REASON)
                                    or trial.system_attrs.get("fail_reason") or "")
        elif status == TrialStatus.STOPPED_EARLY:
            self.stopped_early += 1  # trained, then stopped at a rung: counts as one of --n-trials
        else:
            self.skipped += 1  # over budget or no slot: never trained


def run_limits(n_trials: int) -> tuple[int, int]:
    """(skipped, failed) trials after which a run stops instead of looping: every backend stops alike."""
    return max(200, 20 * n_trials), max(10, 3 * n_trials)


@runtime_checkable
class Backend(Protocol):
    name: str
    # Option names (fields of SearchOptions) this backend does not honour; they must keep their defaults.
    unsupported: frozenset[str]

    def run(self, prepared: PreparedSearch, *, callbacks: list[TrialCallback]) -> BackendReport:
        """Train trials into ``prepared.study`` until the run's target is met; report what ran."""
        ...

    def refine(self, job: RefineJob, *, on_result: OnResult | None = None) -> RefineReport:
        """Train the job's units that no one has done or holds; record each on the study as it finishes."""
        ...


def get_backend(name: str) -> Backend:
    """The backend registered under ``name`` in ``options.BACKENDS`` (its module imported now)."""
    if name not in BACKENDS:
        raise BadInput(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    return importlib.import_module(BACKENDS[name]).BACKEND
