"""Pareto dashboards in the browser (the only package that imports plotly).

``dashboard_data`` computes the page data from a study (payload + figures);
``write_report`` writes it as one self-contained HTML file; ``serve`` runs the
live page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from igcnas.files import atomic_write_text

__all__ = ["dashboard_data", "write_report", "serve"]


def dashboard_data(study: Any) -> dict[str, Any]:
    from igcnas.dashboards.data import collect
    from igcnas.dashboards.figures import build_figures

    payload = collect(study)
    return {"payload": payload, "figures": build_figures(payload)}


def write_report(study: Any, path: str | Path) -> Path:
    """One HTML file with plotly.js and the data inline: opens offline, shows what the live page shows."""
    from igcnas.dashboards.page import render_page

    text = render_page(title=f"study {study.study_name}", data=dashboard_data(study), embed_plotly=True)
    return atomic_write_text(path, text)


def serve(load_study: Any, *, title: str, host: str = "127.0.0.1", port: int = 8050, refresh_s: float = 5.0) -> Any:
    """A :class:`~igcnas.dashboards.server.DashboardServer` that re-reads the study on every refresh."""
    from igcnas.dashboards.server import DashboardServer

    cache: dict[str, Any] = {}

    def load() -> dict[str, Any]:
        # Recompute only when the study changed: trial count, states and the last completion time.
        study = load_study()
        trials = study.get_trials(deepcopy=False)
        key = (study.study_name, len(trials), tuple(sorted(t.state.name for t in trials if not t.state.is_finished())),
               sum(1 for t in trials if t.state.is_finished()),
               max((t.datetime_complete for t in trials if t.datetime_complete), default=None))
        if cache.get("key") != key:
            cache["data"] = dashboard_data(study)
            cache["key"] = key
        return cache["data"]

    return DashboardServer(load, title=title, host=host, port=port, refresh_s=refresh_s)
