"""Table of malformed inputs across the CLI and config files: one line, exit 2, no traceback, study untouched."""

import json
import pickle

import optuna
import pytest
import torch

from igcnas.cli import main
from tests.conftest import make_study

GOOD_CONFIG = {"family": "igcv2", "stem_width": 16, "stages": [{"width": 16, "blocks": 1, "chain": [4, 4]}]}


def config(**changes):
    data = json.loads(json.dumps(GOOD_CONFIG))
    stage = changes.pop("stage", None)
    if stage:
        data["stages"][0].update(stage)
    data.update(changes)
    return json.dumps(data)


# (name, argv template, files to write {name: content or callable}, expected text in the error)
CASES = [
    ("unknown family", ["space", "--family", "resnext", "--width", "16"], {}, "family must be one of"),
    ("config unknown family", ["space", "check", "{d}/c.json"], {"c.json": config(family="vgg")},
     "family must be one of"),
    ("K not dividing width", ["space", "check", "{d}/c.json"], {"c.json": config(stage={"chain": [3, 5]})},
     "does not divide the stage width"),
    ("L = 0", ["space", "check", "{d}/c.json"],
     {"c.json": config(family="igcv2_star", stage={"chain": None, "k": 4, "l": 0})}, "l (L"),
    ("empty chain", ["space", "check", "{d}/c.json"], {"c.json": config(stage={"chain": []})}, "chain"),
    ("negative width", ["space", "check", "{d}/c.json"], {"c.json": config(stage={"width": -16})},
     "width must be"),
    ("zero blocks", ["space", "check", "{d}/c.json"], {"c.json": config(stage={"blocks": 0})}, "blocks must be"),
    ("bad stride", ["space", "check", "{d}/c.json"], {"c.json": config(stage={"stride": 3})}, "stride must be"),
    ("unknown field", ["space", "check", "{d}/c.json"], {"c.json": config(depth=20)}, "unknown config field"),
    ("malformed json", ["space", "check", "{d}/c.json"], {"c.json": '{"family": '}, "not valid JSON"),
    ("malformed toml", ["space", "check", "{d}/c.toml"], {"c.toml": "family = = 'x'"}, "not valid TOML"),
    ("config not an object", ["space", "check", "{d}/c.json"], {"c.json": "[1, 2]"}, "must be a JSON object"),
    ("missing config", ["count", "{d}/missing.json"], {}, "does not exist"),
    ("unknown zoo name", ["count", "no_such_net"], {}, "neither a zoo network"),
    ("unknown dataset", ["search", "--dataset", "mnist"], {}, "dataset must be one of"),
    ("missing data dir", ["search", "--dataset", "cifar10", "--data-dir", "{d}/nope"], {}, "does not exist"),
    ("data dir without data", ["search", "--dataset", "cifar10", "--data-dir", "{d}/empty"], {"empty/.keep": ""},
     "no cifar10 files"),
    ("non-image in imagefolder", ["search", "--dataset", "imagefolder", "--data-dir", "{d}/img"],
     {"img/a/x.txt": "text", "img/b/y.txt": "text"}, "not an image file"),
    ("truncated CIFAR file", ["search", "--dataset", "cifar10", "--data-dir", "{d}/cifar"],
     {f"cifar/data_batch_{i}.bin": "x" * 100 for i in range(1, 6)}, "not a CIFAR binary file"),
    ("corrupt CIFAR pickle", ["search", "--dataset", "cifar10", "--data-dir", "{d}/py"],
     {f"py/data_batch_{i}": "not a pickle" for i in range(1, 6)}, "not a CIFAR python batch"),
    ("negative budget", ["search", "--max-params", "-5"], {}, "--max-params must be"),
    ("unit-less garbage budget", ["search", "--max-macs", "lots"], {}, "--max-macs must be"),
    ("zero latency budget", ["search", "--max-latency-ms", "0"], {}, "--max-latency-ms must be > 0"),
    ("unknown sampler", ["search", "--sampler", "cmaes"], {}, "sampler must be one of"),
    ("unknown backend", ["search", "--backend", "dask"], {}, "backend must be one of"),
    ("malformed storage URL", ["search", "--storage", "::::"], {}, "not a valid storage URL"),
    ("unreachable storage", ["trials", "--storage", "postgresql+psycopg2://x@127.0.0.1:1/db", "--study", "s"], {},
     "cannot be opened"),
    ("storage folder missing", ["search", "--storage", "sqlite:///{d}/no/such/dir/s.db"], {}, "does not exist"),
    ("missing study", ["trials", "--storage", "{study_url}", "--study", "nope"], {}, "study 'nope' does not exist"),
    ("missing study for pick", ["pick", "--storage", "{study_url}", "--study", "nope"], {},
     "study 'nope' does not exist"),
    ("pick negative budget", ["pick", "--storage", "{study_url}", "--study", "bad", "--max-params", "-1"], {},
     "--max-params must be"),
    ("pick budget nothing fits", ["pick", "--storage", "{study_url}", "--study", "bad", "--max-params", "1"], {},
     "no trial on the front fits the budget"),
    ("corrupted export dir", ["count", "{d}/export/config.json"], {"export/config.json": "{oops"},
     "not valid JSON"),
    ("zero trials", ["search", "--n-trials", "0"], {}, "n-trials must be"),
    ("negative total trials", ["search", "--total-trials", "-2"], {}, "total-trials must be"),
    ("address without ray", ["search", "--address", "127.0.0.1:1"], {}, "--address is not supported by the optuna"),
    ("total trials on ray", ["search", "--backend", "ray", "--total-trials", "5"], {},
     "--total-trials is not supported by the ray backend"),
    ("n-jobs on ray", ["search", "--backend", "ray", "--n-jobs", "2"], {}, "--n-jobs is not supported by the ray"),
    ("unknown option", ["search", "--frobnicate"], {}, "unrecognized arguments"),
    ("width not an int", ["space", "--family", "igcv2", "--width", "wide"], {}, "invalid int value"),
]


