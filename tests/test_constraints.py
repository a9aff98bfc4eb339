"""The dependency record: pyproject's ranges admit the versions CI tested, and constraints.txt is that set."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as _name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = _pins()
    for line in declared:
        req = Requirement(line)
        assert _name(req.name) in pins, f"{req.name} is not in constraints.txt"
        assert req.specifier.contains(Version(pins[_name(req.name)]), prereleases=True), (line, pins[_name(req.name)])


def test_internals_bounded():
    """The packages igc-nas reaches into have upper bounds: an upgrade cannot slip in unnoticed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = {_name(Requirement(line).name): Requirement(line) for line in project["dependencies"]}
    for name in ("optuna", "ray"):
        assert any(spec.operator == "<" for spec in reqs[name].specifier), f"{name} has no upper bound"


def test_constraints_are_the_installed_set():
    """What `make constraints` would write from this environment is what is committed: the environment the
    suite runs in is the one recorded (make setup installs with it; regenerate after an upgrade)."""
    written = subprocess.run([sys.executable, str(ROOT / ".ci" / "freeze-constraints")], capture_output=True,
                             text=True, check=True).stdout
    committed = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert written == committed, "constraints.txt differs from this environment: run `make constraints`"
