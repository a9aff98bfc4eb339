"""Generate the long-training ground truth of the tabular benchmark (bench/tables/igc_digits_long.jsonl.gz).

Every network of the 4-epoch table (``TABLE_SPEC``, ``bench/igc_table.py``) is trained twice per seed with
the search's own trainer on the search's validation split, one thread:

* at the search's fidelity (4 epochs, cosine over 4), recording after each epoch the accuracy as the search
  measures it and the accuracy with BatchNorm statistics re-estimated first (``recalibrated_curve``; the
  statistics are restored, so the training is the search's), and the training loss: every signal a rung
  could rank by;
* long (``--epochs``, cosine over them; chosen by ``--pilot``), recording the accuracy and training loss
  after every epoch: the accuracy a user gets from a full training.

Rows are appended to ``igc_digits_long.partial.jsonl`` as they finish (git ignores it), so a killed run
resumes; ``--shard i/n`` splits the networks between processes. When every network has a row the
compressed table is written sorted by arch_id with its sha256 and the noise floor (seed-to-seed spread of
the long-training accuracy) in ``igc_digits_long.md``.

``--pilot`` chooses the length: the best networks of the 4-epoch table (two per family) and two random ones
per family, seed 0, trained with cosine schedules of several lengths; the shortest length whose mean final
accuracy is within one validation image of every longer length's, over all of them and over their best
quarter, is the one to use.

    python bench/make_long_table.py --pilot [--lengths 10 20 30 45] [--json PATH]
    python bench/make_long_table.py --epochs 30 [--shard 0/2] [--limit N] [--finalize] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from igc_table import (DATASET, SPLIT_SEED, TABLE_SPEC, TABLES_DIR, TRAIN_SEEDS, VAL_FRACTION,  # noqa: E402
                       load_table, sha256_of)
from make_table import _shown, append_line, shard_todo  # noqa: E402

LONG_PATH = TABLES_DIR / "igc_digits_long.jsonl.gz"
LONG_PARTIAL = TABLES_DIR / "igc_digits_long.partial.jsonl"
LONG_README = "igc_digits_long.md"
COMMAND = "python bench/make_long_table.py"
SEARCH_EPOCHS = 4  # the table's (and the search's default) fidelity


def train_twice(config: dict[str, Any], data: Any, seed: int, epochs: int) -> dict[str, Any]:
    """One seed of one network: the search-fidelity training with every rung signal, then the long one."""
    from igcnas.evaluators.settings import TrainSettings
    from igcnas.evaluators.train import train_model
    from igcnas.models import build_model
    from igcnas.search_space.config_io import config_from_dict

    network = config_from_dict(config)
    short = train_model(build_model(network, seed=seed), data,
                        TrainSettings(epochs=SEARCH_EPOCHS, seed=seed, threads=1, recalibrated_curve=True,
                                     recalibrate_plain=False))
    long = train_model(build_model(network, seed=seed), data,
                       TrainSettings(epochs=epochs, seed=seed, threads=1, recalibrate_plain=False))

    def r(values: list[float]) -> list[float]:
        return [round(float(v), 6) for v in values]

    return {"search_curve": r(short.curve), "search_recalibrated": r(short.recalibrated_curve),
            "search_loss": r(short.train_loss), "search_seconds": round(short.seconds, 3),
            "long_curve": r(long.curve), "long_loss": r(long.train_loss), "long_seconds": round(long.seconds, 3)}


def read_long(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by arch_id of a long table (gzip) or its partial file; a torn last line is skipped."""
    if not path.exists():
        return {}
    opener = gzip.open if path.suffix == ".gz" else open
    rows: dict[str, dict[str, Any]] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["arch_id"]] = row
    return rows


def _complete(row: dict[str, Any], seeds: tuple[int, ...], epochs: int) -> bool:
    return row.get("epochs") == epochs and all(str(s) in row.get("seeds", {}) for s in seeds)


