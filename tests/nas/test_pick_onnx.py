"""``igc-nas pick --export`` writes model.onnx, checked against PyTorch in ONNX Runtime (``--onnx``)."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("onnx")

from igcnas.cli import main  # noqa: E402
from igcnas.models import load, onnx_export  # noqa: E402
from igcnas.models.onnx_export import ort_session  # noqa: E402
from igcnas.nas.options import SearchOptions  # noqa: E402
from igcnas.nas.orchestrator import run_search  # noqa: E402


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A small real search on digits (trained weights stored per trial), smaller than test_pick's."""
    out = tmp_path_factory.mktemp("pick-onnx")
    run_search(SearchOptions(output_dir=str(out), n_trials=2, epochs=1, max_batches_per_epoch=4, widths=(8,),
                             blocks=(1,), study="o"))
    return out, f"sqlite:///{out / 'o' / 'study.db'}"


@pytest.mark.slow
def test_pick_exports_model_onnx_that_onnx_runtime_runs_like_pytorch(searched, tmp_path, capsys):
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m")]) == 0  # --onnx auto: installed here
    stdout = capsys.readouterr()[0]
    assert "top-1 agreement 1.0000" in stdout and "DOES NOT MATCH" not in stdout
    path = tmp_path / "m" / "model.onnx"
    assert path.is_file()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.onnx", "model.pt",
                                                                  "model.pt2", "report.md"]
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["images"]
    model = load(tmp_path / "m")
    for batch in (1, 5):
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {"images": x.numpy()})[0]
        with torch.inference_mode():
            assert np.abs(got - model(x).numpy()).max() <= 1e-4
    report = (tmp_path / "m" / "report.md").read_text()
    for expected in ("- ONNX Runtime 1.", "threads: 1, CPU: ", "max |ONNX Runtime - PyTorch| of logits: ",
                     "- top-1 agreement ONNX Runtime vs PyTorch: 1.0000", "batch 1: ", "batch 32: ",
                     'onnxruntime.InferenceSession("DIR/model.onnx")', '{"images": x}', "matches PyTorch"):
        assert expected in report, expected
    assert "DOES NOT MATCH" not in report


@pytest.mark.slow
def test_export_model_returns_the_check(searched, tmp_path):
    import optuna

    from igcnas.nas.budget import Budget
    from igcnas.nas.pareto import pareto_front, trials_frame
    from igcnas.nas.pick import choose, export_model

    _, url = searched
    study = optuna.load_study(study_name="o", storage=url)
    df = trials_frame(study)
    result = export_model(study=study, trial_row=choose(df, Budget()), directory=tmp_path / "api",
                          front=pareto_front(df), budget=Budget(), onnx=True)
    check = result.onnx_check
    assert check is not None and check.passed and check.top1_agreement == 1.0
    assert check.batch == min(256, len(result.val_index)) and check.threads == 1
    assert result.files["onnx"] == tmp_path / "api" / "model.onnx" and result.files["onnx"].is_file()


def test_onnx_off_writes_no_model_onnx(searched, tmp_path, capsys):
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m"), "--onnx", "off"]) == 0
    assert not (tmp_path / "m" / "model.onnx").exists() and (tmp_path / "m" / "model.pt").is_file()
    assert "ONNX: not written (turned off)" in (tmp_path / "m" / "report.md").read_text()
    assert "ONNX Runtime" not in capsys.readouterr()[0]


def test_bad_onnx_value_exits_2_on_one_line(searched, tmp_path, capsys):
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m"), "--onnx", "maybe"]) == 2
    err = capsys.readouterr()[1].strip()
    assert "\n" not in err and "--onnx" in err and "maybe" in err
    assert not (tmp_path / "m").exists()


def test_onnx_on_without_the_extra_exits_2_before_writing_anything(searched, tmp_path, capsys, monkeypatch):
    _, url = searched
    monkeypatch.setattr(onnx_export, "_MODULES", ("onnx", "onnxruntime_not_installed_here"))
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m"), "--onnx", "on"]) == 2
    err = capsys.readouterr()[1].strip()
    assert "\n" not in err and "pip install 'igc-nas[onnx]'" in err
    assert not (tmp_path / "m").exists()
    # auto without the extra: everything else is written, and the report says why there is no model.onnx
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / "model.onnx").exists()
    assert "ONNX: not written (onnx/onnxruntime not installed)" in (tmp_path / "a" / "report.md").read_text()


@pytest.mark.slow
def test_a_mismatching_onnx_file_is_still_written_with_a_warning(searched, tmp_path, capsys, monkeypatch, caplog):
    """A mismatch is a defect of the export, not bad input: the files stay, the report and the log say so."""
    import dataclasses

    real = onnx_export.check_onnx
    monkeypatch.setattr(onnx_export, "check_onnx",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), max_abs_diff=0.5, top1_agreement=0.75))
    _, url = searched
    assert main(["pick", "--storage", url, "--export", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.onnx").is_file() and (tmp_path / "m" / "model.pt").is_file()
    assert "DOES NOT MATCH PyTorch" in (tmp_path / "m" / "report.md").read_text()
    assert "DOES NOT MATCH PyTorch" in capsys.readouterr()[0]
    assert any(r.levelname == "WARNING" and "model.onnx does not match PyTorch" in r.getMessage()
               for r in caplog.records)
