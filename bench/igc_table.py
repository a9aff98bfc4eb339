"""The tabular benchmark of the IGC space (the NAS-Bench method): what the table covers and how to read it.

A reduced but real space on the bundled digits data: every network of :data:`TABLE_SPEC` was trained
with the search's own trainer at the search's own fidelity (``TrainSettings`` defaults: 4 epochs, batch
64, lr 0.05) for each of :data:`TRAIN_SEEDS`, on the validation split the search uses (split seed 0,
validation fraction 0.2). A row keeps the per-epoch validation accuracy of each seed (so that any rung
schedule can be replayed), the exact params and MACs (closed form) and the measured training seconds
(so that a replay can run on a simulated clock). Searches can then be compared over many seeds in
seconds instead of hours; ``bench/make_table.py`` regenerates the table, ``bench/tabular.py`` replays a
search against it.

The file is gzip-compressed JSON lines, one row per network sorted by ``arch_id``, stdlib only, so
that reading it needs neither torch nor pandas.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igcnas.search_space.spec import SearchSpec

__all__ = ["TABLE_SPEC", "TRAIN_SEEDS", "SPLIT_SEED", "VAL_FRACTION", "DATASET", "TABLE_PATH", "PARTIAL_PATH",
           "Row", "load_table", "read_rows", "write_table", "sha256_of", "row_from_dict"]

# Two widths and one block per stage keep the space at 1,288 networks (~1 hour of one-core training for
# two seeds) while covering every IGC family of the paper and the full IGC-V2 chain choices (L <= 4).
TABLE_SPEC = SearchSpec(families=("dense", "xception", "deep_roots", "igcv1", "igcv2", "igcv2_star"),
                        widths=(8, 16), blocks=(1,), max_l=4, in_channels=1, input_size=8, num_classes=10)
TRAIN_SEEDS: tuple[int, ...] = (0, 1)
DATASET = "digits"
SPLIT_SEED = 0
VAL_FRACTION = 0.2

TABLES_DIR = Path(__file__).resolve().parent / "tables"
TABLE_PATH = TABLES_DIR / "igc_digits.jsonl.gz"
PARTIAL_PATH = TABLES_DIR / "igc_digits.partial.jsonl"


@dataclass(frozen=True)
class Row:
    """One network of the table; ``curves[seed][e]`` is the validation accuracy after epoch ``e + 1``."""

    arch_id: str
    config: dict[str, Any]
    family: str
    width: int
    blocks: int
    params: int
    macs: int
    curves: dict[int, list[float]] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return min(len(c) for c in self.curves.values())

    def final_accuracy(self, seed: int | None = None) -> float:
        """The last epoch's accuracy of ``seed``, or the mean over the table's seeds when ``seed`` is None."""
        if seed is not None:
            return self.curves[seed][-1]
        return sum(c[-1] for c in self.curves.values()) / len(self.curves)

    def mean_seconds(self) -> float:
        return sum(self.seconds.values()) / len(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"arch_id": self.arch_id, "config": self.config, "family": self.family, "width": self.width,
                "blocks": self.blocks, "params": self.params, "macs": self.macs,
                "curves": {str(k): v for k, v in sorted(self.curves.items())},
                "seconds": {str(k): v for k, v in sorted(self.seconds.items())}}


def row_from_dict(data: dict[str, Any]) -> Row:
    """JSON keys are strings; seeds come back as ints."""
    return Row(arch_id=data["arch_id"], config=data["config"], family=data["family"], width=int(data["width"]),
               blocks=int(data["blocks"]), params=int(data["params"]), macs=int(data["macs"]),
               curves={int(k): [float(a) for a in v] for k, v in data["curves"].items()},
               seconds={int(k): float(v) for k, v in data["seconds"].items()})


def read_rows(path: str | Path) -> list[Row]:
    """Rows of a table file, gzip (``.gz``) or plain JSON lines (the partial file); a torn last line is skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[Row] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(row_from_dict(json.loads(line)))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill during generation; it is retrained on resume
    return rows


def load_table(path: str | Path | None = None) -> dict[str, Row]:
    """The table as ``{arch_id: Row}``: the committed table by default, else the partial one if that is all."""
    if path is None:
        path = TABLE_PATH if TABLE_PATH.exists() else PARTIAL_PATH
    return {row.arch_id: row for row in read_rows(path)}


def write_table(rows: list[Row], path: str | Path) -> str:
    """Write ``rows`` sorted by arch_id as gzip JSON lines; returns the file's sha256.

    The gzip header's timestamp is fixed at 0 and no file name is stored, so that the same rows give
    the same bytes (and the same checksum) wherever and whenever they are written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r.as_dict(), sort_keys=True, separators=(",", ":")) + "\n"
                   for r in sorted(rows, key=lambda r: r.arch_id))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    tmp.replace(path)
    return sha256_of(path)


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
