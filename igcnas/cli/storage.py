"""``igc-nas storage-proxy``: Optuna's gRPC proxy in front of one study database, for many workers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from igcnas.errors import BadInput

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "storage-proxy", help="serve one study database to many search workers over gRPC (Optuna's proxy)",
        description="Serve a study database to search workers over gRPC: start it once, near the database, and "
                    "give every worker --storage grpc://HOST:PORT. Use it when the workers are many (hundreds to "
                    "thousands): each one connected to the database itself holds its own connections and re-reads "
                    "the study's trials, which exhausts a database's connection limit and load; through the proxy "
                    "each worker keeps one gRPC channel and the proxy caches finished trials. Up to a few dozen "
                    "workers, give them the database URL itself; for several processes on one machine without a "
                    "server, a journal file (--storage journal:///path/study.log). A killed worker's trial is "
                    "failed and re-run through the proxy as on every storage (leases, --grace-period). Runs until "
                    "Ctrl-C. No authentication or encryption: listen on a private network only.")
    p.add_argument("--storage", required=True, metavar="URL",
                   help="the database: postgresql://user:password@host/db, mysql://..., or sqlite:///path/study.db")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, required=True, help="port to listen on; workers use grpc://HOST:PORT")
    p.set_defaults(func=cmd_storage_proxy)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from igcnas.nas.study import serve_storage_proxy

    if not 1 <= args.port <= 65535:
        raise BadInput(f"--port must be between 1 and 65535, got {args.port}")

    def ready(shown_url: str) -> None:
        print(f"igc-nas storage-proxy: serving {shown_url} at grpc://{args.host}:{args.port} (workers: igc-nas "
              f"search --storage grpc://{args.host}:{args.port} ...); Ctrl-C stops it", file=sys.stderr, flush=True)

    serve_storage_proxy(args.storage, host=args.host, port=args.port, on_ready=ready)
    return 0
