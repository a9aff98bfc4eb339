"""The study: opening storages and studies, and the trained weights stored beside them.

Storage is any Optuna RDB URL (a SQLite file in the run folder by default;
PostgreSQL for many machines). Every trial stores its full configuration, arch
id, costs and per-epoch validation curve as user attributes (names in
:mod:`igcnas.nas.records`), so the study alone rebuilds any model; weights are
Optuna artifacts in a folder all workers share.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

from igcnas.errors import BadInput
from igcnas.nas.objectives import Objective

__all__ = ["open_storage", "open_study", "open_existing_study", "store_weights", "load_weights"]

log = logging.getLogger(__name__)


def open_storage(url: str, *, heartbeat: bool = True, heartbeat_interval: int = 20, grace_period: int = 60) -> Any:
    """An Optuna RDB storage for ``url``; BadInput with a one-line reason when it cannot be used."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from igcnas.nas.storage import MAX_STALE_RETRIES, HeartbeatRDBStorage

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadInput(f"storage URL {url!r} is not a valid SQLAlchemy URL "
                       "(e.g. sqlite:///path/study.db or postgresql://user@host/db)") from None
    if parsed.drivername.startswith("sqlite") and parsed.database:
        folder = Path(parsed.database).expanduser().parent
        if not folder.exists():
            raise BadInput(f"storage URL {url!r}: folder {str(folder)!r} does not exist")
    kwargs: dict[str, Any] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat:
            # A worker that dies (SIGKILL, lost node) stops beating; after the grace period its trial is
            # marked failed and re-enqueued with the same parameters.
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES)
            kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          heartbeat_stale_trial_callback=retry)

        try:
            storage = HeartbeatRDBStorage(url, **kwargs)
        except Exception as exc:  # SQLAlchemy/driver errors vary by backend: all mean "cannot open this URL"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(f"storage {url!r} cannot be opened: {reason}") from None
    if parsed.drivername.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _fast_sqlite(engine: Any) -> None:
    """Write-ahead log and NORMAL sync for SQLite studies.

    A trial writes a dozen attributes, each its own transaction; with SQLite's default rollback
    journal every commit waits for the disk (~5 ms here), a fifth of a small digits trial. In WAL
    mode with synchronous=NORMAL a commit survives the process being killed (the tests SIGKILL
    workers), readers never block the writer, and only a power cut can lose the last commits.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections made while Optuna created the schema are reopened with the pragmas


def open_study(storage: Any, name: str, *, create: bool, objectives: Sequence[Objective] | None = None,
               sampler: Any = None) -> Any:
    """Load (or create) a study; a missing study without ``create`` is BadInput.

    A created study is given its objectives' names (``study.metric_names``) so that Optuna's own
    tools and optuna-dashboard label them; an existing one with other objectives is refused.
    """
    import optuna

    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise BadInput(f"study {name!r} does not exist in this storage; studies there: "
                           f"{', '.join(names) or 'none'}") from None
    directions = [o.direction for o in objectives] if objectives is not None else None
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                load_if_exists=True)
    if objectives is not None:
        existing = [d.name.lower() for d in study.directions]
        if existing != directions:
            raise BadInput(f"study {name!r} exists with objectives {existing}, not {directions} "
                           "(use another --study name)")
        names = [o.name for o in objectives]
        if study.metric_names != names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)
    return study


def open_existing_study(storage_url: str, study_name: str | None) -> tuple[Any, Any]:
    """Open a study for reading; with no name, the storage's only study."""
    import optuna

    storage = open_storage(storage_url, heartbeat=False)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise BadInput(f"--study is required: this storage holds {len(names)} studies"
                           + (f" ({', '.join(names)})" if names else ""))
        study_name = names[0]
    return storage, open_study(storage, study_name, create=False)


def store_weights(trial: Any, artifacts: Path, *, model: Any = None, file_path: Path | None = None) -> str:
    """Store a trained state dict (or the saved ``file_path``) as an Optuna artifact of ``trial``."""
    import torch
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifacts.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifacts))
    if file_path is not None:
        return upload_artifact(artifact_store=store, file_path=str(file_path), study_or_trial=trial)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial_{trial.number}.pt"
        torch.save(model.state_dict(), path)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def load_weights(artifact_id: str, store_dir: str | Path) -> dict[str, Any]:
    """The state dict stored as ``artifact_id`` in the artifact folder ``store_dir``."""
    import torch
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "weights.pt"
        try:
            download_artifact(artifact_store=FileSystemArtifactStore(str(store_dir)), file_path=str(local),
                              artifact_id=artifact_id)
        except Exception as exc:  # a missing or unreadable folder or file: the user's folder is wrong
            raise BadInput(f"weights {artifact_id} cannot be read from {str(store_dir)!r}: {exc}") from None
        return torch.load(local, weights_only=True)
