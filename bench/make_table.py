"""Generate the tabular benchmark (bench/tables/igc_digits.jsonl.gz): train every network of the table's space.

Each network of ``TABLE_SPEC`` is built with ``build_model(config, seed=s)`` and trained with the search's
own ``train_model`` at the search's fidelity (``TrainSettings`` defaults) for every training seed, on
one thread. Rows are appended (and flushed) to ``bench/tables/igc_digits.partial.jsonl`` as they finish,
so a killed run resumes where it stopped; shards (``--shard i/n``) split the networks between processes
that append to the same file. Once every network has a row, the compressed table is written sorted by
arch_id, its sha256 printed, and ``bench/tables/README.md`` records how it was made.

``--out-dir`` puts the partial file, the table and its README in another folder (a smoke test runs there, so
that it never touches the committed table or a generation in progress).

    python bench/make_table.py [--limit N] [--seeds 0 1] [--shard 0/1] [--finalize] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from igc_table import (DATASET, PARTIAL_PATH, SPLIT_SEED, TABLE_PATH, TABLE_SPEC, TABLES_DIR,  # noqa: E402
                       TRAIN_SEEDS, VAL_FRACTION, Row, read_rows, write_table)

COMMAND = "python bench/make_table.py"


def append_line(path: Path, data: dict) -> None:
    """One ``write`` of a whole line on an O_APPEND descriptor: shards appending at once never interleave."""
    line = (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (the usual case), else as given."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _done_ids(partial: Path, seeds: tuple[int, ...]) -> set[str]:
    if not partial.exists():
        return set()
    return {r.arch_id for r in read_rows(partial) if all(s in r.curves for s in seeds)}


def shard_todo(space, shard: str, done: set[str], limit: int | None) -> list:
    """The networks of ``space`` this shard (``i/n``: index % n == i) trains: not done, at most ``limit``."""
    from igcnas.search_space.enumerate import arch_id

    index, n_shards = (int(x) for x in shard.split("/"))
    todo = [c for i, c in enumerate(space) if i % n_shards == index and arch_id(c) not in done]
    return todo if limit is None else todo[:limit]


def train_row(config, data, seeds: tuple[int, ...]) -> Row:
    """Train ``config`` once per seed at the search's fidelity; params and MACs in closed form."""
    import torch

    from igcnas.evaluators.train import TrainSettings, train_model
    from igcnas.models import build_model
    from igcnas.search_space.config_io import config_to_dict
    from igcnas.search_space.costs import closed_form_costs
    from igcnas.search_space.enumerate import arch_id

    torch.set_num_threads(1)
    costs = closed_form_costs(config)
    curves: dict[int, list[float]] = {}
    seconds: dict[int, float] = {}
    for seed in seeds:
        model = build_model(config, seed=seed)
        result = train_model(model, data, TrainSettings(seed=seed, threads=1, recalibrate_plain=False))
        curves[seed] = [round(float(a), 6) for a in result.curve]
        seconds[seed] = round(float(result.seconds), 4)
    return Row(arch_id=arch_id(config), config=config_to_dict(config), family=config.family,
               width=config.stages[0].width, blocks=config.stages[0].blocks, params=int(costs.params),
               macs=int(costs.macs), curves=curves, seconds=seconds)


def finalize(seeds: tuple[int, ...], total: int, started: float | None, out_dir: Path = TABLES_DIR) -> bool:
    """Write the compressed table and its README once every network has a row; False while some are missing."""
    partial, table = out_dir / PARTIAL_PATH.name, out_dir / TABLE_PATH.name
    rows = {r.arch_id: r for r in read_rows(partial) if all(s in r.curves for s in seeds)}
    if len(rows) < total:
        print(f"{len(rows)}/{total} networks in {partial.name}; the table is written when all are done")
        return False
    digest = write_table(list(rows.values()), table)
    size = table.stat().st_size
    hours = sum(sum(r.seconds.values()) for r in rows.values()) / 3600
    write_readme(len(rows), digest, size, hours, seeds, out_dir)
    print(f"wrote {_shown(table)}: {len(rows)} rows, {size / 1e6:.2f} MB, sha256 {digest}")
    if started is not None:
        print(f"this run took {(time.time() - started) / 60:.1f} min")
    return True


