"""The package's layering, read from the source: no import cycles, and each boundary the design names.

Every ``import`` and ``from ... import`` is counted, also those inside functions (a lazy import is
still a dependency).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "igcnas"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_no_import_cycles_in_nas_or_between_nas_and_dashboards():
    scope = {m for m in MODULES if m.startswith(("igcnas.nas", "igcnas.dashboards"))}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node] & scope):
            # a package's __init__ importing its own submodules is not a cycle through the submodule
            if node == nxt.rpartition(".")[0] or nxt == node.rpartition(".")[0]:
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for module in sorted(scope):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("igcnas.nas")))
def test_nas_never_imports_dashboards(module):
    assert not {m for m in imports_of(MODULES[module]) if m.startswith("igcnas.dashboards")}


def test_only_the_ray_backend_imports_ray_and_only_dashboards_import_plotly():
    for name, path in MODULES.items():
        imported = imports_of(path)
        if any(m == "ray" or m.startswith("ray.") for m in imported):
            assert name in ("igcnas.nas.backends.ray_backend", "igcnas.nas.backends.ray_parts",
                            "igcnas.nas.backends.ray_refine"), name
        if any(m == "plotly" or m.startswith("plotly.") for m in imported):
            assert name.startswith("igcnas.dashboards"), name


def test_search_space_is_pure_python_and_backends_never_import_each_other():
    for name, path in MODULES.items():
        imported = imports_of(path)
        if name.startswith("igcnas.search_space"):
            assert not {m for m in imported if m.split(".")[0] in ("torch", "optuna", "ray")}, name
            assert not {m for m in imported if m.startswith(("igcnas.nas", "igcnas.models", "igcnas.evaluators"))}
    assert "igcnas.nas.backends.ray_backend" not in GRAPH["igcnas.nas.backends.optuna_backend"]
    assert not {m for m in GRAPH["igcnas.nas.backends.ray_backend"] if m.endswith("optuna_backend")}


def test_module_sizes_stay_reviewable():
    for name, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        if name.startswith("igcnas.nas"):
            assert lines <= 380, (name, lines)
        if name.startswith("igcnas.cli"):
            assert lines <= 300, (name, lines)


# Clocks in a loop that are not latency figures: training wall time and images/s, and deadlines.
CLOCK_LOOPS_ALLOWED = {"igcnas.evaluators.train": "epoch wall time, images/s and the trial time limit"}
CLOCKS = {"perf_counter", "perf_counter_ns", "monotonic", "time", "process_time"}


def _clock_calls(node: ast.AST) -> int:
    return sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CLOCKS
               and isinstance(n.func.value, ast.Name) and n.func.value.id == "time" for n in ast.walk(node))


def test_every_latency_figure_comes_from_the_one_timer():
    """igcnas.evaluators.timing is the only timing loop: no other loop reads a clock twice per turn (a start
    and a stop), and nothing else imports torch.utils.benchmark."""
    for name, path in MODULES.items():
        if name == "igcnas.evaluators.timing":
            continue
        tree = ast.parse(path.read_text())
        assert not {m for m in imports_of(path) if m.startswith("torch.utils.benchmark")}, name
        if name in CLOCK_LOOPS_ALLOWED:
            continue
        loops = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))]
        assert not [n.lineno for n in loops if _clock_calls(n) >= 2], f"{name}: a timing loop of its own"
