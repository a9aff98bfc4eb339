"""The search's previous define-by-run encoding, kept in the benchmarks only as the "current behaviour" arm.

The search now suggests a fixed list of genes (``igcnas.search_space.genome``) and decodes them; before
that, the search's ``suggest_config`` (now in ``igcnas.nas.gene_suggestions``) asked for the family first and
then per-family, per-width parameters (``width@igcv2``, ``igcv2.s1.K@C16.L3``). An NSGA-II over that encoding
sees a different parameter set for every family, so its crossover and mutation mostly fall back to independent
random sampling. The sampler comparison keeps this arm (plain ``NSGAIISampler`` on the old encoding) to
separate what the new encoding brings from what the new sampler brings. These two functions are
copied unchanged (names aside) from ``git show 0bd1cd5:igcnas/nas/space.py`` (the module is
``gene_suggestions.py`` since); the library no longer needs them, so they live here rather than there.
"""

from __future__ import annotations

from typing import Any

from igcnas.search_space.config import NetworkConfig
from igcnas.search_space.spec import SearchSpec, option_label

__all__ = ["legacy_suggest_config", "legacy_params_for"]


def legacy_suggest_config(trial: Any, spec: SearchSpec) -> NetworkConfig:
    """Define-by-run: every suggestion is constrained to valid configurations (the old encoding)."""
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


def legacy_params_for(spec: SearchSpec, family: str, width: int, blocks: int, choices: list[dict[str, Any]]
                      ) -> dict[str, Any]:
    """The trial parameters under which :func:`legacy_suggest_config` yields this network (for enqueuing).

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
