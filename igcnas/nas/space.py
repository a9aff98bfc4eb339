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

import functools
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.enumerate import template_network, template_options
from igcnas.search_space.families import FAMILIES, get_family

__all__ = ["SearchSpec", "Budget", "parse_count", "suggest_config", "option_label", "space_bounds", "seed_params",
           "zoo_seed_params", "params_for", "DEFAULT_FAMILIES"]

DEFAULT_FAMILIES = tuple(FAMILIES)


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


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """What is searched, and the data shape the networks are built for."""

    families: tuple[str, ...] = DEFAULT_FAMILIES
    widths: tuple[int, ...] = (8, 16, 24, 32, 48)
    blocks: tuple[int, ...] = (1, 2)
    num_stages: int = 3
    max_l: int = 4
    in_channels: int = 3
    input_size: int = 32
    num_classes: int = 10
    stem_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("families", "widths", "blocks"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for family in self.families:
            get_family(family)
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"families must not repeat, got {list(self.families)}")
        for w in self.widths:
            if not isinstance(w, int) or w < 2:
                raise ValueError(f"widths must be integers >= 2, got {w!r}")
        for b in self.blocks:
            if not isinstance(b, int) or b < 1:
                raise ValueError(f"blocks must be integers >= 1, got {b!r}")
        if self.max_l < 2:
            raise ValueError(f"max_l must be >= 2, got {self.max_l}")

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def stage_options(self, family: str, width: int) -> list[list[dict[str, Any]]]:
        return _cached_options(family, width, self.num_stages, self.max_l)

    def build(self, family: str, width: int, blocks: int, choices: list[dict[str, Any]]) -> NetworkConfig:
        return template_network(family, width, blocks, choices, num_classes=self.num_classes,
                                input_size=self.input_size, in_channels=self.in_channels,
                                stem_stride=self.stem_stride)

    def cells(self) -> list[tuple[str, int]]:
        """(family, width) pairs with at least one valid network."""
        return list(_cached_cells(self.families, self.widths, self.num_stages, self.max_l))


# Enumerating a stage's valid options resolves every candidate's plan (milliseconds); a search asks
# for the same few (family, width) cells on every trial, so they are computed once per process.
@functools.lru_cache(maxsize=4096)
def _cached_options(family: str, width: int, num_stages: int, max_l: int) -> list[list[dict[str, Any]]]:
    return template_options(family, width, num_stages=num_stages, max_l=max_l)


@functools.lru_cache(maxsize=256)
def _cached_cells(families: tuple[str, ...], widths: tuple[int, ...], num_stages: int, max_l: int
                  ) -> tuple[tuple[str, int], ...]:
    return tuple((f, w) for f in families for w in widths if all(_cached_options(f, w, num_stages, max_l)))


def option_label(option: dict[str, Any]) -> str:
    """A stable string for a stage option (``chain=8x8``, ``k1=2``, ``-`` for none)."""
    if not option:
        return "-"
    parts = []
    for key, value in option.items():
        text = "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        parts.append(f"{key}={text}")
    return ",".join(parts)


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


@dataclass
class SpaceBounds:
    min_params: int
    min_macs: int
    max_params: int
    max_macs: int
    examples: dict[str, NetworkConfig] = field(default_factory=dict)


def space_bounds(spec: SearchSpec) -> SpaceBounds:
    """Exact minimum and maximum params and MACs over the whole space.

    Stage costs are additive and each stage's options are independent of the
    others (the input width of a stage is fixed by the template), so the
    extreme network of a (family, width, blocks) cell takes the extreme option
    in every stage; each option's rank is read off a network that differs
    from a reference in that stage only.
    """
    best: dict[str, tuple[int, NetworkConfig]] = {}
    for (family, width), blocks in itertools.product(spec.cells(), spec.blocks):
        per_stage = spec.stage_options(family, width)
        reference = [options[0] for options in per_stage]
        for metric, sign in (("params", 1), ("macs", 1), ("params", -1), ("macs", -1)):
            chosen = []
            for i, options in enumerate(per_stage):
                scored = []
                for option in options:
                    trial_choice = reference.copy()
                    trial_choice[i] = option
                    cost = closed_form_costs(spec.build(family, width, blocks, trial_choice))
                    scored.append((sign * getattr(cost, metric), len(scored)))
                chosen.append(options[min(scored)[1]])
            config = spec.build(family, width, blocks, chosen)
            value = getattr(closed_form_costs(config), metric)
            key = f"{'min' if sign > 0 else 'max'}_{metric}"
            if key not in best or sign * value < sign * best[key][0]:
                best[key] = (value, config)
    return SpaceBounds(
        min_params=best["min_params"][0], min_macs=best["min_macs"][0],
        max_params=best["max_params"][0], max_macs=best["max_macs"][0],
        examples={k: v[1] for k, v in best.items()},
    )