def pilot(data: Any, lengths: list[int], per_family: int, seed: int) -> dict[str, Any]:
    """Final accuracy of a few networks per family at several schedule lengths (seed 0)."""
    from igcnas.evaluators.settings import TrainSettings
    from igcnas.evaluators.train import train_model
    from igcnas.models import build_model
    from igcnas.search_space.config_io import config_from_dict

    table = load_table()
    rng = random.Random(seed)
    chosen: list[Any] = []
    for family in sorted({r.family for r in table.values()}):
        rows = sorted((r for r in table.values() if r.family == family), key=lambda r: -r.final_accuracy())
        chosen += rows[:per_family] + rng.sample(rows[per_family:], min(per_family, len(rows) - per_family))
    results: dict[str, dict[int, float]] = {}
    for i, row in enumerate(chosen, start=1):
        results[row.arch_id] = {}
        for length in lengths:
            out = train_model(build_model(config_from_dict(row.config), seed=0), data,
                              TrainSettings(epochs=length, seed=0, threads=1, recalibrate_plain=False))
            results[row.arch_id][length] = out.val_accuracy
        print(f"[{i}/{len(chosen)}] {row.family:<10} w{row.width} 4-epoch {row.final_accuracy():.3f} | "
              + " ".join(f"{n}ep {results[row.arch_id][n]:.3f}" for n in lengths), flush=True)
    image = 1.0 / len(data.val_index)
    means = {n: statistics.fmean(results[a][n] for a in results) for n in lengths}
    # The best quarter ranked by the mean over every length: ranked by one length's accuracy, that length
    # would look best by selection alone.
    top = sorted(results, key=lambda a: -statistics.fmean(results[a].values()))[:max(3, len(results) // 4)]
    top_means = {n: statistics.fmean(results[a][n] for a in top) for n in lengths}

    def settled(n: int) -> bool:  # within one validation image of every longer length, for both groups
        return all(group[m] - group[n] <= image for group in (means, top_means) for m in lengths if m > n)

    enough = min(n for n in lengths if settled(n))
    print("mean final accuracy by length: " + ", ".join(f"{n}: {means[n]:.4f}" for n in lengths))
    print(f"best quarter ({len(top)} networks) by length: " + ", ".join(f"{n}: {top_means[n]:.4f}" for n in lengths))
    print(f"one validation image = {image:.4f}; shortest length within one image of every longer one, for all "
          f"and for the best quarter: {enough}")
    return {"lengths": lengths, "networks": [r.arch_id for r in chosen], "final_accuracy": results, "mean": means,
            "best_quarter_mean": top_means, "one_image": image, "chosen_length": enough}


def finalize(seeds: tuple[int, ...], epochs: int, total: int, out_dir: Path) -> bool:
    """Write the compressed table and its README once every network has a complete row."""
    rows = {a: r for a, r in read_long(out_dir / LONG_PARTIAL.name).items() if _complete(r, seeds, epochs)}
    if len(rows) < total:
        print(f"{len(rows)}/{total} networks in {LONG_PARTIAL.name}; the table is written when all are done")
        return False
    table = out_dir / LONG_PATH.name
    text = "".join(json.dumps(rows[a], sort_keys=True, separators=(",", ":")) + "\n" for a in sorted(rows))
    tmp = table.with_name(table.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    tmp.replace(table)
    digest = sha256_of(table)
    spread = [abs(r["seeds"][str(seeds[0])]["long_curve"][-1] - r["seeds"][str(seeds[1])]["long_curve"][-1])
              for r in rows.values()] if len(seeds) > 1 else []
    hours = sum(s["search_seconds"] + s["long_seconds"] for r in rows.values() for s in r["seeds"].values()) / 3600
    _write_readme(out_dir, len(rows), digest, table.stat().st_size, hours, seeds, epochs, spread)
    print(f"wrote {_shown(table)}: {len(rows)} rows, sha256 {digest}")
    return True


def _write_readme(out_dir: Path, n: int, digest: str, size: int, hours: float, seeds: tuple[int, ...], epochs: int,
                  spread: list[float]) -> None:
    import torch

    floor = (f"median {statistics.median(spread):.4f}, 90th percentile "
             f"{sorted(spread)[int(0.9 * (len(spread) - 1))]:.4f}, mean {statistics.fmean(spread):.4f}"
             if spread else "n/a (one seed)")
    text = f"""# Long-training ground truth of the tabular benchmark

`igc_digits_long.jsonl.gz`: every network of `igc_digits.jsonl.gz` trained {epochs} epochs (cosine over
{epochs}) with the search's trainer, and again at the search's 4 epochs with every rung signal, for
seeds {list(seeds)}, on the search's validation split. Read by `bench/fidelity.py`.

* generated by: `{COMMAND} --epochs {epochs}` (resumable; `--shard i/n`; `--finalize`); length chosen by
  `{COMMAND} --pilot`
* date: {datetime.date.today().isoformat()}; torch {torch.__version__}, Python {platform.python_version()},
  {platform.machine()}, one thread per training
* rows: {n}; size {size / 1e6:.2f} MB; sha256 `{digest}`; training time {hours:.2f} h (all seeds)
* noise floor: |seed {seeds[0]} - seed {seeds[-1]}| of the {epochs}-epoch accuracy, over networks: {floor}

## Fields (one JSON object per line, sorted by `arch_id`; join with `igc_digits.jsonl.gz` for config and costs)

* `arch_id`, `family`, `width`, `params`, `macs`, `epochs` (the long length)
* `seeds`: `{{seed: {{...}}}}` with `search_curve` (validation accuracy after each of 4 epochs, as the search
  measures it), `search_recalibrated` (the same with BatchNorm statistics re-estimated first),
  `search_loss` (mean training loss per epoch), `long_curve`, `long_loss` (the same for every epoch of the
  long training), `search_seconds`, `long_seconds`

Verify: `sha256sum bench/tables/igc_digits_long.jsonl.gz`.
"""
    (out_dir / LONG_README).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="length of the long training (default 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TRAIN_SEEDS))
    parser.add_argument("--shard", default="0/1", help="i/n: this process trains networks whose index %% n == i")
    parser.add_argument("--limit", type=int, help="train at most this many new networks in this run")
    parser.add_argument("--finalize", action="store_true", help="only write the table from the partial file")
    parser.add_argument("--out-dir", type=Path, default=TABLES_DIR)
    parser.add_argument("--pilot", action="store_true", help="choose the length instead (see the docstring)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 30, 45])
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the pilot's results here")
    args = parser.parse_args()
    seeds = tuple(args.seeds)
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    if not 0 <= shard < n_shards:
        parser.error(f"--shard must be i/n with 0 <= i < n, got {args.shard}")
    if args.epochs < 1 or any(n < 1 for n in args.lengths):
        parser.error("--epochs and --lengths must be >= 1")

    import torch

    from igcnas.evaluators.datasets import load_dataset
    from igcnas.search_space.config_io import config_to_dict
    from igcnas.search_space.design_space import DesignSpace
    from igcnas.search_space.enumerate import arch_id

    torch.set_num_threads(1)
    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    space = DesignSpace(TABLE_SPEC)
    total = space.count()
    if args.finalize:
        return 0 if finalize(seeds, args.epochs, total, out_dir) else 1
    data = load_dataset(DATASET, seed=SPLIT_SEED, val_fraction=VAL_FRACTION)
    if args.pilot:
        result = pilot(data, sorted(args.lengths), args.per_family, seed=0)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0
    partial = out_dir / LONG_PARTIAL.name
    done = {a for a, r in read_long(partial).items() if _complete(r, seeds, args.epochs)}
    todo = shard_todo(space, args.shard, done, args.limit)
    print(f"{total} networks, {len(done)} done, {len(todo)} to train in this run (shard {args.shard}, seeds "
          f"{list(seeds)}, {args.epochs} epochs)", flush=True)
    from igcnas.search_space.costs import closed_form_costs

    started = time.time()
    for i, config in enumerate(todo, start=1):
        costs = closed_form_costs(config)
        row = {"arch_id": arch_id(config), "family": config.family, "width": config.stages[0].width,
               "params": int(costs.params), "macs": int(costs.macs), "epochs": args.epochs,
               "seeds": {str(s): train_twice(config_to_dict(config), data, s, args.epochs) for s in seeds}}
        append_line(partial, row)
        elapsed = time.time() - started
        finals = " ".join(f"{row['seeds'][str(s)]['long_curve'][-1]:.3f}" for s in seeds)
        print(f"[{i}/{len(todo)}] {row['arch_id']} {row['family']:<10} w{row['width']} long acc {finals}  "
              f"elapsed {elapsed / 60:.1f} min, eta {elapsed / i * (len(todo) - i) / 60:.1f} min", flush=True)
    finalize(seeds, args.epochs, total, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
