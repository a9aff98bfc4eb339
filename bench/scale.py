"""Orchestration cost against the study's size and the number of workers, with synthetic trials.

A synthetic trial trains nothing (no data is loaded): it sleeps (``--trial-seconds``, spread over its
epochs) where training would run, and does everything else a search does, through the project's own
code: the default evolutionary sampler proposes genes, the genome decodes them, the closed-form costs
and budget checks run, every epoch's curve and every rung result are written to the study and checked
at the rungs (multi-objective successive halving, epochs 9, rungs at 1 and 3), and the trial ends with
the same user attributes a trained one has. Accuracies are a fixed function of the architecture. The
search gets the synthetic data set and training through ``prepare(options, data=..., evaluate=...)``.

(a) Size (``scale_size``): a SQLite study preloaded with 0, 1,000 and 10,000 finished trials written as a
    search writes them (stopped at rung 1 or 3, complete, failed; genes, costs, curves, rung results, the
    sampler's record). A process that has not read them joins each (``prepare``, sampler, first ``ask``)
    and runs trials, the studies taking turns trial by trial; reported: ``join_s``,
    ``per_trial_overhead_ms`` (a trial's whole cycle, ask to tell, minus its sleep), SQL statements and
    database milliseconds per trial, trials re-read per trial, and ``finish_s`` (the output writers).
(b) Workers (``scale_workers``): 1 to 32 worker processes on one new study, on each storage available
    (SQLite, PostgreSQL on 127.0.0.1, and when ``open_storage`` takes them, a journal file and ``igc-nas
    storage-proxy`` over PostgreSQL), 1-second trials (every trial sleeps the full second, stopped early
    or not, so rates compare): trials per second in a common window (each trial counted by the share of
    it inside the window) and ``scaling_efficiency`` = rate / (workers x the 1-worker rate).
(c) Ray (``scale_ray``): the same search on a loopback Ray cluster, ``igc-nas search --backend ray``'s
    backend with the same synthetic trials in the Ray workers, SQLite study, 1, 2 and 4 concurrent
    trials: trials per second, scaling efficiency against 1 trial and against the ideal, and Ray's
    per-trial overhead. Early stopping is off here (Tune's scheduler stops trials its own way).

    python bench/scale.py [--quick] [--json PATH] [--sizes 0,1000,10000] [--workers 1,2,4,8,16,32]
        [--storages sqlite,postgresql,journal,grpc] [--trial-seconds 1] [--window 8]
        [--ray-concurrency 1,2,4] [--only size|workers|ray]

``--quick`` is a smoke run (< 1 minute on an idle machine). Ratios measured side by side in one run are
the figures to read; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from scale_parts import EPOCHS
from scale_ray import measure_ray, ray_child
from scale_size import SIZE_HEADER, child, measure_size, size_ratios
from scale_workers import WORKER_HEADER, measure_workers, worker_goals

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # igcnas and tests/ (the Ray cluster helper)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes and counts (< 1 minute)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--sizes", help="preloaded trials, comma-separated (default 0,1000,10000)")
    parser.add_argument("--trials", type=int, help="trials per size (default 20)")
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
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",")]


def run_size(args: argparse.Namespace, work: Path, result: dict[str, Any]) -> None:
    print("(a) per-trial orchestration against study size (SQLite; one process joins every study, then "
          f"the studies take turns trial by trial; sleep {args.size_sleep:g} s, excluded)")
    print(SIZE_HEADER, flush=True)
    rows = measure_size(work, result["sizes"], trials=result["trials_per_size"], trial_seconds=args.size_sleep)
    result["size"] = rows
    result["size_ratios"] = size_ratios(rows, result["sizes"])
    for line in result["size_ratios"]["lines"]:
        print(line)


def run_workers(args: argparse.Namespace, work: Path, result: dict[str, Any]) -> None:
    counts = _ints(args.workers or ("1,2" if args.quick else "1,2,4,8,16,32"))
    window = args.window or (2.0 if args.quick else 8.0)
    warmup = 1.0 if args.quick else 2.0
    storages = args.storages or ("sqlite,postgresql" if args.quick else "sqlite,postgresql,journal,grpc")
    print(f"\n(b) trials per second against worker processes ({args.trial_seconds:g} s synthetic trials, "
          f"{window:g} s window after {warmup:g} s warm-up, {os.cpu_count()} CPUs)")
    print(WORKER_HEADER, flush=True)
    rows, skipped = measure_workers(work, storages.split(","), counts, trial_seconds=args.trial_seconds,
                                    window=window, warmup=warmup)
    result["workers"], result["workers_skipped"] = rows, skipped
    for kind, why in skipped.items():
        print(f"{kind}: skipped ({why})")
    result["worker_goals"] = worker_goals(rows)
    for line in result["worker_goals"]["lines"]:
        print(line)


def run_ray(args: argparse.Namespace, work: Path, result: dict[str, Any]) -> None:
    concurrency = _ints(args.ray_concurrency or ("1,2" if args.quick else "1,2,4"))
    print(f"\n(c) the same search on a loopback Ray cluster ({args.trial_seconds:g} s synthetic trials, "
          "SQLite, no early stopping)", flush=True)
    result["ray"] = measure_ray(work, concurrency, trial_seconds=args.trial_seconds,
                                trials_per_slot=args.ray_trials_per_slot or (2 if args.quick else 6))
    if "skipped" in result["ray"]:
        print(f"ray: skipped ({result['ray']['skipped']})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    if args.ray_child:
        return ray_child(args.ray_child)
    sizes = _ints(args.sizes or ("0,200" if args.quick else "0,1000,10000"))
    trials = args.trials or (3 if args.quick else 20)
    work = Path(tempfile.mkdtemp(prefix="igcnas-scale-"))
    result: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "epochs": EPOCHS, "rungs": [1, 3],
                              "sizes": sizes, "trials_per_size": trials,
                              "load_average_at_start": round(os.getloadavg()[0], 1)}
    try:
        for part, run in (("size", run_size), ("workers", run_workers), ("ray", run_ray)):
            if args.only in ("all", part):
                run(args, work, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
