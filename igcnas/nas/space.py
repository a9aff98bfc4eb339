"""The search space as an Optuna define-by-run function over valid configurations only.

Family, first-stage width and blocks per stage are categorical; then, per
stage, only the options the complementary condition (and the stage's input
width) allow are offered. IGC-V2 first picks L and then a complementary
factorisation ``(K_2, ..., K_L)`` of that length. Parameter names carry the
context that fixes their choices (``igcv2.s1.K@C64.L3``), so every name always
has the same distribution, which Optuna's samplers need.

Also here: budgets (with human units) and the exact cost bounds of a space,
so that a budget nothing can meet is refused before anything is trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.families import get_family
from igcnas.search_space.spec import SearchSpec, option_label

__all__ = ["Budget", "parse_count", "suggest_config", "seed_params", "zoo_seed_params", "params_for"]


def parse_count(text: str | int | float | None, what: str) -> float | None:
    """Parse ``250k``, ``1.5M``, ``30M``, ``2G`` or a plain number; must be positive."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
        if not match:
            raise ValueError(f"{what} must be a positive number with an optional k/M/G suffix "
                             f"(e.g. 250k, 1.5M), got {text!r}")
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    if not value > 0:
        raise ValueError(f"{what} must be > 0, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Upper bounds; ``None`` means unbounded. MACs are multiply-accumulates (FLOPs = 2 x MACs)."""

    max_params: float | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None

    def violations(self, *, params: float, macs: float, latency_ms: float | None = None) -> dict[str, float]:
        """Constraint values in Optuna's convention (<= 0 feasible), normalised by the bound."""
        out = {}
        if self.max_params is not None:
            out["max_params"] = params / self.max_params - 1.0
        if self.max_macs is not None:
            out["max_macs"] = macs / self.max_macs - 1.0
        if self.max_latency_ms is not None and latency_ms is not None:
            out["max_latency_ms"] = latency_ms / self.max_latency_ms - 1.0
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {"max_params": self.max_params, "max_macs": self.max_macs, "max_latency_ms": self.max_latency_ms}


def suggest_config(trial: Any, spec: SearchSpec) -> NetworkConfig:
    """Define-by-run: every suggestion is constrained to valid configurations."""
    cells = spec.cells()
    if not cells:
        raise ValueError("the search space is empty: no family/width combination has a valid network")
    families = tuple(dict.fromkeys(f for f, _ in cells))
    family = trial.suggest_categorical("family", families)
    widths = tuple(w for f, w in cells if f == family)
    width = trial.suggest_categorical(f"width@{family}", widths)
    blocks = trial.suggest_categorical("blocks", spec.blocks)
    choices = []
    for i, options in enumerate(spec.stage_options(family, width)):
        stage_width = width * 2**i
        if len(options) == 1:
            choices.append(options[0])
            continue
        if family == "igcv2":
            lengths = sorted({len(o["chain"]) + 1 for o in options})
            l_value = trial.suggest_categorical(f"igcv2.s{i}.L@C{stage_width}", lengths)
            subset = [o for o in options if len(o["chain"]) + 1 == l_value]
            labels = [option_label(o) for o in subset]
            label = trial.suggest_categorical(f"igcv2.s{i}.K@C{stage_width}.L{l_value}", labels)
        else:
            subset = options
            labels = [option_label(o) for o in subset]
            label = trial.suggest_categorical(f"{family}.s{i}@C{stage_width}", labels)
        choices.append(subset[labels.index(label)])
    return spec.build(family, width, blocks, choices)


def params_for(spec: SearchSpec, family: str, width: int, blocks: int, choices: list[dict[str, Any]]
               ) -> dict[str, Any]:
    """The trial parameters under which :func:`suggest_config` yields this network (for enqueuing).

    ValueError when a stage's choice is not one of the options the space offers there.
    """
    params: dict[str, Any] = {"family": family, f"width@{family}": width, "blocks": blocks}
    for i, (options, choice) in enumerate(zip(spec.stage_options(family, width), choices, strict=True)):
        if choice not in options:
            raise ValueError(f"stage {i} option {option_label(choice)} is not in the space at width {width}")
        if len(options) == 1:
            continue
        stage_width = width * 2**i
        if family == "igcv2":
            l_value = len(choice["chain"]) + 1
            params[f"igcv2.s{i}.L@C{stage_width}"] = l_value
            params[f"igcv2.s{i}.K@C{stage_width}.L{l_value}"] = option_label(choice)
        else:
            params[f"{family}.s{i}@C{stage_width}"] = option_label(choice)
    return params


def zoo_seed_params(spec: SearchSpec) -> list[dict[str, Any]]:
    """The paper's zoo networks carried into the search template, to enqueue.

    A zoo network's per-stage structure (IGC-V1's partitions, IGC-V2's K's, ...) is kept and placed at
    the searched width nearest to its own where every stage's structure is valid; the depth becomes
    the smallest searched block count. Networks whose structure fits no searched width (IGC-V2 C64's
    K = 8x8 needs 64 channels) are left out rather than altered.
    """
    import math

    from igcnas.search_space.zoo import ZOO

    out: list[dict[str, Any]] = []
    blocks = min(spec.blocks)
    for entry in ZOO.values():
        config = entry.config
        if config.family not in spec.families or len(config.stages) != spec.num_stages:
            continue
        fields = get_family(config.family).params
        choices = [{k: getattr(stage, k) for k in fields if getattr(stage, k) is not None}
                   for stage in config.stages]
        own = config.stages[0].width
        for width in sorted(spec.widths, key=lambda w: (abs(math.log(w / own)), w)):
            if (config.family, width) not in spec.cells():
                continue
            try:
                params = params_for(spec, config.family, width, blocks, choices)
            except ValueError:
                continue
            if params not in out:
                out.append(params)
            break
    return out


def seed_params(spec: SearchSpec, *, max_seeds: int = 6) -> list[dict[str, Any]]:
    """Parameters of the balance-condition networks, to enqueue before sampling starts.

    For IGC-V2 at each width (and the smallest block count), every stage takes its complementary
    factorisation closest to the balance condition (lowest params/bound of the 1x1 chain, then
    fewer convolutions); Xception at the same widths comes along as the paper's baseline. Only
    valid configurations are produced, named exactly as :func:`suggest_config` names them.
    """
    from igcnas.search_space.conditions import check_balance
    from igcnas.search_space.families import get_family

    seeds: list[dict[str, Any]] = []
    blocks = min(spec.blocks)
    widths = sorted(spec.widths)
    picks = [widths[len(widths) // 2], widths[-1], widths[0]]
    for width in dict.fromkeys(picks):
        if "igcv2" in spec.families and ("igcv2", width) in spec.cells():
            choices: list[dict[str, Any]] = []
            for i, options in enumerate(spec.stage_options("igcv2", width)):
                stage_width = width * 2**i
                structure = [get_family("igcv2").structure(StageConfig(width=stage_width, blocks=1, **o))
                             for o in options]
                best = min(range(len(options)), key=lambda j: (
                    check_balance(structure[j], stage_width).pointwise_excess or 0.0, len(options[j]["chain"])))
                choices.append(options[best])
            seeds.append(params_for(spec, "igcv2", width, blocks, choices))
        if "xception" in spec.families and ("xception", width) in spec.cells():
            seeds.append({"family": "xception", "width@xception": width, "blocks": blocks})
    return seeds[:max_seeds]
