"""Where latency noise comes from: the same networks timed in fresh processes, with one factor changed at a time.

A latency table is only as repeatable as its timer. This benchmark times a fixed set of networks of a space
(default: 12 networks of the digits space, every family) in ``--processes`` fresh processes started one after
another, ``--gap`` seconds apart, and reports, per timer variant, how far one network's figure moves from
process to process (the run-to-run spread: (max - min) / median over processes, median and worst over the
networks). Within a process, the variants are applied to every network in turns (round robin), so that a
slow moment of the machine hits every variant alike.

Variants (each a statistic over timed blocks of calls; ``torch.utils.benchmark`` picks the block length):

* ``min_3ms``: the old timer (fastest of 9 samples of >= 3 ms loops);
* ``median_blocks``: median over the blocks of ``blocked_autorange`` (``--run-time`` of timed calls);
* ``min_blocks``: the fastest block of the same blocks;
* ``median_copies``: the module and its input copied to fresh memory ``--copies`` times, each timed as
  ``median_blocks``, the median over the copies (a process's memory layout is one draw; copies are several);
* ``gated_min`` / ``gated``: :mod:`igcnas.evaluators.timing` on one network at a time (blocks counted only in
  the machine's fast phase, told by a probe), its figure (the fastest counted block) / the median of the
  counted blocks;
* ``gated_turns_min`` / ``gated_turns``: the same with every network timed in turns (as a table's parts are).

Factors outside the timer, each a set of processes: ``--pin`` (the process pinned to one core),
``--load`` (a busy loop on the other core while it measures).

    python bench/latency_noise.py [--runtime torch|onnxruntime] [--processes 4] [--gap 20] [--input-size 8]
                                  [--batch 1] [--threads 1] [--pin] [--load] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("min_3ms", "median_blocks", "min_blocks", "median_copies", "gated_min", "gated", "gated_turns_min",
            "gated_turns")


def _networks(input_size: int, n: int) -> list:
    from igcnas.evaluators.latency_build import sample_configs
    from igcnas.search_space.spec import SearchSpec

    channels = 1 if input_size == 8 else 3
    spec = SearchSpec.for_data(in_channels=channels, input_size=input_size, num_classes=10)
    return sample_configs(spec, n, seed=11)


def _call_for(runtime: str, model, shape: tuple[int, ...], batch: int, threads: int):
    """A zero-argument call running ``model`` once on ``runtime``, and what keeps its buffers alive."""
    import numpy as np
    import torch

    if runtime == "torch":
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
        model.eval()

        def call() -> None:
            with torch.inference_mode():
                model(x)
        return call
    from igcnas.evaluators.latency_runtime import onnx_bytes
    from igcnas.models.onnx_export import ort_session

    session = ort_session(onnx_bytes(model.eval(), shape, batch), threads=threads)
    feed = {"images": np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)}
    return lambda: session.run(None, feed)


def _old_timer(call, *, sample_ms: float = 3.0, samples: int = 9, warmup: int = 3) -> float:
    """The latency tables' timer before this study, kept here as the comparison arm: the fastest of
    ``samples`` consecutive loops of at least ``sample_ms`` each."""
    for _ in range(warmup):
        call()
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            call()
        elapsed = (time.perf_counter() - start) * 1000.0
        if elapsed >= sample_ms or loops >= 1 << 14:
            break
        loops = min(1 << 14, max(loops * 2, int(loops * sample_ms / max(elapsed, 1e-3)) + 1))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        times.append((time.perf_counter() - start) * 1000.0 / loops)
    return min(times)


def _blocks(call, run_time: float, threads: int) -> list[float]:
    from torch.utils.benchmark import Timer

    measurement = Timer(stmt="call()", globals={"call": call}, num_threads=threads).blocked_autorange(
        min_run_time=run_time)
    return [t * 1000.0 for t in measurement.times]


def worker(args: argparse.Namespace) -> dict:
    import torch

    from igcnas.evaluators.measured_costs import as_designed
    from igcnas.models import build_model

    if args.pin:
        os.sched_setaffinity(0, {0})
    torch.set_num_threads(args.threads)
    configs = _networks(args.input_size, args.n)
    models = [build_model(c, seed=0, form="deployed") for c in configs]
    calls = []
    for c, m in zip(configs, models):
        with as_designed(m):
            calls.append(_call_for(args.runtime, m, c.input_shape, args.batch, args.threads))
    out: dict[str, list[float]] = {v: [math.inf] * len(configs) for v in VARIANTS}
    for _ in range(args.passes):
        for i, (c, m, call) in enumerate(zip(configs, models, calls)):
            for variant in args.variants.split(","):
                if variant == "min_3ms":
                    ms = _old_timer(call)
                elif variant == "median_blocks":
                    ms = statistics.median(_blocks(call, args.run_time, args.threads))
                elif variant == "min_blocks":
                    ms = min(_blocks(call, args.run_time, args.threads))
                elif variant in ("gated", "gated_min"):
                    from igcnas.evaluators.timing import time_call

                    timing = time_call(call, threads=args.threads)
                    ms = timing.median_ms if variant == "gated" else timing.ms
                elif variant in ("gated_turns", "gated_turns_min"):
                    continue  # all networks at once, below
                else:
                    per_copy = []
                    for _ in range(args.copies):
                        fresh = copy.deepcopy(m)
                        with as_designed(fresh):
                            fresh_call = _call_for(args.runtime, fresh, c.input_shape, args.batch, args.threads)
                        per_copy.append(statistics.median(_blocks(fresh_call, args.run_time / args.copies,
                                                                  args.threads)))
                    ms = statistics.median(per_copy)
                out[variant][i] = min(out[variant][i], ms) if args.passes > 1 else ms
    from igcnas.evaluators.timing import time_calls

    turns = time_calls(calls, threads=args.threads) if "gated_turns" in args.variants else []
    out["gated_turns"], out["gated_turns_min"] = [t.median_ms for t in turns], [t.ms for t in turns]
    from igcnas.search_space.enumerate import arch_id

    return {"arch": [arch_id(c) for c in configs], "family": [c.family for c in configs], "ms": out,
            "load_average": os.getloadavg()[0]}


def _busy(stop_at: float) -> None:
    os.sched_setaffinity(0, {1})
    x = 0
    while time.time() < stop_at:
        x += 1


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between processes (default 20)")
    parser.add_argument("--n", type=int, default=12, help="networks (default 12)")
    parser.add_argument("--input-size", type=int, default=8, choices=(8, 32))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-time", type=float, default=0.2, help="seconds of timed calls per figure (default 0.2)")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--pin", action="store_true", help="pin each measuring process to core 0")
    parser.add_argument("--load", action="store_true", help="keep the other core busy while measuring")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    runs = []
    forwarded = [a for a in sys.argv[1:] if a not in ("--load",)]
    for p in range(args.processes):
        if p:
            time.sleep(args.gap)
        busy = None
        if args.load:
            busy = multiprocessing.Process(target=_busy, args=(time.time() + 3600,), daemon=True)
            busy.start()
        try:
            done = subprocess.run([sys.executable, __file__, "--worker", *forwarded], capture_output=True, text=True,
                                  check=True)
        finally:
            if busy is not None:
                busy.terminate()
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"process {p + 1}/{args.processes} done (load {runs[-1]['load_average']:.2f})", file=sys.stderr)
    n = len(runs[0]["arch"])
    result: dict = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "variants": {}}
    print(f"{args.runtime}, {args.input_size}x{args.input_size}, batch {args.batch}, {args.threads} thread(s), "
          f"{args.processes} fresh processes {args.gap:.0f} s apart{', pinned' if args.pin else ''}"
          f"{', other core busy' if args.load else ''}")
    print(f"{'variant':<15} {'median ms':>9} {'spread median':>13} {'spread worst':>12}  worst network")
    for variant in args.variants.split(","):
        per_net = [[r["ms"][variant][i] for r in runs] for i in range(n)]
        spreads = [spread(v) for v in per_net]
        worst = max(range(n), key=lambda i: spreads[i])
        result["variants"][variant] = {"spread_median": statistics.median(spreads), "spread_worst": max(spreads),
                                       "per_network_ms": per_net}
        print(f"{variant:<15} {statistics.median(statistics.median(v) for v in per_net):>9.4f} "
              f"{statistics.median(spreads):>13.1%} {max(spreads):>12.1%}  {runs[0]['family'][worst]} "
              + " ".join(f"{x:.4f}" for x in per_net[worst]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
