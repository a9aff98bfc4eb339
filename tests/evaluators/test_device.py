"""Devices and precisions: resolution, clear errors, bf16 on the CPU, and the GPU paths (skipped without CUDA)."""


import pytest
import torch

from igcnas.nas.records import record_of
from igcnas.cli import main
from igcnas.errors import BadInput
from igcnas.evaluators.datasets import load_dataset
from igcnas.evaluators.device import resolve_device, resolve_precision
from igcnas.evaluators.train import TrainSettings, train_model
from igcnas.models import build_model
from igcnas.search_space.paper_networks import cifar_network

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    with pytest.raises(BadInput, match=r"--device must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"):
        resolve_device("tpu")
    assert resolve_precision(None, torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(BadInput, match="--precision must be one of fp32, bf16, fp16"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(BadInput, match="fp16 is for GPUs"):
        resolve_precision("fp16", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the error cannot happen")
def test_an_unavailable_device_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    with pytest.raises(BadInput, match="no CUDA device is available"):
        resolve_device("cuda:1")
    code = main(["search", "--device", "cuda", "--n-trials", "1", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--device cuda" in err[0]
    assert not any(tmp_path.iterdir())  # nothing half-written
    assert main(["search", "--devices", "0,0", "--output-dir", str(tmp_path)]) == 2
    assert main(["search", "--precision", "fp8", "--output-dir", str(tmp_path)]) == 2


def small_net():
    return cifar_network("igcv2", 16, 5, [{"chain": (4, 4)}, {"chain": (4, 8)}, {"chain": (8, 8)}],
                         num_classes=10, input_size=8).replace(in_channels=1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.mark.slow
def test_bf16_autocast_on_the_cpu_trains_and_follows_fp32(digits):
    """Over 3 epochs of digits the bf16 run's per-epoch training loss stays within 0.15 of fp32's (the
    bf16 mantissa has 8 bits: the runs drift apart, they do not diverge) and it learns as well."""
    runs = {}
    for precision in ("fp32", "bf16"):
        model = build_model(small_net(), seed=0)
        runs[precision] = train_model(model, digits, TrainSettings(epochs=3, seed=0, threads=1, precision=precision))
    assert runs["bf16"].precision == "bf16" and runs["fp32"].precision == "fp32"
    for a, b in zip(runs["fp32"].train_loss, runs["bf16"].train_loss):
        assert abs(a - b) <= 0.15, (runs["fp32"].train_loss, runs["bf16"].train_loss)
    assert runs["bf16"].val_accuracy > 0.8


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_in_every_precision(digits, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = build_model(small_net(), seed=0)
    result = train_model(model, digits, TrainSettings(epochs=3, seed=0, device="cuda", precision=precision))
    assert result.device.startswith("cuda") and result.precision == precision
    assert next(model.parameters()).is_cuda
    assert result.val_accuracy > 0.8


@needs_cuda
def test_cuda_default_precision_is_bf16_where_supported():
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert resolve_precision(None, torch.device("cuda")) == expected


@needs_cuda
def test_a_search_on_cuda_records_its_device(tmp_path):
    import optuna

    assert main(["search", "--device", "cuda", "--n-trials", "2", "--epochs", "1", "--width", "8",
                 "--output-dir", str(tmp_path), "--study", "g", "--no-dashboard"]) == 0
    study = optuna.load_study(study_name="g", storage=f"sqlite:///{tmp_path / 'g' / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(record_of(t.user_attrs)["device"].startswith("cuda") for t in done)


@pytest.mark.slow
def test_devices_pool_gives_each_trial_a_listed_device_and_records_it(tmp_path):
    """--devices on this CPU-only machine: the pool logic (one trial per listed device) with the CPU listed."""
    import optuna

    assert main(["search", "--devices", "cpu", "--n-trials", "2", "--epochs", "1", "--max-batches-per-epoch", "3",
                 "--width", "8", "--blocks", "1", "--output-dir", str(tmp_path), "--study", "d",
                 "--no-dashboard"]) == 0
    study = optuna.load_study(study_name="d", storage=f"sqlite:///{tmp_path / 'd' / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(record_of(t.user_attrs)["device"] == "cpu" and record_of(t.user_attrs)["precision"] == "fp32"
                        for t in done)


def test_the_device_grammar_is_said_once():
    """Which device names exist is one pattern pair (evaluators/settings.py): no other module of igcnas
    spells a device regular expression of its own."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "igcnas"
    own = [p for p in package.rglob("*.py") if p.name != "settings.py"
           and re.search(r"re\.(compile|fullmatch|match|search)\([^)]*cuda", p.read_text(encoding="utf-8"))]
    assert own == []
