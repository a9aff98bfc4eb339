"""(a) of the scale benchmark: per-trial orchestration against the study's size, one worker, SQLite.

Each size is a study preloaded with that many finished trials; one child process of its own (``scale.py
--child``: nothing is already imported or read) joins every study, one after the other, then the studies
take turns, one trial each, so that all of them see the same machine load; at the end each writes its
outputs. The full-scan readers this used to measure beside the incremental ones are now the tests'
oracle (``tests/nas/full_scan.py``).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scale_parts import COMMAND, GOAL_SIZE_RATIO, SyntheticTraining, Worker, median, preload

MODE = "incremental"  # the rows' ``mode``: the product's reads (the only mode left)


def child(spec_path: str) -> int:
    """``--child PATH``: the size measurement in a process of its own, as PATH (JSON) describes it.

    Every study (each with its own storage object: nothing is shared or already read) is joined, one
    after the other, and gets one trial (its first builds this process's view of the study); then the
    studies take turns, one trial each; at the end each writes its outputs (``finish``)."""
    import optuna  # noqa: F401  (imports, which do not grow with the study, are not part of a join)

    import igcnas.nas.orchestrator  # noqa: F401

    spec = json.loads(Path(spec_path).read_text())
    training = SyntheticTraining(spec["trial_seconds"])
    warm = spec["warmup"]  # a first study, not reported: what a process does once whatever the study's size
    Worker(warm["url"], warm["study_name"], warm["output_dir"], training=training).join().run(n_trials=2)
    workers, joins = [], []
    for entry in spec["entries"]:
        began = time.perf_counter()
        worker = Worker(entry["url"], entry["study_name"], entry["output_dir"], training=training).join()
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
    subprocess.run([sys.executable, str(COMMAND), "--child", str(path)], check=True)
    return json.loads(Path(spec["out"]).read_text())


def measure_size(work: Path, sizes: list[int], *, trials: int, trial_seconds: float) -> list[dict[str, Any]]:
    """Per size, on a preloaded file, in one child process (see :func:`child`). The first trial of each
    study is reported apart (``first_trial_ms``), not in the per-trial medians."""
    entries, preloads = [], {}
    for size in sizes:
        path = work / f"size{size}.db"
        preloads[size] = preload(f"sqlite:///{path}", "scale", size)
        entries.append({"size": size, "url": f"sqlite:///{path}", "study_name": "scale",
                        "output_dir": str(work / f"out-{size}"), "trials": 1 + trials})
    warmup = {"url": f"sqlite:///{work / 'warmup.db'}", "study_name": "warmup", "output_dir": str(work / "warmup")}
    result = _run_child(work, "size", {"entries": entries, "warmup": warmup, "trial_seconds": trial_seconds})
    rows = []
    for entry, cycles, join, finish_s in zip(entries, result["cycles"], result["joins"], result["finish_s"]):
        rows.append(_size_row(entry["size"], preloads[entry["size"]], cycles, join, finish_s))
        print(size_line(rows[-1]), flush=True)
    return rows


def _size_row(size: int, preload_s: float, cycles: list[dict[str, Any]], join: dict[str, float],
              finish_s: float) -> dict[str, Any]:
    first, measured = cycles[0], cycles[1:]
    overhead = [1000 * (c["cycle_s"] - c["slept_s"]) for c in measured]
    return {
        "size": size, "mode": MODE, "preload_s": round(preload_s, 2),
        "trials": len(measured), "join_s": round(join["join_s"], 3), "prepare_s": round(join["prepare_s"], 3),
        "first_trial_ms": round(1000 * (first["cycle_s"] - first["slept_s"]), 1), "finish_s": round(finish_s, 3),
        "per_trial_overhead_ms": round(median(overhead), 1),
        "per_trial_overhead_mean_ms": round(statistics.fmean(overhead), 1) if overhead else None,
        "statements_per_trial": round(median([c["statements"] for c in measured]), 1),
        "selects_per_trial": round(median([c["selects"] for c in measured]), 1),
        "db_ms_per_trial": round(1000 * median([c["db_s"] for c in measured]), 1),
        "trials_reread_per_trial": round(median([c["reread"] for c in measured]), 1),
        "worker_cpu_ms_per_trial": round(1000 * median([c["cpu_s"] for c in measured]), 1),
        "stopped_early": sum(c["status"] == "stopped_early" for c in measured),
    }


def size_line(row: dict[str, Any]) -> str:
    return (f"{row['size']:>7,} {row['mode']:<12}{row['trials']:>5}{row['per_trial_overhead_ms']:>10.1f}"
            f"{row['statements_per_trial']:>8.0f}{row['db_ms_per_trial']:>8.1f}{row['worker_cpu_ms_per_trial']:>8.0f}"
            f"{row['trials_reread_per_trial']:>8.0f}{row['join_s']:>9.2f}{row['first_trial_ms']:>10.0f}"
            f"{row['finish_s']:>9.2f}")


SIZE_HEADER = (f"{'trials':>7} {'mode':<12}{'ran':>5}{'ms/trial':>10}{'SQL/tr':>8}{'db ms':>8}{'cpu ms':>8}"
               f"{'reread':>8}{'join s':>9}{'1st ms':>10}{'finish s':>9}")


def size_ratios(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """per_trial_overhead_ms at the largest size over the next one, against the goal where it is stated."""
    by = {r["size"]: r["per_trial_overhead_ms"] for r in rows}
    out: dict[str, Any] = {"lines": []}
    if len(sizes) >= 2:
        big, ref = sizes[-1], sizes[-2]
        ratio = by[big] / by[ref] if by.get(ref) else math.nan
        out[f"{MODE}_{big}_over_{ref}"] = round(ratio, 2)
        goal = (ref, big) == (1000, 10_000)  # the goal is stated for these sizes
        out["lines"].append(f"{MODE}: per-trial overhead at {big:,} trials / at {ref:,}: {ratio:.2f}x"
                            + (f" (goal <= {GOAL_SIZE_RATIO}x: {'met' if ratio <= GOAL_SIZE_RATIO else 'not met'})"
                               if goal else ""))
        if goal:
            out["goal_met"] = ratio <= GOAL_SIZE_RATIO
    return out
