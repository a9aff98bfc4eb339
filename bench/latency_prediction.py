"""Latency prediction: how close a latency table's predictions come to measured latency, run after run.

For each space (``digits``: the default search space of the bundled 8x8 digits; ``cifar32``: a 32x32,
3-channel space of every family at widths 16 and 32, CIFAR-shaped) and runtime (PyTorch eager, ONNX
Runtime), at ``--batch`` and ``--threads``, each of ``--runs`` fresh processes started one after another:

1. draws the validation networks (``--n``, seed 101: the same networks in every run), spread over every
   (family, width) cell of the space, at most half of any cell (the rest is the table's to calibrate and
   assess on, as for a user);
2. builds a latency table from scratch (``igc-nas latency-table``'s code path: every distinct part timed,
   calibration networks measured and fitted, held-out networks measured twice for the table's own error),
   never calibrating or assessing with a validation network;
3. measures every validation network whole with the same timer and compares.

Reported per run, space and runtime: ``share_within_10pct`` of the table's predictions (the goal is 0.90),
the table's own held-out share (``self_reported``, which should agree within 5 points), the chosen
calibration and its terms, and side by side, on the same measurements, the table's bare sum of parts
(calibration switched off) and a MACs-only line fitted on the same calibration networks (what a MACs
budget implicitly assumes). Across runs: how far the same network's measured latency moves from run to
run (``repeat_spread``, (max - min) / median, median and worst over networks), and the share of networks
that repeat within +-10% of their median (the machine's own floor: a prediction cannot be more repeatable
than the measurement it is judged by).

    python bench/latency_prediction.py [--runs 3] [--spaces digits,cifar32] [--runtimes torch,onnxruntime]
                                       [--n 80] [--batch 1] [--threads 1] [--json PATH] [--quick]

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from igcnas.evaluators.latency_build import build_table, sample_configs, space_configs  # noqa: E402
from igcnas.evaluators.latency_fit import Calibration, predict_from_features  # noqa: E402
from igcnas.evaluators.latency_runtime import measure_networks  # noqa: E402
from igcnas.search_space.costs import closed_form_costs  # noqa: E402
from igcnas.search_space.enumerate import arch_id  # noqa: E402
from igcnas.search_space.spec import SearchSpec  # noqa: E402

PREDICTORS = ("table", "table_plain_sum", "macs_linear")


def space(name: str, quick: bool) -> SearchSpec:
    if quick:
        size, channels = (8, 1) if name == "digits" else (32, 3)
        return SearchSpec.for_data(in_channels=channels, input_size=size, num_classes=10, families=("igcv3", "igcv2"),
                                   widths=(16,), blocks=(1,))
    if name == "digits":
        return SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10)
    if name == "cifar32":
        return SearchSpec.for_data(in_channels=3, input_size=32, num_classes=10, widths=(16, 32), blocks=(1, 2))
    raise SystemExit(f"--spaces: unknown space {name!r} (digits, cifar32)")


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def scores(predicted: list[float], measured: list[float]) -> dict:
    p, m = np.array(predicted), np.array(measured)
    rel = p / m - 1.0
    return {"share_within_10pct": round(float(np.mean(np.abs(rel) <= 0.10)), 4),
            "median_abs_rel_error": round(float(np.median(np.abs(rel))), 4),
            "worst_abs_rel_error": round(float(np.max(np.abs(rel))), 4),
            "spearman": round(spearman(predicted, measured), 4)}


def validation_networks(spec: SearchSpec, n: int) -> list:
    """``n`` networks spread over every (family, width) cell, at most half of any cell.

    Dense and Xception have two networks per width: drawn whole into the validation set, the table could
    neither calibrate nor assess itself on those families at all, which no user's table lacks.
    """
    from dataclasses import replace

    from igcnas.search_space.design_space import DesignSpace

    sizes: dict[tuple[str, int], int] = {}
    out = []
    for config in sample_configs(spec, 3 * n, seed=101):
        cell = (config.family, config.stages[0].width)
        if cell not in sizes:
            sizes[cell] = DesignSpace(replace(spec, families=(cell[0],), widths=(cell[1],))).count()
        if sum((c.family, c.stages[0].width) == cell for c in out) < sizes[cell] // 2:
            out.append(config)
        if len(out) == n:
            break
    return out


def run_one(runtime: str, spec: SearchSpec, *, n: int, calibration: int | None, holdout: int | None, batch: int,
            threads: int) -> dict:
    """One table built from scratch and judged on the validation networks (in this process)."""
    validation = validation_networks(spec, n)
    start = time.perf_counter()
    table = build_table(spec, runtime=runtime, threads=threads, batch=batch, calibration=calibration,
                        holdout=holdout, seed=0, calibration_exclude=validation)
    build_seconds = time.perf_counter() - start
    timings = measure_networks(validation, table.fingerprint)
    cal = table.calibration_networks
    macs_of = {arch_id(c): closed_form_costs(c).macs for c in [*validation, *space_configs(spec)]}
    cal_configs = sample_configs(spec, len(cal), seed=0, exclude=validation)  # build_table's own draw
    if [arch_id(c) for c in cal_configs] != [r["arch"] for r in cal]:
        raise RuntimeError("the calibration networks differ from the table's: the draw is not reproducible")
    cal_macs = [closed_form_costs(c).macs for c in cal_configs]
    a, b = np.polyfit(cal_macs, [r["measured_ms"] for r in cal], 1) if len(cal) >= 2 else (0.0, 0.0)
    rows = []
    for config, timing in zip(validation, timings):
        features = table.features(config)
        ident = arch_id(config)
        rows.append({"arch_id": ident, "family": config.family, "width": config.stages[0].width,
                     "measured_ms": timing.ms, "contended": timing.contended,
                     "table": table.predict(config),
                     "table_plain_sum": predict_from_features(Calibration(), features),
                     "macs_linear": float(a * macs_of[ident] + b)})
    measured = [r["measured_ms"] for r in rows]
    out = {"fingerprint": table.fingerprint.describe(), "build_seconds": round(build_seconds, 1),
           "parts_timed": len(table.entries), "calibration": table.calibration.as_dict(),
           "self_reported": table.assessment.as_dict(), "quality": table.quality_lines(),
           "predictors": {p: scores([r[p] for r in rows], measured) for p in PREDICTORS},
           "by_family": {}, "rows": rows, "contended_validation": sum(r["contended"] for r in rows)}
    for family in sorted({r["family"] for r in rows}):
        subset = [r for r in rows if r["family"] == family]
        out["by_family"][family] = {"n": len(subset), **scores([r["table"] for r in subset],
                                                               [r["measured_ms"] for r in subset])}
    out["worst"] = sorted(rows, key=lambda r: -abs(r["table"] / r["measured_ms"] - 1))[:3]
    return out


def worker(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.WARNING)
    result: dict = {"load_average_at_start": round(os.getloadavg()[0], 2), "spaces": {}}
    for name in args.spaces.split(","):
        spec = space(name, args.quick)
        result["spaces"][name] = {}
        for runtime in args.runtimes.split(","):
            print(f"  {name} / {runtime} ...", file=sys.stderr, flush=True)
            result["spaces"][name][runtime] = run_one(runtime, spec, n=args.n, calibration=args.calibration,
                                                      holdout=args.holdout, batch=args.batch,
                                                      threads=args.threads)
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return result


def across_runs(runs: list[dict], name: str, runtime: str) -> dict:
    """The same networks' measured latency from run to run, and each run's figures side by side."""
    per_run = [r["spaces"][name][runtime] for r in runs]
    by_arch: dict[str, list[float]] = {}
    for r in per_run:
        for row in r["rows"]:
            by_arch.setdefault(row["arch_id"], []).append(row["measured_ms"])
    spreads = {a: (max(v) - min(v)) / statistics.median(v) for a, v in by_arch.items() if len(v) == len(runs)}
    predicted: dict[str, list[float]] = {}
    for r in per_run:
        for row in r["rows"]:
            predicted.setdefault(row["arch_id"], []).append(row["table"])
    moved = [(max(v) - min(v)) / statistics.median(v) for v in predicted.values() if len(v) == len(runs)]
    floor = [all(abs(x / statistics.median(v) - 1) <= 0.10 for x in v) for v in by_arch.values()]
    out = {"share_within_10pct": [r["predictors"]["table"]["share_within_10pct"] for r in per_run],
           "self_reported_share": [r["self_reported"]["share_within_10pct"] for r in per_run],
           "calibration": [r["calibration"] for r in per_run],
           "plain_sum_share": [r["predictors"]["table_plain_sum"]["share_within_10pct"] for r in per_run],
           "macs_linear_share": [r["predictors"]["macs_linear"]["share_within_10pct"] for r in per_run],
           "build_seconds": [r["build_seconds"] for r in per_run]}
    if len(runs) > 1 and spreads:
        out.update(repeat_spread_median=round(statistics.median(spreads.values()), 4),
                   repeat_spread_worst=round(max(spreads.values()), 4),
                   repeat_floor_share=round(sum(floor) / len(floor), 4),
                   prediction_spread_median=round(statistics.median(moved), 4),
                   prediction_spread_worst=round(max(moved), 4))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes, one after another (default 3)")
    parser.add_argument("--spaces", default="digits,cifar32", help="digits, cifar32 (default both)")
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--n", type=int, default=80, help="validation networks per space (default 80)")
    parser.add_argument("--calibration", type=int, help="calibration networks (default: two per family and width)")
    parser.add_argument("--holdout", type=int,
                        help="networks the table assesses itself on (default: the table's, at least 48)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: all cores)")
    parser.add_argument("--gap", type=float, default=30.0, help="seconds between runs (default 30)")
    parser.add_argument("--quick", action="store_true", help="two families, one width, 12 networks (6 to calibrate, 6 held out), one run (smoke)")
    parser.add_argument("--no-keep-memory", action="store_true",
                        help="leave glibc's malloc defaults while timing (the part switched off, for comparison)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--from-runs", nargs="+", metavar="RUN_JSON",
                        help="no measuring: summarise the per-run files an earlier --json wrote (PATH.runN)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads == 0:
        args.threads = os.cpu_count() or 1
    if args.quick:
        args.n, args.calibration, args.holdout, args.runs = 12, 6, 6, 1
    if args.no_keep_memory:
        os.environ["IGCNAS_TIMER_KEEP_MEMORY"] = "0"  # read by the timer in the worker processes
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    forwarded = [a for a in sys.argv[1:] if a not in ("--quick",)] + (["--quick"] if args.quick else [])
    runs = [json.loads(Path(path).read_text()) for path in args.from_runs or []]
    for index in range(0 if runs else args.runs):
        if index:
            time.sleep(args.gap)
        print(f"run {index + 1}/{args.runs} (fresh process, tables rebuilt from scratch)", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, __file__, *forwarded, "--worker"], stdout=subprocess.PIPE, text=True,
                              check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if args.json:  # each run as it ends: a long benchmark's first runs can be read before the last ends
            Path(f"{args.json}.run{index + 1}").write_text(json.dumps(runs[-1], indent=1))
    summary = {name: {runtime: across_runs(runs, name, runtime) for runtime in args.runtimes.split(",")}
               for name in args.spaces.split(",")}
    memory = "glibc malloc defaults (--no-keep-memory)" if args.no_keep_memory else "freed memory kept while timing"
    print(f"{len(runs)} run(s), batch {args.batch}, {args.threads} thread(s), {memory}; "
          f"{runs[0]['spaces'][args.spaces.split(',')[0]][args.runtimes.split(',')[0]]['fingerprint']}")
    print(f"{'space':<8} {'runtime':<12} {'within 10% per run':<22} {'self-reported':<20} {'repeat spread':<16} "
          f"{'floor':>6}  calibration per run")
    for name, by_runtime in summary.items():
        for runtime, s in by_runtime.items():
            shares = " ".join(f"{x:.3f}" for x in s["share_within_10pct"])
            own = " ".join(f"{x:.3f}" for x in s["self_reported_share"])
            spread = (f"{s['repeat_spread_median']:.1%} / {s['repeat_spread_worst']:.1%}"
                      if "repeat_spread_median" in s else "-")
            floor = f"{s['repeat_floor_share']:.3f}" if "repeat_floor_share" in s else "-"
            forms = "; ".join(f"{c['name']} {c['scale']:.3f}x {c['per_part'] * 1e3:+.1f}us/part {c['offset'] * 1e3:+.1f}us"
                              for c in s["calibration"])
            print(f"{name:<8} {runtime:<12} {shares:<22} {own:<20} {spread:<16} {floor:>6}  {forms}")
    print("(repeat spread: the same network's measured latency, (max - min) / median over runs, median / worst over"
          " networks; floor: share of networks whose every run is within +-10% of their median)")
    for name, by_runtime in summary.items():
        for runtime, s in by_runtime.items():
            if "prediction_spread_median" in s:
                print(f"{name:<8} {runtime:<12} the same network's prediction from run to run: "
                      f"{s['prediction_spread_median']:.1%} apart (median), {s['prediction_spread_worst']:.1%} (worst)")
    for name, by_runtime in summary.items():
        for runtime, s in by_runtime.items():
            print(f"{name:<8} {runtime:<12} bare sum of parts: {' '.join(f'{x:.3f}' for x in s['plain_sum_share'])}; "
                  f"MACs line: {' '.join(f'{x:.3f}' for x in s['macs_linear_share'])}; table built in "
                  f"{' '.join(f'{x:.0f}' for x in s['build_seconds'])} s")
    last = runs[-1]
    for name, by_runtime in last["spaces"].items():
        for runtime, r in by_runtime.items():
            print(f"  last run, {name}/{runtime}: " + "; ".join(
                f"{w['family']} w{w['width']} measured {w['measured_ms']:.4f} predicted {w['table']:.4f} "
                f"({w['table'] / w['measured_ms'] - 1:+.1%})" for w in r["worst"]) + f"; {r['quality'][0]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": runs, "args": vars(args)}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