def write_readme(n_rows: int, digest: str, size: int, train_hours: float, seeds: tuple[int, ...],
                 out_dir: Path = TABLES_DIR) -> None:
    import torch

    today = datetime.date.today().isoformat()
    spec = json.dumps(TABLE_SPEC.as_dict())
    text = f"""# Tabular benchmark of the IGC space on digits

`igc_digits.jsonl.gz`: every network of a reduced IGC space, trained with the search's own trainer at
the search's fidelity, so that samplers and early-stopping rules can be compared on a simulated clock
(`bench/tabular.py`, `bench/sampler_comparison.py`) instead of by training.

* generated by: `{COMMAND}` (resumable; `--shard i/n` splits the work between processes;
  `--finalize` rewrites this file and the table from `igc_digits.partial.jsonl`, which git ignores)
* date: {today}; torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, one thread
  per training run
* rows: {n_rows} (every network of the space, one per distinct `arch_id`)
* size: {size / 1e6:.2f} MB
* sha256 of `igc_digits.jsonl.gz`: `{digest}`
* total measured training time: {train_hours:.2f} h (all seeds)

## What was trained

* space: `SearchSpec({spec})` (`TABLE_SPEC` in `bench/igc_table.py`)
* data: `load_dataset("{DATASET}", seed={SPLIT_SEED}, val_fraction={VAL_FRACTION})`: the search's validation split
* training: `build_model(config, seed=s)`, `train_model(model, data, TrainSettings(seed=s, threads=1, recalibrate_plain=False))`, i.e. the
  search's defaults (4 epochs, batch 64, lr 0.05, SGD Nesterov, cosine decay), for seeds s in {list(seeds)}

## Fields (one JSON object per line, sorted by `arch_id`)

* `arch_id`: `igcnas.search_space.enumerate.arch_id(config)`, the key a search records as the `arch_id` user attr
* `config`: `config_to_dict(config)`; `family`, `width` (first-stage width), `blocks` (per stage)
* `params`, `macs`: exact closed-form counts (`closed_form_costs`), multiply-accumulates at batch 1
* `curves`: `{{seed: [validation accuracy after epoch 1, 2, 3, 4]}}`
* `seconds`: `{{seed: measured training seconds for all 4 epochs}}` (`TrainResult.seconds`, wall clock on a
  shared machine: noisy, but of the right relative size between networks)

Verify: `sha256sum bench/tables/igc_digits.jsonl.gz`.
"""
    (out_dir / "README.md").write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="train at most this many new networks in this run")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TRAIN_SEEDS))
    parser.add_argument("--shard", default="0/1", help="i/n: this process trains networks whose index %% n == i")
    parser.add_argument("--finalize", action="store_true", help="only write the table from the partial file")
    parser.add_argument("--out-dir", type=Path, default=TABLES_DIR,
                        help="folder of the partial file, the table and its README (default bench/tables)")
    args = parser.parse_args()
    seeds = tuple(args.seeds)
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    if not 0 <= shard < n_shards:
        parser.error(f"--shard must be i/n with 0 <= i < n, got {args.shard}")

    from igcnas.search_space.design_space import DesignSpace

    space = DesignSpace(TABLE_SPEC)
    total = space.count()
    out_dir: Path = args.out_dir.resolve()
    partial = out_dir / PARTIAL_PATH.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.finalize:
        return 0 if finalize(seeds, total, None, out_dir) else 1

    import torch

    from igcnas.evaluators.datasets import load_dataset

    torch.set_num_threads(1)
    data = load_dataset(DATASET, seed=SPLIT_SEED, val_fraction=VAL_FRACTION)
    done = _done_ids(partial, seeds)
    todo = shard_todo(space, args.shard, done, args.limit)
    print(f"{total} networks, {len(done)} done, {len(todo)} to train in this run (shard {args.shard}, seeds "
          f"{list(seeds)})", flush=True)
    started = time.time()
    for i, config in enumerate(todo, start=1):
        row = train_row(config, data, seeds)
        append_line(partial, row.as_dict())
        elapsed = time.time() - started
        eta = elapsed / i * (len(todo) - i)
        finals = " ".join(f"{row.curves[s][-1]:.3f}" for s in seeds)
        print(f"[{i}/{len(todo)}] {row.arch_id} {row.family:<10} w{row.width} acc {finals} "
              f"{sum(row.seconds.values()):.1f}s  elapsed {elapsed / 60:.1f} min, eta {eta / 60:.1f} min", flush=True)
    finalize(seeds, total, started, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
