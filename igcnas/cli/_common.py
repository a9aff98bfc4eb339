"""What the command modules share: the parser class that reports usage errors as bad input, and tables."""

from __future__ import annotations

import argparse
import sys
import contextlib
from typing import Any, Callable, Iterator

from igcnas.errors import BadInput

__all__ = ["UsageError", "Parser", "fmt_count", "print_table", "progress", "progress_bar"]


class UsageError(BadInput):
    """A command-line mistake (unknown flag, missing argument): bad input, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def fmt_count(value: float | int | None) -> str:
    """``12.345k``, ``1.500M``: counts with a unit suffix."""
    if value is None:
        return "-"
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return f"{value:.0f}"


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    widths = [max(len(title), *(len(str(r.get(key, ""))) for r in rows)) if rows else len(title)
              for key, title in columns]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row.get(key, "")).ljust(w) for (key, _), w in zip(columns, widths)))


def progress(items: list[Any], desc: str, *, enabled: bool = True) -> Any:
    """A tqdm bar on stderr when it is a terminal."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty())


@contextlib.contextmanager
def progress_bar(desc: str) -> Iterator[Callable[[int, int], None]]:
    """An ``update(done, total)`` for long work: a tqdm bar on a terminal, else a line every tenth."""
    from tqdm import tqdm

    bar: Any = None
    shown = [-1]

    def update(done: int, total: int) -> None:
        nonlocal bar
        if sys.stderr.isatty():
            if bar is None:
                bar = tqdm(total=total, desc=desc, file=sys.stderr)
            bar.update(done - bar.n)
        elif total and done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"{desc}: {done}/{total}", file=sys.stderr, flush=True)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
