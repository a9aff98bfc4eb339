"""The Ray backend's ``igc-nas refine``: refinement units (``igcnas.nas.refine``) as Ray tasks.

One of the three modules that import ray (with ``ray_backend`` and ``ray_trials``). The driver claims the
units it sends (and beats the claims while they run, so other refine runs leave them alone), each unit is
a task with the resources a search trial gets, and its result comes back as plain data: the node that
trained it may share no disk with the driver, which records it on the study. A unit whose task raised or
whose node died is released for a later run instead of recorded.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable

from igcnas.nas.backends.ray_trials import check_nodes, load_cached

__all__ = ["refine_on_ray", "refine_task"]

log = logging.getLogger(__name__)


def refine_task(run: dict[str, Any], config: dict[str, Any], unit: tuple[int, int, int], device: str,
                threads: int) -> dict[str, Any]:
    """A Ray task: one unit trained on whichever node Ray chose; its result, plain data."""
    import ray
    import torch

    from igcnas.nas.refine import Unit, train_unit

    torch.set_num_threads(max(1, threads))
    result = train_unit(config, load_cached(run), run, Unit(*unit), device=device)
    result["host"] = f"{ray.util.get_node_ip_address()} {ray.get_runtime_context().get_node_id()[:12]}"
    return result


def refine_on_ray(job: Any, *, on_result: Callable[[Any, dict[str, Any]], None] | None,
                  connect: Callable[[str | None], bool]) -> Any:
    """Run ``job``'s free units on the cluster (``connect`` joins or starts Ray: True when it started it)."""
    import ray

    from igcnas.nas.refine import begin, finish

    report, claims, todo = begin(job)
    if not todo:
        return report
    started_here = connect(job.address)
    run = job.run_record()
    refs: dict[Any, Any] = {}
    try:
        check_nodes(run, cpus=job.cpus_per_trial, gpus=job.gpus_per_trial)
        claims.start()
        task = ray.remote(num_cpus=job.cpus_per_trial, num_gpus=job.gpus_per_trial,
                          max_retries=1)(refine_task)  # a task lost with its node is retried once
        threads = max(1, int(job.cpus_per_trial))
        for unit, state in claims.take_many(todo).items():
            if state != "mine":
                report.count_skipped(state)
                continue
            refs[task.remote(run, job.configs[unit.trial], (unit.trial, unit.epochs, unit.seed), job.device,
                             threads)] = unit
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                unit = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task raised or its node died: retried later
                    report.failed += 1
                    report.last_failure = (f"trial {unit.trial} seed {unit.seed}: {type(exc).__name__}: "
                                           f"{(str(exc).strip().splitlines() or [''])[-1]}")
                    claims.release(unit)
                    continue
                finish(job, claims, unit, result, report, on_result)
    finally:
        for ref, unit in refs.items():  # interrupted: cancel what is left and free its units again
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                claims.release(unit)
        claims.stop()
        if started_here:
            ray.shutdown()
    return report
