"""The live dashboard: a small threaded HTTP server reading the study on every refresh.

Binds 127.0.0.1 unless told otherwise. Routes: ``/`` (the page),
``/plotly.min.js``, ``/data.json`` (payload + figures, or an ``error``).
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from igcnas.dashboards.page import dumps, plotly_js, render_page

__all__ = ["DashboardServer"]

log = logging.getLogger(__name__)


class DashboardServer:
    """Serves ``load_data()`` (which returns the page data or raises ValueError) over HTTP."""

    def __init__(self, load_data: Callable[[], dict[str, Any]], *, title: str, host: str = "127.0.0.1",
                 port: int = 8050, refresh_s: float = 5.0) -> None:
        self.load_data = load_data
        self.page = render_page(title=title, data=None, embed_plotly=False, refresh_s=refresh_s).encode()
        self._lock = threading.Lock()
        self._cached: tuple[Any, str] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("%s " + format, self.address_string(), *args)

            def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", cache)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, server.page, "text/html; charset=utf-8")
                elif path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                elif path == "/plotly.min.js":
                    self._send(200, plotly_js().encode(), "application/javascript", "max-age=86400")
                elif path == "/data.json":
                    with server._lock:  # one study read at a time
                        try:
                            body = server.data_json()
                        except ValueError as exc:
                            body = dumps({"error": str(exc), "payload": None})
                        except Exception as exc:  # storage went away mid-run: say so on the page
                            log.exception("dashboard data failed")
                            body = dumps({"error": f"cannot read the study: {type(exc).__name__}: {exc}",
                                          "payload": None})
                    self._send(200, body.encode(), "application/json")
                else:
                    self._send(404, b"not found", "text/plain")

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.host, self.port = self.httpd.server_address[:2]

    def data_json(self) -> str:
        """The serialised data; re-serialised only when the loader returns a new object."""
        data = self.load_data()
        if self._cached is None or self._cached[0] is not data:
            self._cached = (data, dumps(data))
        return self._cached[1]

    def warm(self) -> None:
        """Compute the data once before the first page asks for it."""
        with self._lock:
            self.data_json()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
