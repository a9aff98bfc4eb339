"""(c) of the scale benchmark: the same search on a loopback Ray cluster (a head and a worker node on
127.0.0.1, ``ray start`` processes of this benchmark).

The driver (``scale.py --ray-child``, a process of its own) runs the Ray backend on a ``prepare``d search
given the synthetic data set (no images are read on the driver) with the same synthetic trials, SQLite
study, 1, 2 and 4 concurrent trials (``--max-concurrent``); reported: trials per second between the
first and the last completion, ``scaling_efficiency`` against the 1-trial rate and against the ideal
(concurrency / trial seconds), and Ray's per-trial overhead (a trial's time as the study records it,
start to completion, minus its sleep). Early stopping is off (Tune's scheduler stops trials its own way).

The synthetic trial reaches the Ray workers as the search's own evaluation (``prepare(evaluate=...)``,
which the Ray backend hands its trainable), shipped by value: no file of this benchmark needs to be
importable there, and nothing of igcnas is replaced.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import scale_parts
from scale_parts import COMMAND, DATA, SyntheticTraining, median, search_options


def ray_child(spec_path: str) -> int:
    """``--ray-child PATH``: one synthetic Ray search (the driver), as PATH (JSON) describes it."""
    from ray import cloudpickle

    from igcnas.nas.backends import get_backend
    from igcnas.nas.orchestrator import check_backend_options, finish, prepare

    spec = json.loads(Path(spec_path).read_text())
    cloudpickle.register_pickle_by_value(scale_parts)  # SyntheticTraining travels with the trainable
    options = search_options(spec["url"], spec["study_name"], spec["output_dir"], backend="ray",
                             address=spec["address"], n_trials=spec["n_trials"], max_concurrent=spec["concurrency"],
                             early_stopping=False)
    backend = get_backend(options.backend)
    check_backend_options(options, backend)
    began = time.time()
    prep = prepare(options, data=DATA, evaluate=SyntheticTraining(spec["trial_seconds"], constant=True))
    finish(prep, backend.run(prep, callbacks=[]))
    Path(spec["out"]).write_text(json.dumps({"wall_s": time.time() - began}))
    return 0


def _ray_rate(trials: list[Any], c: int) -> float:
    """Trials per second between the c-th completion (every slot has finished a trial) and the last one."""
    ends = sorted(t.datetime_complete.timestamp() for t in trials)
    span = ends[-1] - ends[c - 1] if len(ends) > c else math.nan
    return (len(ends) - c) / span if span and span > 0 else math.nan


def _ray_row(c: int, trials: list[Any], *, trial_seconds: float, base: float | None, wall_s: float
             ) -> dict[str, Any]:
    """The figures of ``c`` concurrent trials from the study's completed ones; ``base``: the 1-trial rate."""
    rate = _ray_rate(trials, c)
    overhead = [1000 * ((t.datetime_complete - t.datetime_start).total_seconds() - trial_seconds) for t in trials]
    return {"concurrency": c, "trials": len(trials), "trials_per_s": round(rate, 3),
            "ideal_trials_per_s": round(c / trial_seconds, 3),
            "efficiency_vs_ideal": round(rate / (c / trial_seconds), 3),
            "scaling_efficiency": round(rate / (c * base), 3) if base else None,
            "per_trial_overhead_ms": round(median(overhead), 1), "wall_s": round(wall_s, 1),
            "load_average_after": round(os.getloadavg()[0], 1)}


def _ray_line(row: dict[str, Any]) -> str:
    eff = row["scaling_efficiency"]
    return (f"ray     {row['concurrency']:>3} concurrent  {row['trials_per_s']:>7.3f} trials/s  ideal "
            f"{row['ideal_trials_per_s']:>6.3f}  efficiency vs ideal {row['efficiency_vs_ideal']:.2f}  vs 1 trial "
            f"{eff if eff is not None else float('nan'):.2f}  overhead {row['per_trial_overhead_ms']:.0f} ms/trial  "
            f"({row['trials']} trials, {row['wall_s']:.0f} s)")


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
            subprocess.run([sys.executable, str(COMMAND), "--ray-child", str(folder / "spec.json")], check=True,
                           env={**os.environ, **LOOPBACK_ENV}, stdout=subprocess.DEVNULL)
            trials = [t for t in optuna.load_study(study_name=name, storage=url).trials
                      if t.state == optuna.trial.TrialState.COMPLETE]
            if c == concurrency[0] == 1:
                base = _ray_rate(trials, c)
            row = _ray_row(c, trials, trial_seconds=trial_seconds, base=base,
                           wall_s=json.loads(Path(spec["out"]).read_text())["wall_s"])
            rows.append(row)
            print(_ray_line(row), flush=True)
    finally:
        cluster.stop()
    return {"nodes": 2, "cpus_per_node": cpus, "rows": rows}
