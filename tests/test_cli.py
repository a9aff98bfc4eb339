import json
import subprocess
import sys

import pytest

from igcnas.cli import main
from igcnas.search_space.config_io import config_to_dict
from igcnas.search_space.paper_networks import ZOO


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_zoo_json_lists_every_network_with_counts(capsys):
    code, out, _ = run_cli(capsys, "zoo", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["name"] for r in rows} == set(ZOO)
    for row in rows:
        assert row["closed_form_equals_fvcore"] is True
        assert row["fvcore_total"] == row["closed_form_fvcore_total"]
        assert row["flops"] == 2 * row["macs"]
        assert {"params", "conv_params", "macs"} <= set(row)


def test_space_lists_complementary_options_and_count(capsys):
    code, out, _ = run_cli(capsys, "space", "--family", "igcv2", "--width", "16", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["count"] == 6 * 10 * 15  # ordered factorisations of 16, 32, 64 into 2-3 factors >= 2
    assert all(o["complementary"] for s in data["stages"] for o in s["options"])
    assert len(data["samples"]) == 5


@pytest.mark.slow
def test_space_check_and_count_on_a_config_file(tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(config_to_dict(ZOO["igcv2_c64_d8"].config)))
    code, out, _ = run_cli(capsys, "space", "check", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["complementary"] for s in data["stages"]] == [True, False, False]
    code, out, _ = run_cli(capsys, "count", str(path), "--json")
    assert code == 0
    counted = json.loads(out)
    assert counted["closed_form_equals_fvcore"] and counted["torch_flop_counter_equals_2x_macs"]
    code, out, _ = run_cli(capsys, "count", "igcv2_c64_d8", "--latency", "--batch", "4")
    assert code == 0 and "CPU latency" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["space", "--family", "resnet", "--width", "16"], "family must be one of"),
        (["space", "--family", "igcv2", "--width", "0"], "widths must be integers >= 2"),
        (["count", "no_such_net"], "neither a zoo network"),
        (["space", "check", "missing.json"], "does not exist"),
        (["zoo", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, expected):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"family": "igcv2", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "chain": [3, 4]}]}',
         "does not divide the stage width 16"),
        ('{"family": "igcv2", "stem_width"', "not valid JSON"),
        ('{"family": "igcv2_star", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "k": 4, "l": 0}]}',
         "l (L"),
        ('{"family": "dense", "stem_width": 16, "stages": [{"width": -16, "blocks": 1}]}', "width must be"),
    ],
)
def test_bad_config_files_exit_2(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, "space", "check", str(path))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_a_renamed_command_still_runs_with_a_one_line_notice(capsys):
    """``proxy-check`` is now ``rank-check``: the old name runs the new command (so scripts keep working),
    says so on stderr, and is not offered by the help."""
    from igcnas.cli import build_parser

    code, out, err = run_cli(capsys, "proxy-check", "--n-configs", "2")
    assert code == 2  # rank-check's own check of --n-configs: the renamed command ran
    assert err.splitlines() == ["igc-nas: proxy-check was renamed rank-check; running igc-nas rank-check",
                                "igc-nas: error: n-configs must be >= 3 to rank anything, got 2"]
    assert "rank-check" in build_parser().format_help() and "proxy-check" not in build_parser().format_help()


@pytest.mark.slow
def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "igcnas.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "zoo" in out.stdout


def test_search_flags_are_generated_from_the_options_dataclass():
    """Every option is declared once: each SearchOptions field with a flag is on the parser, and no flag
    given means exactly the dataclass defaults."""
    from igcnas.cli import build_parser
    from igcnas.cli.search import options_from_args
    from igcnas.nas.options import SearchOptions, cli_fields

    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["search"].format_help()
    for name, _default, spec in cli_fields():
        assert (spec.flag or "--" + name.replace("_", "-")) in help_text, name
    assert options_from_args(parser.parse_args(["search"])) == SearchOptions()
    changed = options_from_args(parser.parse_args(["search", "--max-params", "20k", "--width", "8", "--width", "16",
                                                   "--no-early-stopping", "--blocks", "1"]))
    assert changed.max_params == 20_000 and changed.widths == (8, 16) and changed.blocks == (1,)
    assert not changed.early_stopping and set(changed.changed()) == {"max_params", "widths", "early_stopping",
                                                                       "blocks"}
