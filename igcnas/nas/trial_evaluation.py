"""Evaluating one configuration: costs before training, budget check, training, measured costs.

Shared by the Optuna and the Ray Tune backends so that both record the same
things (user-attribute names from :mod:`igcnas.nas.records`). A configuration whose closed-form params or MACs exceed the budget is
never built or trained.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from igcnas.nas.records import TrialKey, TrialRecorder, TrialStatus
from igcnas.nas.budget import Budget, is_feasible, record_constraints
from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.config_io import config_to_dict
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.describe import describe_structure
from igcnas.search_space.enumerate import arch_id

__all__ = ["Evaluation", "evaluate_config", "precheck", "suggest_and_record"]

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Everything a trial records (``attrs``: its record, keys of :class:`TrialKey`); ``status`` is a
    :class:`TrialStatus` (or ``pending`` before training)."""

    config: NetworkConfig
    status: str
    attrs: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    val_accuracy: float | None = None
    params: int = 0
    macs: int = 0
    latency_ms: float | None = None
    reason: str = ""
    model: Any = field(default=None, repr=False)  # the trained module (not recorded in the study)

    def objective_values(self, objectives: Any) -> tuple[float, ...]:
        """The values told to Optuna, in the order of ``objectives`` (igcnas.nas.objectives).

        Each objective is the field of its own name, so an objective added to the table is read here without
        an edit (a test checks that every objective has its field)."""
        return tuple(float(getattr(self, o.name) or 0.0) for o in objectives)


def precheck(config: NetworkConfig, budget: Budget, latency_table: Any = None) -> Evaluation:
    """Closed-form costs (and, with a latency table, predicted latency) and the budget check; no training.

    Microseconds without a table, about a millisecond with one (the plan's parts looked up).
    """
    costs = closed_form_costs(config)
    attrs = {
        TrialKey.CONFIG: config_to_dict(config),
        TrialKey.ARCH_ID: arch_id(config),
        TrialKey.FAMILY: config.family,
        TrialKey.WIDTH: config.stages[0].width,
        TrialKey.BLOCKS: config.stages[0].blocks,
        TrialKey.STRUCTURE: describe_structure(config),
        TrialKey.PARAMS: costs.params,
        TrialKey.CONV_PARAMS: costs.conv_params,
        TrialKey.MACS: costs.macs,
    }
    latency = None
    # Predicted only for networks within the params/MACs budget: a table built for that budget
    # (igc-nas latency-table --max-params/--max-macs) has no entries for parts only larger networks use.
    if latency_table is not None and budget.without_latency().fits(params=costs.params, macs=costs.macs):
        # Recorded and judged unrounded: the budget, pick and the dashboard all compare this same figure.
        latency = float(latency_table.predict(config))
        attrs.update({TrialKey.LATENCY_MS: latency, TrialKey.LATENCY_SOURCE: "predicted"})
    constraints = budget.violations(params=costs.params, macs=costs.macs, latency_ms=latency)
    status = "pending"
    reason = ""
    over = [k for k, v in constraints.items() if not is_feasible({k: v})]
    if over:
        status = TrialStatus.OVER_BUDGET
        shown = {"max_params": f"params {costs.params:,}", "max_macs": f"macs {costs.macs:,}",
                 "max_latency_ms": f"predicted latency {latency!r} ms"}
        bound = {k: f"{v!r} ms" if k == "max_latency_ms" else f"{v:,.0f}" for k, v in budget.as_dict().items()
                 if v is not None}
        reason = "over budget before training: " + ", ".join(f"{shown[k]} > {bound[k]}" for k in over)
    return Evaluation(config=config, status=status, attrs=attrs, constraints=constraints, params=costs.params,
                      macs=costs.macs, latency_ms=latency, reason=reason)


def _time_trained(config: NetworkConfig, model: Any, fingerprint: Any, budget: Budget,
                  evaluation: Evaluation) -> dict[str, float]:
    """Time the trained network on the table's runtime, threads and batch; its constraint when it counts.

    The trained weights go into a freshly built deployed network (NCHW, the chain as designed): training
    may leave channels_last weights, which run another kernel path than the table's parts and a deployed
    model. The figure is recorded beside the prediction; it becomes a constraint (a trained trial measured
    over the latency budget is infeasible) only where this process runs on the table's own device and
    runtime -- not on a Ray node of another kind, nor with a table forced from elsewhere.
    """
    from igcnas.evaluators.latency_runtime import Fingerprint, measure_network_ms
    from igcnas.models import build_model

    deployed = build_model(config, seed=None, form="deployed")
    deployed.load_state_dict(model.state_dict())
    timed = float(measure_network_ms(config, fingerprint, model=deployed))  # unrounded: the budget judges it
    here = Fingerprint.here(runtime=fingerprint.runtime, threads=fingerprint.threads, batch=fingerprint.batch,
                            input_size=fingerprint.input_size, in_channels=fingerprint.in_channels)
    evaluation.attrs[TrialKey.LATENCY_MEASURED_MS] = timed
    if here != fingerprint:
        evaluation.attrs[TrialKey.LATENCY_MEASURED_ON] = here.describe()
        return {}
    return {k: v for k, v in budget.violations(params=evaluation.params, macs=evaluation.macs,
                                               measured_latency_ms=timed).items() if k == "max_latency_ms_measured"}


