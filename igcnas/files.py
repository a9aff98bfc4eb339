"""Files written whole or not at all: the one atomic write every output of igc-nas goes through.

A reader (a dashboard refreshing, another worker, a user's script) must never see a file half-written, and
a crash must not leave one: the content goes to a temporary file beside the target, which then replaces it
in one rename. The temporary name carries the process id and a random part, so that writers in several
processes (workers sharing a run folder, a machine-wide timing record) never share a temporary file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then move the result onto ``path`` (its folder created); nothing is
    left behind if ``write`` raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) as the whole content of ``path``."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
