"""The study: opening storages and studies, and the trained weights stored beside them.

Storage is an Optuna RDB URL (a SQLite file in the run folder by default;
PostgreSQL for many machines), an Optuna journal file (``journal:///path``: many
processes on one machine, no server) or an ``igc-nas storage-proxy``
(``grpc://host:port``: more workers than one database serves). Every trial stores its full configuration, arch
id, costs and per-epoch validation curve as user attributes (names in
:mod:`igcnas.nas.records`), so the study alone rebuilds any model; weights are
Optuna artifacts in a folder all workers share.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from igcnas.errors import BadInput
from igcnas.nas.objectives import Objective

__all__ = ["database_reachable", "open_storage", "storage_kind", "serve_storage_proxy", "JOURNAL_SCHEME", "GRPC_SCHEME", "open_study",
           "open_existing_study", "store_weights", "load_weights"]

log = logging.getLogger(__name__)


JOURNAL_SCHEME = "journal"  # journal:///abs/path/study.log: Optuna's journal file, many processes on one machine
GRPC_SCHEME = "grpc"  # grpc://host:port: an `igc-nas storage-proxy` in front of one database, many machines
GRPC_CONNECT_TIMEOUT_S = 5.0
PROXY_THREADS = 16  # requests the proxy serves at once (Optuna's default: 10)


def storage_kind(url: str) -> str:
    """``journal``, ``grpc`` or ``rdb`` (any other URL is SQLAlchemy's to read)."""
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    return scheme if scheme in (JOURNAL_SCHEME, GRPC_SCHEME) else "rdb"


def database_reachable(url: str, *, timeout_s: int = 3) -> bool:
    """Whether a database URL accepts a connection now (tests and benchmarks skip what needs one)."""
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout_s}).connect():
            return True
    except Exception:  # noqa: BLE001 - any driver error means "not reachable"
        return False


def open_storage(url: str, *, heartbeat: bool = True, heartbeat_interval: int = 20, grace_period: int = 60) -> Any:
    """The storage for ``url`` (see :mod:`igcnas.nas.storage`); BadInput with a one-line reason when it
    cannot be used. With ``heartbeat``, a worker that dies (SIGKILL, lost node) stops beating; after the
    grace period its trial is failed and re-queued with the same parameters (:mod:`igcnas.nas.lease`)."""
    import optuna

    from igcnas.nas.lease import MAX_STALE_RETRIES, RetryStaleTrial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        beats: dict[str, Any] = {}
        if heartbeat:
            beats = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                         heartbeat_stale_trial_callback=RetryStaleTrial(max_retry=MAX_STALE_RETRIES))
        kind = storage_kind(url)
        if kind == JOURNAL_SCHEME:
            return _open_journal(url, beats)
        if kind == GRPC_SCHEME:
            return _open_grpc(url, beats)
        return _open_rdb(url, beats)


def _open_rdb(url: str, beats: dict[str, Any]) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from igcnas.nas.storage import HeartbeatRDBStorage

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadInput(f"storage URL {url!r} is not a valid storage URL (e.g. sqlite:///path/study.db, "
                       "postgresql://user@host/db, journal:///path/study.log or grpc://host:port)") from None
    if parsed.drivername.startswith("sqlite") and parsed.database:
        folder = Path(parsed.database).expanduser().parent
        if not folder.exists():
            raise BadInput(f"storage URL {url!r}: folder {str(folder)!r} does not exist")
    try:
        storage = HeartbeatRDBStorage(url, **beats)
    except Exception as exc:  # SQLAlchemy/driver errors vary by backend: all mean "cannot open this URL"
        raise BadInput(f"storage {url!r} cannot be opened: {_first_line(exc)}") from None
    if parsed.drivername.startswith("sqlite"):
        _fast_sqlite(storage.engine)
    return storage


def _open_journal(url: str, beats: dict[str, Any]) -> Any:
    from optuna.storages.journal import JournalFileBackend

    from igcnas.nas.storage import FlockLock, LeaseJournalStorage

    path = _journal_path(url)
    try:
        return LeaseJournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(str(path))), **beats)
    except Exception as exc:  # unreadable, or not a journal (a SQLite file, say): cannot be used
        raise BadInput(f"storage {url!r} cannot be opened as an Optuna journal file: {_first_line(exc)}") from None