@pytest.fixture(scope="module")
def study_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('bad') / 'bad.db'}"
    make_study(url, "bad", 12, seed=3)
    return url


@pytest.mark.parametrize("name, argv, files, expected", CASES, ids=[c[0] for c in CASES])
@pytest.mark.slow
def test_bad_input(name, argv, files, expected, tmp_path, study_url, capsys):
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    before = len(optuna.load_study(study_name="bad", storage=study_url).trials)
    args = [a.format(d=tmp_path, study_url=study_url) for a in argv]
    if args[0] == "search":
        args += ["--output-dir", str(tmp_path / "runs")]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("igc-nas: error")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    print(f"[bad input] {name}: {lines[0]}")  # the list the reliability note quotes (pytest -s)
    assert len(optuna.load_study(study_name="bad", storage=study_url).trials) == before
    assert not list((tmp_path / "runs").rglob("*.db")) if (tmp_path / "runs").exists() else True


def test_an_internal_value_error_is_not_reported_as_bad_input(monkeypatch, tmp_path, capsys):
    """A bug that raises ValueError inside the search is an internal error: exit 1, said so, traceback with -v."""
    import igcnas.nas.orchestrator as orchestrator

    def broken(options, **seams):
        raise ValueError("an internal bug, not the user's input")

    monkeypatch.setattr(orchestrator, "prepare", broken)
    code = main(["search", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "igc-nas: internal error: ValueError: an internal bug" in err and "igc-nas: error:" not in err
    assert "Traceback" not in err and "-v" in err
    code = main(["-v", "search", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "an internal bug" in err


def test_model_file_that_is_not_a_state_dict(tmp_path):
    from igcnas.models import load
    from igcnas.search_space.paper_networks import ZOO
    from igcnas.search_space.config_io import config_to_dict

    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(ZOO["igcv2_c64_d8"].config)))
    (tmp_path / "model.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a state dict"):
        load(tmp_path)
    torch.save([torch.zeros(1)], tmp_path / "model.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load(tmp_path)