def suggest_and_record(trial: Any, genome: Any, budget: Budget, recorder: TrialRecorder, latency_table: Any = None,
                       **more: Any) -> Evaluation:
    """Both backends' first step: a valid config from the trial, its closed-form costs (and ``more``) written
    as the trial's record in one call, over budget or not, and its budget slack as Optuna constraints."""
    from igcnas.nas.gene_suggestions import suggest_config

    pre = precheck(suggest_config(trial, genome), budget, latency_table)
    recorder.update(pre.attrs, **more)
    if pre.status == TrialStatus.OVER_BUDGET:
        recorder.update(status=TrialStatus.OVER_BUDGET)
    recorder.write()
    record_constraints(trial, pre.constraints, already={})
    return pre


def _time_before_training(config: NetworkConfig, model: Any, budget: Budget, evaluation: Evaluation) -> None:
    """Latency without a table: the untrained deployed network on this process's CPU at a fixed thread count,
    before training touches any accelerator (a deployment figure, never the training device's speed); over
    the latency budget, the evaluation ends over budget."""
    from igcnas.evaluators.measured_costs import measure_latency as time_model

    deployed = model
    if config.structured:
        from igcnas.models.decomposition import decompose

        deployed = decompose(model)  # latency belongs to what is deployed, not to the training form
    latency = time_model(deployed, config.input_shape, batch_sizes=(1,))
    evaluation.latency_ms = latency.ms_by_batch[1]
    evaluation.attrs.update({TrialKey.LATENCY_MS: evaluation.latency_ms, TrialKey.LATENCY_SOURCE: "measured",
                             TrialKey.LATENCY_THREADS: latency.threads, TrialKey.LATENCY_DEVICE: "cpu"})
    evaluation.constraints = budget.violations(params=evaluation.params, macs=evaluation.macs,
                                               latency_ms=evaluation.latency_ms)
    if not is_feasible(evaluation.constraints):
        evaluation.status = TrialStatus.OVER_BUDGET
        evaluation.reason = (f"over budget before training: latency {evaluation.latency_ms!r} ms > "
                             f"{budget.max_latency_ms!r} ms")


def _count_trained(model: Any, shape: tuple[int, int, int], evaluation: Evaluation) -> None:
    """fvcore's counts of the trained (deployed) network, which become the evaluation's params and MACs.

    The closed form decided the budget and the rungs, and the two agree exactly (tests check it); a
    disagreement is logged, and fvcore's figure kept: it is the design's required counter.
    """
    from igcnas.evaluators.measured_costs import measure_costs

    measured = measure_costs(model, shape)
    evaluation.attrs.update({TrialKey.FVCORE_MACS: measured.macs, TrialKey.FVCORE_TOTAL: measured.fvcore_total,
                             TrialKey.FVCORE_PARAMS: measured.params})
    if measured.macs != evaluation.macs or measured.params != evaluation.params:
        log.warning("closed form and fvcore disagree for %s: %s vs %s MACs", evaluation.attrs[TrialKey.ARCH_ID],
                    evaluation.macs, measured.macs)
    evaluation.macs, evaluation.params = measured.macs, measured.params


def evaluate_config(
    config: NetworkConfig,
    data: Any,
    *,
    train_settings: Any,
    budget: Budget,
    measure_latency: bool = False,
    model_seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    latency_table: Any = None,
    latency_fingerprint: Any = None,
) -> Evaluation:
    """Check the budget, build, measure with fvcore (and latency), train; never trains over budget.

    With ``latency_table`` latency is predicted before training (and checked like MACs); the trained
    network is then timed again on the table's runtime, threads and batch (``latency_fingerprint``
    alone does only that: Ray trials, predicted on the driver). Without either, ``measure_latency``
    times the untrained network before training, on this process's CPU.
    """
    from igcnas.evaluators.train import train_model
    from igcnas.models import build_model

    evaluation = precheck(config, budget, latency_table)
    if evaluation.status == TrialStatus.OVER_BUDGET:
        return evaluation
    if latency_fingerprint is None and latency_table is not None:
        latency_fingerprint = latency_table.fingerprint
    model = build_model(config, seed=model_seed, form=train_settings.model_form)
    shape = config.input_shape
    if measure_latency and latency_fingerprint is None:
        _time_before_training(config, model, budget, evaluation)
        if evaluation.status == TrialStatus.OVER_BUDGET:
            return evaluation
    start = time.perf_counter()
    result = train_model(model, data, train_settings, on_epoch=on_epoch)
    model = model.to("cpu")  # counted, stored and deployed from the CPU whatever it trained on
    evaluation.attrs.update({TrialKey.DEVICE: result.device, TrialKey.PRECISION: result.precision})
    if config.structured:
        from igcnas.models.decomposition import decompose

        # What a structured trial keeps and counts is the deployed network (sum-pool + small kernels).
        model = decompose(model)
        evaluation.attrs.update({TrialKey.STRUCTURED_MODE: train_settings.structured_mode,
                                 TrialKey.UNPROJECTED_ACCURACY: result.unprojected_accuracy,
                                 TrialKey.PROJECTION_GAP: result.projection_gap})
    if latency_fingerprint is not None:
        evaluation.constraints.update(_time_trained(config, model, latency_fingerprint, budget, evaluation))
    _count_trained(model, shape, evaluation)  # after training (tens to hundreds of ms): stopped trials never pay
    evaluation.val_accuracy = result.val_accuracy
    evaluation.model = model
    evaluation.status = TrialStatus.COMPLETE
    evaluation.attrs.update({TrialKey.CURVE: result.curve, TrialKey.TRAIN_LOSS: result.train_loss,
                             TrialKey.EPOCHS: len(result.curve),
                             TrialKey.TRAIN_SECONDS: round(time.perf_counter() - start, 3),
                             TrialKey.IMAGES_PER_SECOND: round(result.images_per_second, 1)})
    return evaluation
