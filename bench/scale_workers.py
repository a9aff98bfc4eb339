"""(b) of the scale benchmark: trials per second against the number of worker processes on one study.

1 to N worker processes (forked from this interpreter, each a :class:`scale_parts.Worker`) on one new
study per count, on each storage available (SQLite, PostgreSQL on 127.0.0.1, a journal file, and
``igc-nas storage-proxy`` over PostgreSQL); every trial sleeps the full trial time, stopped early or not,
so that rates compare. The rate is measured in a common window, each trial counted by the share of it
inside the window; ``scaling_efficiency`` = rate / (workers x the 1-worker rate).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from scale_parts import GOAL_EFFICIENCY, PG_URL, SyntheticTraining, Worker, import_worker_modules, median


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_available() -> bool:
    from igcnas.nas.study import database_reachable

    return database_reachable(PG_URL)


def storage_kinds(requested: list[str], work: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The storages to measure: kind -> {url workers use, url to create studies on}; and why others are not."""
    from igcnas.nas import study as study_module

    kinds: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    pg = postgres_available()
    has_kind = hasattr(study_module, "storage_kind")
    for kind in requested:
        if kind == "sqlite":
            kinds[kind] = {"url": f"sqlite:///{work / 'workers.db'}"}
        elif kind == "postgresql":
            if pg:
                kinds[kind] = {"url": PG_URL}
            else:
                skipped[kind] = "PostgreSQL on 127.0.0.1 not available (.ci/postgres-up starts it)"
        elif kind == "journal":
            if has_kind and study_module.storage_kind("journal:///x") == "journal":
                kinds[kind] = {"url": f"journal://{work / 'workers.log'}"}
            else:
                skipped[kind] = "open_storage does not take journal:/// URLs in this checkout"
        elif kind == "grpc":
            if not (has_kind and hasattr(study_module, "serve_storage_proxy")):
                skipped[kind] = "no igc-nas storage-proxy in this checkout"
            elif not pg:
                skipped[kind] = "the proxy is measured over PostgreSQL, which is not available"
            else:
                kinds[kind] = {"url": None, "backend": PG_URL}
    return kinds, skipped


class _Proxy:
    """``igc-nas storage-proxy`` over a database, as its own process (ended by its id)."""

    def __init__(self, backend_url: str) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "igcnas.cli", "storage-proxy", "--storage", backend_url,
                                         "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        line = self.process.stderr.readline() if self.process.stderr else ""
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"storage proxy did not start: {line.strip()}")
        self.url = f"grpc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _forked_worker(spec: dict[str, Any]) -> None:
    """A worker process of (b), forked from this interpreter: joins, says so (``ready``), waits for the
    common start and stop times (``go``), runs; its cycles (or its error) go to ``out``."""
    try:
        training = SyntheticTraining(spec["trial_seconds"], constant=True)
        worker = Worker(spec["url"], spec["study_name"], spec["output_dir"], training=training).join()
        Path(spec["ready"]).write_text("ready")
        go = Path(spec["go"])
        while not go.exists():
            time.sleep(0.05)
        times = json.loads(go.read_text())
        time.sleep(max(0.0, times["start_at"] - time.time()))
        worker.run(timeout=max(0.1, times["stop_at"] - time.time()))
        result: dict[str, Any] = {"cycles": worker.cycles}
    except BaseException as exc:  # reported by the parent, which reads the file
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(spec["out"]).write_text(json.dumps(result))


def _new_study(url: str, name: str) -> None:
    from igcnas.nas.objectives import objectives_for
    from igcnas.nas.study import open_storage, open_study

    storage = open_storage(url, heartbeat=False)
    open_study(storage, name, create=True, objectives=objectives_for(latency=False))
    if hasattr(storage, "engine"):
        storage.engine.dispose()  # no pooled connection may cross the fork


def _drop_study(url: str, name: str) -> None:
    import optuna

    from igcnas.nas.study import open_storage

    try:
        storage = open_storage(url, heartbeat=False)
        optuna.delete_study(study_name=name, storage=storage)
        if hasattr(storage, "engine"):
            storage.engine.dispose()
    except Exception as exc:  # a leftover study in a scratch database is harmless
        print(f"note: study {name} not deleted: {exc}", file=sys.stderr)


def _run_workers(folder: Path, url: str, name: str, workers: int, *, trial_seconds: float, window: float,
                 warmup: float) -> tuple[list[dict[str, Any]], float, float]:
    """Fork ``workers`` workers on study ``name``, let them join, run them over warm-up and window; their
    results (cycles or an error each), and the common start and stop times."""
    context = multiprocessing.get_context("fork")  # the workers start from this interpreter's imports
    folder.mkdir()
    ready = [folder / f"ready{i}" for i in range(workers)]
    go = folder / "go.json"
    processes = []
    for i in range(workers):
        spec = {"url": url, "study_name": name, "output_dir": str(folder), "trial_seconds": trial_seconds,
                "ready": str(ready[i]), "go": str(go), "out": str(folder / f"worker{i}.json")}
        process = context.Process(target=_forked_worker, args=(spec,))
        process.start()
        processes.append(process)
    deadline = time.time() + 300
    while not all(r.exists() for r in ready) and time.time() < deadline:
        if any(p.exitcode not in (None, 0) for p in processes):
            break
        time.sleep(0.2)
    start_at = time.time() + 1.0
    stop_at = start_at + warmup + window
    go.write_text(json.dumps({"start_at": start_at, "stop_at": stop_at}))
    for process in processes:
        process.join(timeout=window + warmup + 120)
        if process.is_alive():
            process.kill()
    results = [json.loads((folder / f"worker{i}.json").read_text())
               if (folder / f"worker{i}.json").exists() else {"error": "no result"} for i in range(workers)]
    return results, start_at, stop_at


