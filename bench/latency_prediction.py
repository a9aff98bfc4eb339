"""Latency prediction: how close a latency table's predictions come to measured latency, per runtime.

For each runtime (PyTorch eager, ONNX Runtime) on this machine, one thread, batch 1, the default
search space of the bundled digits data (8x8 images):

1. draw the validation networks (``--n``), spread over every (family, width) cell of the space;
2. build a latency table from scratch (``igc-nas latency-table``'s code path): every distinct part of the
   space timed once, then whole calibration networks measured for the fit, never a validation network
   (``build_table(calibration_exclude=...)``); ``build_seconds`` is its time. The table's covering
   networks (one per stage choice, whose parts were timed but which were never measured whole) may be
   among the validation networks -- dense and Xception have only ten networks each, all covering ones,
   and two per width, so the validation draw takes them all and their predictions are calibrated on
   the other families only -- and are reported apart (``groups``: ``covering`` and ``not_covering``);
3. measure each whole network on the runtime (same timer as the parts; the fastest of two measurements
   made in turns over the list, as the table's parts and calibration networks are) and compare.

Side by side, on the same networks and measurements (what each part of the predictor contributes):

* ``table``: the table's prediction (sum of parts with the chosen calibration);
* ``table_global_calibration``: the same table, the per-family calibration terms switched off (the best
  of the calibrations common to all families);
* ``table_plain_sum``: the same table, calibration switched off (the bare sum of parts);
* ``macs_linear``: a MACs-only predictor, latency = a * MACs + b fitted on the same calibration networks
  (what a MACs budget implicitly assumes).

Reported per runtime: ``share_within_10pct``, ``rmse_ms``, ``mean_abs_rel_error``, Spearman rank
correlation with the measured latency (and of MACs alone), the worst networks, per-family shares.

    python bench/latency_prediction.py [--json PATH] [--runtimes torch,onnxruntime] [--n 80] [--quick]

Run it on an otherwise idle machine: another process competing for the cores moves measured latencies
by tens of percent at batch 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from igcnas.evaluators.latency import (build_table, calibration_size, choose_calibration,  # noqa: E402
                                       measure_networks_ms, sample_configs, space_configs)
from igcnas.search_space.costs import closed_form_costs  # noqa: E402
from igcnas.search_space.enumerate import arch_id  # noqa: E402
from igcnas.search_space.spec import SearchSpec  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def scores(predicted: list[float], measured: list[float]) -> dict:
    p, m = np.array(predicted), np.array(measured)
    rel = p / m - 1.0
    return {"share_within_10pct": round(float(np.mean(np.abs(rel) <= 0.10)), 4),
            "rmse_ms": round(float(np.sqrt(np.mean((p - m) ** 2))), 5),
            "mean_abs_rel_error": round(float(np.mean(np.abs(rel))), 4),
            "spearman": round(spearman(predicted, measured), 4)}


def run_runtime(runtime: str, spec: SearchSpec, *, n: int, calibration: int | None, threads: int,
                table_path: Path | None, progress: bool) -> dict:
    def show(done: int, total: int) -> None:
        if progress and (done == total or done % max(1, total // 10) == 0):
            print(f"  {runtime}: {done}/{total} parts", file=sys.stderr, flush=True)

    # The held-out networks are drawn first and never calibrated with (dense and Xception have two networks
    # per width: drawn here, they are not in the calibration at all, so their predictions are extrapolated).
    validation = sample_configs(spec, n, seed=101)
    start = time.perf_counter()
    table = build_table(spec, runtime=runtime, threads=threads, batch=1, calibration=calibration, seed=0,
                        progress=show, calibration_exclude=validation)
    build_seconds = time.perf_counter() - start
    if table_path is not None:
        table.save(table_path)
    covering = space_configs(spec)
    covering_ids = {arch_id(c) for c in covering}
    # The same draw build_table calibrated with (same seed, same exclusions).
    cal = sample_configs(spec, calibration if calibration is not None else calibration_size(spec), seed=0,
                         exclude=validation)
    if [arch_id(c) for c in cal] != [r["arch"] for r in table.calibration_networks]:
        raise RuntimeError("the calibration networks differ from the table's: the draw is not reproducible")
    # The MACs-only predictor, fitted on the table's own calibration networks.
    a, b = np.polyfit([closed_form_costs(c).macs for c in cal], [r["measured_ms"] for r in table.calibration_networks], 1)
    global_fit = choose_calibration(table.calibration_networks,
                                    names=("sum", "offset", "per_part", "full", "full_boundary"))
    measured_all = dict(zip((arch_id(c) for c in validation), measure_networks_ms(validation, table.fingerprint)))
    rows = []
    for group, configs in (("validation", validation),):
        for config in configs:
            total, parts = table.parts_sum(config)
            macs = closed_form_costs(config).macs
            rows.append({"group": group, "covering": arch_id(config) in covering_ids, "family": config.family, "width": config.stages[0].width,
                         "arch_id": arch_id(config), "parts": parts, "macs": macs,
                         "measured_ms": measured_all[arch_id(config)],
                         "table": table.predict(config), "table_plain_sum": total,
                         "table_global_calibration": global_fit.apply(table.features(config)),
                         "macs_linear": float(a * macs + b)})
    out: dict = {"runtime": runtime, "fingerprint": table.fingerprint.describe(),
                 "build_seconds": round(build_seconds, 1), "parts_timed": len(table.entries),
                 "covering_networks": len(covering), "calibration": table.calibration.as_dict(),
                 "global_calibration": global_fit.as_dict(),
                 "validation_networks": len(validation), "predictors": {}, "by_family": {}, "groups": {}}
    valid = [r for r in rows if r["group"] == "validation"]
    measured = [r["measured_ms"] for r in valid]
    for predictor in ("table", "table_global_calibration", "table_plain_sum", "macs_linear"):
        out["predictors"][predictor] = scores([r[predictor] for r in valid], measured)
    out["macs_spearman"] = round(spearman([r["macs"] for r in valid], measured), 4)
    for family in sorted({r["family"] for r in valid}):
        subset = [r for r in valid if r["family"] == family]
        out["by_family"][family] = {"n": len(subset), **scores([r["table"] for r in subset],
                                                               [r["measured_ms"] for r in subset])}
    for label, subset in (("not_covering", [r for r in valid if not r["covering"]]),
                          ("covering", [r for r in valid if r["covering"]])):
        if subset:
            out["groups"][label] = {"n": len(subset), **scores([r["table"] for r in subset],
                                                               [r["measured_ms"] for r in subset])}
    worst = sorted(valid, key=lambda r: -abs(r["table"] / r["measured_ms"] - 1))[:5]
    out["worst"] = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in worst]
    out["rows"] = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--n", type=int, default=80, help="validation networks (default 80: about 55 of them are "
                        "not among the covering networks either)")
    parser.add_argument("--calibration", type=int, help="calibration networks (default: two per family and width)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tables", help="also save the built tables in this folder")
    parser.add_argument("--quick", action="store_true", help="two families, one width, 12 networks (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        spec = SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10, families=("igcv3", "igcv2"),
                                   widths=(16,))
        args.n, args.calibration = 12, 6
    else:
        spec = SearchSpec.for_data(in_channels=1, input_size=8, num_classes=10)
    load = os.getloadavg()[0]
    results = {"space": spec.as_dict(), "load_average_at_start": round(load, 2), "runtimes": {}}
    for runtime in args.runtimes.split(","):
        table_path = Path(args.tables) / f"{runtime}.json.gz" if args.tables else None
        if table_path is not None:
            table_path.parent.mkdir(parents=True, exist_ok=True)
        results["runtimes"][runtime] = run_runtime(runtime, spec, n=args.n, calibration=args.calibration,
                                                   threads=args.threads, table_path=table_path, progress=True)
    results["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(f"space: {'quick (igcv3, igcv2 at width 16)' if args.quick else 'default digits space'}; load average "
          f"{load:.2f} at start, {results['load_average_at_end']:.2f} at end")
    header = f"{'runtime':<12} {'predictor':<24} {'within 10%':>10} {'RMSE ms':>9} {'mean |err|':>10} {'Spearman':>9}"
    print(header)
    for runtime, r in results["runtimes"].items():
        for predictor, s in r["predictors"].items():
            print(f"{runtime:<12} {predictor:<24} {s['share_within_10pct']:>10.3f} {s['rmse_ms']:>9.4f} "
                  f"{s['mean_abs_rel_error']:>10.3f} {s['spearman']:>9.3f}")
        print(f"{runtime:<12} {'(MACs alone)':<24} {'':>10} {'':>9} {'':>10} {r['macs_spearman']:>9.3f}")
    for runtime, r in results["runtimes"].items():
        print(f"\n{runtime}: {r['parts_timed']} parts from {r['covering_networks']} covering networks, built in "
              f"{r['build_seconds']:.0f} s; calibration {r['calibration']}; {r['validation_networks']} validation "
              f"networks; {r['fingerprint']}")
        for family, s in r["by_family"].items():
            print(f"  {family:<12} n={s['n']:<3} within 10%: {s['share_within_10pct']:.2f}  "
                  f"mean |err| {s['mean_abs_rel_error']:.3f}")
        for group, s in r["groups"].items():
            print(f"  {group}: n={s['n']} within 10%: {s['share_within_10pct']:.2f}  "
                  f"mean |err| {s['mean_abs_rel_error']:.3f}")
        print("  worst: " + "; ".join(f"{w['family']} w{w['width']} {w['arch_id']} measured {w['measured_ms']:.4f} "
                                      f"predicted {w['table']:.4f} ({w['table'] / w['measured_ms'] - 1:+.1%})"
                                      for w in r["worst"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
