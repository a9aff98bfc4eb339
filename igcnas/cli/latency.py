"""``igc-nas latency-table``: time the parts a search space can produce, once per device and runtime."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from igcnas.errors import BadInput
from igcnas.evaluators.datasets import DATA_SHAPES, DATASETS

__all__ = ["register"]


def register(sub: Any) -> None:
    from igcnas.evaluators.latency_runtime import RUNTIMES
    from igcnas.search_space.spec import DEFAULT_BLOCKS, DEFAULT_FAMILIES, DEFAULT_MAX_L

    p = sub.add_parser(
        "latency-table", help="time every part of a search space on this device and runtime (predicted latency)",
        description="Time, once and in isolation, every distinct part (stem, unit of blocks with its skip, head "
                    "and classifier) the networks of a search space can have, on this machine with one runtime, "
                    "thread count and batch; then measure a few whole networks to calibrate the sum. A search "
                    "given the table (igc-nas search --latency-table PATH) predicts each network's latency before "
                    "training, checks --max-latency-ms against it and can minimise it (--latency-objective). An "
                    "existing table at --out is extended (parts it has are not timed again), so one table per "
                    "device and runtime serves many studies. Run it on an otherwise idle machine.")
    p.add_argument("--out", required=True, metavar="PATH", help="the table file (gzip JSON); extended when it exists")
    p.add_argument("--runtime", default="torch", help=f"{' or '.join(RUNTIMES)} (default torch: PyTorch eager)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads the runtime may use (default 1)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    # A table is built for a data set's networks without loading the data; an image folder gives the shape.
    p.add_argument("--dataset", default="digits", help=f"whose image shape to use: {', '.join(DATA_SHAPES)} "
                   "(default digits), or give --input-size, --in-channels and --num-classes")
    p.add_argument("--input-size", type=int, help="image side in pixels (default: the data set's)")
    p.add_argument("--in-channels", type=int, help="image channels (default: the data set's)")
    p.add_argument("--num-classes", type=int, help="classes (default: the data set's)")
    p.add_argument("--family", action="append", help="block family (repeatable; default: all of "
                   + ", ".join(DEFAULT_FAMILIES) + ")")
    p.add_argument("--width", type=int, action="append", help="first-stage width (repeatable; default: the "
                   "search's for the image size)")
    p.add_argument("--blocks", type=int, nargs="+", default=list(DEFAULT_BLOCKS),
                   help="blocks per stage (default " + " ".join(map(str, DEFAULT_BLOCKS)) + ")")
    p.add_argument("--max-l", type=int, default=DEFAULT_MAX_L, help=f"largest L (default {DEFAULT_MAX_L})")
    p.add_argument("--structured", default="off", metavar="on|off",
                   help="also time Structured Convolution stages (about 9x the parts; default off)")
    p.add_argument("--max-params", help="skip parts only networks over this parameter budget use (250k, 1.5M)")
    p.add_argument("--max-macs", help="skip parts only networks over this MAC budget use")
    p.add_argument("--calibration", type=int,
                   help="whole networks measured to calibrate the sum of parts (default: two per family and "
                        "width of the space, at least 16, or all it has; 0: the plain sum)")
    p.add_argument("--holdout", type=int,
                   help="other whole networks measured (twice) to state the table's own error, never fitted on "
                        "(default: as many as --calibration, at least 48, or all the space has left; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration networks' draw (default 0)")
    p.add_argument("--force", action="store_true",
                   help="extend a table measured on another device or runtime (its figures stay as they are)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=cmd_latency_table)


def _shape(args: argparse.Namespace) -> tuple[int, int, int]:
    if args.dataset not in DATASETS:
        raise BadInput(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    channels, size, classes = DATA_SHAPES.get(args.dataset, (None, None, None))
    shape = (args.in_channels or channels, args.input_size or size, args.num_classes or classes)
    for flag, value, low in (("--in-channels", shape[0], 1), ("--input-size", shape[1], 1),
                             ("--num-classes", shape[2], 2)):
        if value is None:
            raise BadInput(f"{flag} is needed with --dataset {args.dataset}")
        if value < low:
            raise BadInput(f"{flag} must be an integer >= {low}, got {value}")
    return shape  # type: ignore[return-value]


def cmd_latency_table(args: argparse.Namespace) -> int:
    from igcnas.cli._common import progress_bar
    from igcnas.evaluators.latency_build import build_table
    from igcnas.evaluators.latency_runtime import runtime_runner
    from igcnas.evaluators.latency_table import LatencyTable
    from igcnas.nas.budget import Budget, parse_count
    from igcnas.nas.options import on_off
    from igcnas.search_space.spec import SearchSpec

    channels, size, classes = _shape(args)
    runtime_runner(args.runtime, threads=args.threads)  # validates runtime and threads, and that it is installed
    if args.batch < 1:
        raise BadInput(f"--batch must be an integer >= 1, got {args.batch}")
    for flag, value in (("--calibration", args.calibration), ("--holdout", args.holdout)):
        if value is not None and value < 0:
            raise BadInput(f"{flag} must be an integer >= 0, got {value}")
    spec = SearchSpec.for_data(in_channels=channels, input_size=size, num_classes=classes,
                               families=tuple(dict.fromkeys(args.family)) if args.family else None,
                               widths=tuple(args.width) if args.width else None, blocks=tuple(args.blocks),
                               max_l=args.max_l, structured=on_off(args.structured, "--structured"))
    budget = Budget(max_params=parse_count(args.max_params, "--max-params"),
                    max_macs=parse_count(args.max_macs, "--max-macs"))

    out = Path(args.out)
    if out.is_dir():
        raise BadInput(f"--out {args.out!r} is a folder; give a file path (e.g. {args.out.rstrip('/')}/table.json.gz)")
    parent = next((p for p in (out.parent, *out.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise BadInput(f"--out {args.out!r} cannot be written ({parent} is not a writable folder)")
    table = LatencyTable.load(out) if out.exists() else None
    with progress_bar("timing parts") as update:
        table = build_table(spec, runtime=args.runtime, threads=args.threads, batch=args.batch, table=table,
                            fits=budget.admits, calibration=args.calibration, holdout=args.holdout, seed=args.seed,
                            force=args.force, progress=update)
    table.save(out)
    summary = {"table": str(out), "parts": len(table.entries), "fingerprint": table.fingerprint.describe(),
               "calibration": table.calibration.as_dict(), "assessment": table.assessment.as_dict(),
               "quality": table.quality_lines(), "build_seconds": table.build_seconds}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        c = table.calibration
        print(f"{out}: {len(table.entries)} parts timed on {table.fingerprint.describe()} in "
              f"{table.build_seconds:.0f} s; calibration {c.name!r} from {len(table.calibration_networks)} whole "
              f"networks: {c.scale:.3f} x sum of parts + {c.per_part * 1000:.1f} us per part after the first"
              f" + {c.offset * 1000:.1f} us")
        for line in table.quality_lines():
            print(line)
    return 0
