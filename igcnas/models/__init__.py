"""PyTorch modules for every block family, built from :mod:`igcnas.search_space` configurations."""

from igcnas.models.io import load, load_state_dict_file
from igcnas.models.network import IGCNet, build_model
from igcnas.models.registry import BLOCKS, block_names, get_block, register_block
from igcnas.models.paper_models import create_zoo_model

__all__ = ["load", "load_state_dict_file", "IGCNet", "build_model", "BLOCKS", "block_names", "get_block", "register_block", "create_zoo_model"]
