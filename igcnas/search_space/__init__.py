"""The IGC design space as pure Python: configurations, conditions, enumeration, closed-form costs.

Importing this package never imports torch, so the search drivers can reason about
architectures (validity, costs, budgets) in microseconds before anything is built.
"""

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.config_io import config_from_dict, config_to_dict, load_config
from igcnas.search_space.costs import CostReport, closed_form_costs
from igcnas.search_space.families import FAMILIES, Interleaved, Inverted, family_names, get_family
from igcnas.search_space.plan import resolve

__all__ = [
    "NetworkConfig",
    "StageConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "CostReport",
    "closed_form_costs",
    "FAMILIES",
    "Interleaved",
    "Inverted",
    "family_names",
    "get_family",
    "resolve",
]
