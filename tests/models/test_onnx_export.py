"""ONNX export of every block family (and a deployed Structured Convolutions network), checked in ONNX Runtime."""

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from igcnas.errors import BadInput  # noqa: E402
from igcnas.models import build_model, get_block  # noqa: E402
from igcnas.models import onnx_export  # noqa: E402
from igcnas.models.onnx_export import check_onnx, export_onnx, ort_session, require_onnx  # noqa: E402
from igcnas.models.structured import SumPoolConv2d  # noqa: E402
from igcnas.search_space.families import FAMILIES  # noqa: E402
from tests.models.test_blocks import small_config  # noqa: E402
from tests.models.test_structured_networks import structured  # noqa: E402

CASES = [*sorted(FAMILIES), "structured-igcv2"]


def trained_ish(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so folding BN into the convolutions is tested."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.3, 0.3, generator=generator)
            elif isinstance(m, torch.nn.Linear):  # a trained classifier's scale, not the init's 0.01
                m.weight.normal_(0.0, 1.0, generator=generator)
        model.train()
        for _ in range(4):  # running statistics from real forward passes
            model(2.0 * torch.randn(8, 3, 32, 32, generator=generator) + 0.5)
    return model.eval()


def network(case: str) -> torch.nn.Module:
    if case.startswith("structured-"):
        config = structured(small_config(case.removeprefix("structured-")), ((2, 2), (2, 3)))
        model = build_model(config, seed=0, form="deployed")
        assert any(isinstance(m, SumPoolConv2d) for m in model.modules())
    else:
        model = build_model(small_config(case), seed=0)
    return trained_ish(model)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.slow
def test_every_family_exports_to_onnx_that_matches_pytorch(case, tmp_path):
    model = network(case)
    path = export_onnx(model, tmp_path / "model.onnx", (3, 32, 32))
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # self-contained: no external data file
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["images"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic (dynamic) batch
    assert not model.training

    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    check = check_onnx(model, path, images)
    with torch.inference_mode():
        logits = model(images)
    assert logits.std() > 0.1  # logits large enough for the differences and the argmax to mean something
    assert check.max_abs_diff <= 1e-4 and check.top1_agreement == 1.0 and check.passed, check
    assert check.batch == 16 and check.threads == 1 and check.cpu and check.ort_version
    assert set(check.latency_ms) == {1, 32} and all(ms > 0 for ms in check.latency_ms.values())

    session = ort_session(path)
    for batch in (1, 7):  # the batch dimension is dynamic
        x = images[:batch]
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        with torch.inference_mode():
            assert got.shape == (batch, 10)
            assert (got - model(x)).abs().max() <= 1e-4


def test_a_single_unit_exports_with_either_exporter_and_its_own_tensor_names(tmp_path):
    """Latency tables export single units; the TorchScript exporter stays usable for them."""
    model = network("igcv2")
    block = next(m for m in model.modules() if type(m) is get_block("igcv2"))
    x = torch.randn(3, 16, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = block(x)
    for exporter in ("dynamo", "torchscript"):
        path = export_onnx(block, tmp_path / f"{exporter}.onnx", (16, 32, 32), exporter=exporter, input_name="x",
                           output_name="y")
        session = ort_session(path.read_bytes(), threads=2)  # a model in memory works as well as a file
        assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["y"]
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        assert (got - expected).abs().max() <= 1e-4, exporter
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamo.onnx", "torchscript.onnx"]


@pytest.mark.slow
def test_a_model_in_training_mode_is_exported_in_eval_mode_and_left_as_it_was(tmp_path):
    model = network("igcv1").train()
    path = export_onnx(model, tmp_path / "m.onnx", (3, 32, 32))
    assert model.training
    check = check_onnx(model, path, torch.randn(4, 3, 32, 32))
    assert model.training and check.passed


@pytest.mark.parametrize("call, message", [
    (lambda p: export_onnx(torch.nn.Identity(), p, (3, 32)), "input_shape must be"),
    (lambda p: export_onnx(torch.nn.Identity(), p, (3, 8, 8), exporter="jit"), "exporter must be"),
    (lambda p: export_onnx(torch.nn.Identity(), p, (3, 8, 8), opset=17), "opset 18 or newer"),
    (lambda p: ort_session(p, threads=0), "threads must be a positive integer"),
    (lambda p: check_onnx(torch.nn.Identity(), p, torch.zeros(3, 8, 8)), "non-empty .N, C, H, W. batch"),
])
def test_bad_arguments_are_bad_input(tmp_path, call, message):
    path = tmp_path / "m.onnx"
    with pytest.raises(BadInput, match=message):
        call(path)


def test_a_missing_extra_is_one_line_naming_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(onnx_export, "_MODULES", ("onnx", "onnxruntime_not_installed_here"))
    assert not onnx_export.onnx_available()
    with pytest.raises(BadInput) as info:
        require_onnx()
    message = str(info.value)
    assert "\n" not in message and "pip install 'igc-nas[onnx]'" in message
    assert "onnxruntime_not_installed_here" in message
    with pytest.raises(BadInput, match="igc-nas.onnx"):
        export_onnx(torch.nn.Identity(), tmp_path / "m.onnx", (3, 8, 8))
    assert not (tmp_path / "m.onnx").exists()