def _journal_path(url: str) -> Path:
    """The file of a ``journal://`` URL, checked: an absolute or ~ path in an existing folder."""
    prefix = f"{JOURNAL_SCHEME}://"
    raw = url[len(prefix):] if url.lower().startswith(prefix) else ""
    if not raw.startswith(("/", "~")):
        raise BadInput(f"storage URL {url!r}: a journal file needs an absolute or ~ path: "
                       "journal:///abs/path/study.log or journal://~/path/study.log")
    path = Path(raw).expanduser()
    if path.is_dir():
        raise BadInput(f"storage URL {url!r}: {str(path)!r} is a folder, not a journal file")
    if not path.parent.is_dir():
        raise BadInput(f"storage URL {url!r}: folder {str(path.parent)!r} does not exist")
    return path


def _open_grpc(url: str, beats: dict[str, Any]) -> Any:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None or parts.path not in ("", "/") or parts.query:
        raise BadInput(f"storage URL {url!r}: a gRPC proxy is grpc://HOST:PORT (igc-nas storage-proxy)")
    try:
        import grpc  # noqa: F401 - Optuna imports it lazily, at the first call
    except ImportError as exc:  # grpcio is a dependency; a broken install is told how to mend it
        raise BadInput(f"storage {url!r} needs grpcio (pip install grpcio): {_first_line(exc)}") from None
    from igcnas.nas.storage import LeaseGrpcStorage

    storage = LeaseGrpcStorage(host=host, port=port, **beats)
    try:
        storage.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
    except ConnectionError:
        storage.close()
        raise BadInput(f"storage {url!r}: no storage proxy answers at {host}:{port} within "
                       f"{GRPC_CONNECT_TIMEOUT_S:g} s (start one with igc-nas storage-proxy)") from None
    return storage


def serve_storage_proxy(url: str, *, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the database ``url`` over gRPC at ``host:port`` until interrupted (``igc-nas storage-proxy``).

    Optuna's proxy servicer, with two differences from its ``run_grpc_proxy_server``: the port is
    not shared (gRPC's default SO_REUSEPORT would let a second proxy bind the same port and split
    the workers between two processes unnoticed), and the server is stopped when interrupted.
    ``on_ready`` gets the URL to show (password hidden) once the server listens.
    """
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    import optuna
    from sqlalchemy.engine import make_url

    from igcnas.nas.optuna_adapter import add_proxy_servicer

    kind = storage_kind(url)
    if kind != "rdb":
        raise BadInput(f"--storage must be a database URL (postgresql://, mysql://, sqlite:///), not a {kind} "
                       "storage: the proxy serves a database")
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else _first_line(exc)
        raise BadInput(f"--host {host} --port {port}: cannot listen there ({reason})") from None
    storage = optuna.storages.get_storage(open_storage(url, heartbeat=False))  # caches finished trials
    server = grpc.server(ThreadPoolExecutor(max_workers=PROXY_THREADS), options=[("grpc.so_reuseport", 0)])
    add_proxy_servicer(storage, server)
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # taken between the check above and now
        raise BadInput(f"--host {host} --port {port}: cannot listen there (in use)") from None
    server.start()
    try:
        if on_ready is not None:
            on_ready(make_url(url).render_as_string(hide_password=True))
        server.wait_for_termination()
    finally:
        server.stop(grace=1).wait()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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

    if storage_kind(storage_url) == JOURNAL_SCHEME and not _journal_path(storage_url).exists():
        raise BadInput(f"storage {storage_url!r}: the journal file does not exist")  # reading must not create it
    storage = open_storage(storage_url, heartbeat=False)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise BadInput(f"--study is required: this storage holds {len(names)} studies"
                           + (f" ({', '.join(names)})" if names else ""))
        study_name = names[0]
    return storage, open_study(storage, study_name, create=False)


def store_weights(trial: Any, artifacts: Path, *, model: Any = None, data: bytes | None = None) -> str:
    """Store a trained state dict as an Optuna artifact of ``trial``: ``model``'s, or ``data``, its
    ``torch.save`` bytes (how Ray trials send theirs: the node that trained may share no disk with us)."""
    import torch
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifacts.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifacts))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial_{trial.number}.pt"
        if data is not None:
            path.write_bytes(data)
        else:
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