def _cycles(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for r in results if "cycles" in r for c in r["cycles"]]


def _rate(results: list[dict[str, Any]], *, begin: float, stop_at: float, window: float) -> float:
    """Trials per second in the window; a trial counts by the share of its cycle inside the window (no
    rounding to whole trials)."""
    return sum(max(0.0, min(c["end"], stop_at) - max(c["end"] - c["cycle_s"], begin)) / c["cycle_s"]
               for c in _cycles(results) if c["cycle_s"] > 0) / window


def _worker_row(kind: str, workers: int, results: list[dict[str, Any]], *, begin: float, stop_at: float,
                window: float, base_rate: float | None) -> dict[str, Any]:
    """The figures of one worker count from its workers' results; ``base_rate``: the 1-worker rate."""
    rate = _rate(results, begin=begin, stop_at=stop_at, window=window)
    counted = [c for c in _cycles(results) if begin <= c["end"] <= stop_at]
    overhead = [1000 * (c["cycle_s"] - c["slept_s"]) for c in counted]
    return {"storage": kind, "workers": workers, "trials_in_window": len(counted), "window_s": window,
            "trials_per_s": round(rate, 3),
            "scaling_efficiency": round(rate / (workers * base_rate), 3) if base_rate else None,
            "per_trial_overhead_ms": round(median(overhead), 1),
            "statements_per_trial": round(median([c["statements"] for c in counted]), 1),
            "db_ms_per_trial": round(1000 * median([c["db_s"] for c in counted]), 1),
            "trials_reread_per_trial": round(median([c["reread"] for c in counted]), 1),
            "worker_cpu_ms_per_trial": round(1000 * median([c["cpu_s"] for c in counted]), 1),
            "load_average_after": round(os.getloadavg()[0], 1),
            "errors": [r["error"] for r in results if "error" in r][:3]}


def measure_workers(work: Path, requested: list[str], counts: list[int], *, trial_seconds: float, window: float,
                    warmup: float) -> tuple[list[dict[str, Any]], dict[str, str]]:
    kinds, skipped = storage_kinds(requested, work)
    rows: list[dict[str, Any]] = []
    import_worker_modules()  # once, before the workers are forked
    for kind, where in kinds.items():
        proxy = _Proxy(where["backend"]) if kind == "grpc" else None
        try:
            url = proxy.url if proxy else where["url"]
            create_url = where.get("backend", url)
            base_rate = None
            for workers in counts:
                name = f"scale-{kind}-{workers}-{uuid.uuid4().hex[:8]}"
                _new_study(create_url, name)
                results, start_at, stop_at = _run_workers(work / f"workers-{kind}-{workers}", url, name, workers,
                                                          trial_seconds=trial_seconds, window=window, warmup=warmup)
                begin = start_at + warmup
                if workers == counts[0] == 1:
                    base_rate = _rate(results, begin=begin, stop_at=stop_at, window=window)
                row = _worker_row(kind, workers, results, begin=begin, stop_at=stop_at, window=window,
                                  base_rate=base_rate)
                rows.append(row)
                print(worker_line(row), flush=True)
                _drop_study(create_url, name)
        finally:
            if proxy:
                proxy.stop()
    return rows, skipped


def worker_line(row: dict[str, Any]) -> str:
    eff = row["scaling_efficiency"]
    return (f"{row['storage']:<11}{row['workers']:>8}{row['trials_in_window']:>8}{row['trials_per_s']:>10.2f}"
            f"{(f'{eff:.2f}' if eff is not None else '-'):>8}{row['per_trial_overhead_ms']:>10.1f}"
            f"{row['statements_per_trial']:>8.0f}{row['db_ms_per_trial']:>8.1f}{row['worker_cpu_ms_per_trial']:>8.0f}"
            f"{row['trials_reread_per_trial']:>8.0f}" + (f"  errors: {row['errors']}" if row["errors"] else ""))


WORKER_HEADER = (f"{'storage':<11}{'workers':>8}{'trials':>8}{'trials/s':>10}{'eff':>8}{'ms/trial':>10}{'SQL/tr':>8}"
                 f"{'db ms':>8}{'cpu ms':>8}{'reread':>8}")


def worker_goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": []}
    for kind in ("postgresql", "grpc"):
        at8 = [r for r in rows if r["storage"] == kind and r["workers"] == 8]
        if at8 and at8[0]["scaling_efficiency"] is not None:
            eff = at8[0]["scaling_efficiency"]
            out[f"{kind}_8_workers"] = eff
            out["lines"].append(f"{kind}: scaling efficiency at 8 workers {eff:.2f} "
                                f"(goal >= {GOAL_EFFICIENCY}: {'met' if eff >= GOAL_EFFICIENCY else 'not met'})")
    return out
