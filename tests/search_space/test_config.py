import json
import subprocess
import sys

import pytest

from igcnas.search_space.config import NetworkConfig, StageConfig
from igcnas.search_space.config_io import config_from_dict, config_to_dict, load_config
from igcnas.search_space.paper_networks import ZOO, cifar_network


def test_importing_search_space_does_not_import_torch():
    code = (
        "import sys, igcnas.search_space, igcnas.search_space.enumerate, igcnas.search_space.conditions, "
        "igcnas.search_space.paper_networks; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_round_trip_every_zoo_entry_through_json():
    for entry in ZOO.values():
        data = json.loads(json.dumps(config_to_dict(entry.config)))
        assert config_from_dict(data) == entry.config


def test_toml_config_is_parsed_as_data(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(
        'family = "igcv2"\nstem_width = 16\n'
        "[[stages]]\nwidth = 16\nblocks = 2\nchain = [4, 4]\n"
    )
    config = load_config(path)
    assert config.stages[0].chain == (4, 4)


@pytest.mark.parametrize(
    "data, field_text, allowed_text",
    [
        ({"family": "resnext", "stem_width": 8, "stages": [{"width": 8, "blocks": 1}]}, "family", "igcv2"),
        ({"family": "igcv2", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "chain": [3, 4]}]},
         "chain[0]=3", "allowed values: 1, 2, 4, 8, 16"),
        ({"family": "igcv2_star", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "k": 4, "l": 0}]},
         "l (L", ">= 2"),
        ({"family": "igcv2", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "chain": []}]},
         "chain", "non-empty"),
        ({"family": "xception", "stem_width": 8, "stages": [{"width": 0, "blocks": 1}]}, "width", ">= 1"),
        ({"family": "xception", "stem_width": 8, "stages": [{"width": -4, "blocks": 1}]}, "width", ">= 1"),
        ({"family": "igcv1", "stem_width": 8, "stages": [{"width": 12, "blocks": 1, "k1": 5}]},
         "k1=5", "allowed values: 1, 2, 3, 4, 6, 12"),
        ({"family": "xception", "stem_width": 8, "stages": [{"width": 8, "blocks": 1, "chain": [2, 4]}]},
         "chain", "its parameters: none"),
        ({"family": "xception", "stem_width": 8, "stages": [{"width": 8, "blocks": 1}], "depth": 3},
         "depth", "allowed fields"),
        ({"family": "xception", "stem_width": 8, "stages": [{"width": 8, "blocks": 1, "stride": 3}]},
         "stride", "1, 2"),
    ],
)
def test_bad_configs_raise_value_error_naming_field_and_allowed_values(data, field_text, allowed_text):
    with pytest.raises(ValueError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert field_text in message and allowed_text in message


def test_malformed_json_file_is_a_value_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"family": "igcv2", ')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(path)


def test_depth_follows_table_1():
    assert cifar_network("xception", 35, 20).depth == 20
    assert all(stage.blocks == 6 for stage in cifar_network("xception", 35, 20).stages)
    with pytest.raises(ValueError, match="depth"):
        cifar_network("xception", 35, 21)


def test_configs_are_frozen_and_hashable():
    config = NetworkConfig(family="xception", stem_width=8, stages=(StageConfig(width=8, blocks=1),))
    with pytest.raises(AttributeError):
        config.stem_width = 4  # type: ignore[misc]
    assert hash(config) == hash(config.replace(name="renamed"))
