"""``ofakd export``: timm / ONNX / TorchScript exports of briefly trained students, loaded back
without ofakd (plain timm, onnxruntime, torch.jit) and compared with the trained student."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from ofakd.config import load_config
from ofakd.engine import fit
from ofakd.errors import OfakdError
from ofakd.export import (
    ExportCheckError,
    ExportError,
    StudentSourceError,
    UnfinishedRunError,
    UnknownFormatError,
    UnsupportedExportError,
    export_student,
    load_student,
)

VIT_KWARGS = {"img_size": 32, "patch_size": 4, "depth": 2, "embed_dim": 64, "num_heads": 2}
ATOL = 1e-4


def _train(out_dir, name: str, student: dict, *, ema_decay: float | None = None):
    """One epoch of two SGD steps on 32 digits at 32 px: a real run folder written by the engine."""
    overrides = [
        ("method", {"name": "vanilla"}),
        ("student", {**student, "input_size": [3, 32, 32]}),
        ("data.train_subset", 32),
        ("data.val_subset", 8),
        ("train.batch_size", 16),
        ("train.epochs", 1),
        ("train.optimizer", "sgd"),
        ("train.lr", 0.05),
        ("train.warmup_epochs", 0),
        ("train.ema_decay", ema_decay),
        ("train.device", "cpu"),
        ("run.out_dir", str(out_dir)),
        ("run.name", name),
    ]
    fit(load_config("demo", overrides), progress=False, tensorboard=False, log=lambda _msg: None)
    return out_dir / name


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """resnet18 with an EMA (decay 0.5: timm's EMA copies the student at step 1 and averages from step 2)."""
    return _train(tmp_path_factory.mktemp("runs"), "cnn", {"name": "resnet18"}, ema_decay=0.5)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs"), "vit", {"name": "vit_tiny_patch16_224", "kwargs": VIT_KWARGS})


@pytest.fixture(scope="module")
def cnn_ref(cnn_run):
    """(EMA weights, plain weights, images, the EMA student's logits on them) of the CNN run."""
    ema, plain = _ema_weights(cnn_run), _plain_weights(cnn_run)
    x = _images(5)
    return ema, plain, x, _logits(_reference("resnet18", ema), x)


@pytest.fixture(scope="module")
def vit_ref(vit_run):
    """(images, the student's logits on them) of the ViT run (no EMA: best.safetensors)."""
    x = _images(5)
    model = _reference("vit_tiny_patch16_224", load_file(str(vit_run / "best.safetensors")), **VIT_KWARGS)
    return x, _logits(model, x)


def _images(batch: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x).numpy()


def _ema_weights(run_dir) -> dict[str, torch.Tensor]:
    """The EMA weights a default export must take: best.safetensors when they are the EMA, else last.pt's."""
    from ofakd.run_folder import read_weights_metadata

    if read_weights_metadata(run_dir / "best.safetensors").get("ofakd_source") == "ema":
        return load_file(str(run_dir / "best.safetensors"))
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in ckpt["ema"].items()}


def _plain_weights(run_dir) -> dict[str, torch.Tensor]:
    from ofakd.run_folder import read_weights_metadata

    if read_weights_metadata(run_dir / "best.safetensors").get("ofakd_source") == "model":
        return load_file(str(run_dir / "best.safetensors"))
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    return {k.removeprefix("student."): v for k, v in ckpt["distiller"].items() if k.startswith("student.")}


def _reference(name: str, state: dict[str, torch.Tensor], **kwargs):
    model = timm.create_model(name, num_classes=10, **kwargs)
    model.load_state_dict(state)
    return model.eval()


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- timm -------------------------------------------------------------------------------------


def test_timm_export_of_ema_run_loads_with_plain_timm(cnn_run, cnn_ref, tmp_path, ofakd_cli):
    out = tmp_path / "timm"
    code, stdout, stderr = ofakd_cli("export", cnn_run, "--format", "timm", "--out", out)
    assert code == 0, stderr
    figure = float(re.search(r"max \|timm - PyTorch\| = (\S+)", stdout).group(1))
    assert figure <= ATOL

    # The EMA weights, not the plain student's.
    ema, plain, x, expected = cnn_ref
    assert not _same_state(ema, plain)
    assert _same_state(load_file(str(out / "model.safetensors")), ema)

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 10
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["mean"] == pytest.approx([0.485, 0.456, 0.406]) and cfg["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert cfg["interpolation"] == "bilinear"  # the demo recipe's
    assert cfg["crop_pct"] == 1.0 and cfg["crop_mode"] == "squash"  # ofakd resizes straight to 32x32
    assert config["ofakd"]["ema"] is True

    by_local_dir = timm.create_model(f"local-dir:{out}", pretrained=True)
    # num_classes in the overlay too: else timm drops a head whose size differs from the default config's 1000
    by_file = timm.create_model("resnet18", pretrained=True, num_classes=10,
                                pretrained_cfg_overlay={"file": str(out / "model.safetensors"), "num_classes": 10})
    np.testing.assert_allclose(_logits(by_local_dir, x), expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(_logits(by_file, x), expected, atol=ATOL, rtol=0)
    assert timm.data.resolve_data_config({}, model=by_local_dir)["input_size"] == (3, 32, 32)


def test_no_ema_exports_the_plain_student(cnn_run, cnn_ref):
    ema, plain, _, _ = cnn_ref
    model, info = load_student(cnn_run, ema=True)
    assert info.ema is True and _same_state(model.state_dict(), ema)
    model, plain_info = load_student(cnn_run, ema=False)
    assert plain_info.ema is False and _same_state(model.state_dict(), plain)
    # --weights last: the last epoch's EMA from last.pt
    last, last_info = load_student(cnn_run, weights="last")
    assert last_info.ema is True and last_info.weights.startswith("last.pt")


def test_timm_export_of_vit_keeps_its_model_args(vit_run, vit_ref, tmp_path):
    result = export_student(vit_run, "timm", tmp_path / "vit")
    assert result.max_abs_diff <= ATOL
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    args = config["model_args"]
    assert (args["patch_size"], args["depth"], args["embed_dim"], args["num_heads"]) == (4, 2, 64, 2)
    assert list(args["img_size"]) == [32, 32]
    x, expected = vit_ref
    loaded = timm.create_model(f"local-dir:{tmp_path / 'vit'}", pretrained=True)
    np.testing.assert_allclose(_logits(loaded, x), expected, atol=ATOL, rtol=0)
    # load_student reads the export back, with the run's preprocessing
    again, info = load_student(tmp_path / "vit")
    assert info.kind == "timm" and info.preprocess == result.info.preprocess
    np.testing.assert_allclose(_logits(again, x), expected, atol=ATOL, rtol=0)


# ---- ONNX -------------------------------------------------------------------------------------


def _onnx_logits(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_onnx_export_of_vit_runs_in_onnxruntime(vit_run, vit_ref, tmp_path, ofakd_cli):
    out = tmp_path / "onnx"
    code, stdout, stderr = ofakd_cli("export", vit_run, "--format", "onnx", "--out", out)
    assert code == 0, stderr
    figure = float(re.search(r"max \|onnxruntime - PyTorch\| = (\S+)", stdout).group(1))
    assert figure <= ATOL
    x, expected = vit_ref
    np.testing.assert_allclose(_onnx_logits(out / "model.onnx", x), expected, atol=ATOL, rtol=0)
    assert json.loads((out / "config.json").read_text())["ofakd"]["exports"]["onnx"]["opset"] >= 17


def test_eval_of_an_onnx_export_scores_what_the_run_scores(vit_run, tmp_path, ofakd_cli):
    out = tmp_path / "onnx"
    assert ofakd_cli("export", vit_run, "--format", "onnx", "--out", out)[0] == 0
    code, stdout, stderr = ofakd_cli("eval", vit_run, "--json")
    assert code == 0, stderr
    from_run = json.loads(stdout)
    # the file and its folder alike; the run's 8 validation images (an export is scored on the whole split)
    for target in (out / "model.onnx", out):
        code, stdout, stderr = ofakd_cli("eval", target, "--data.val_subset", "8", "--json")
        assert code == 0, stderr
        from_onnx = json.loads(stdout)
        assert from_onnx["count"] == from_run["count"] == 8
        assert from_onnx["per_class_accuracy"] == from_run["per_class_accuracy"]
        assert from_onnx["mean_loss"] == pytest.approx(from_run["mean_loss"], abs=1e-4)
    model, info = load_student(out / "model.onnx")
    assert info.kind == "onnx" and info.preprocess.input_size == (3, 32, 32) and info.num_classes == 10
    code, _, stderr = ofakd_cli("export", out / "model.onnx", "--format", "timm", "--out", tmp_path / "again")
    assert code == 2 and "an onnx export, which holds no weights ofakd exports again" in stderr
    timm_out = tmp_path / "timm"  # an export of an export: the timm folder exported to ONNX scores the same
    assert ofakd_cli("export", vit_run, "--format", "timm", "--out", timm_out)[0] == 0
    assert ofakd_cli("export", timm_out, "--format", "onnx", "--out", tmp_path / "onnx2")[0] == 0
    code, stdout, stderr = ofakd_cli("eval", tmp_path / "onnx2" / "model.onnx", "--data.val_subset", "8", "--json")
    assert code == 0 and json.loads(stdout)["per_class_accuracy"] == from_run["per_class_accuracy"]
    (out / "model.onnx").write_bytes((out / "model.onnx").read_bytes()[:-8] + b"damaged!")
    code, _, stderr = ofakd_cli("eval", out / "model.onnx")
    assert code == 2 and "is damaged" in stderr and "--format onnx --overwrite" in stderr


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_eval_of_a_torchscript_export_scores_what_the_run_scores(vit_run, tmp_path, ofakd_cli):
    out = tmp_path / "ts"
    assert ofakd_cli("export", vit_run, "--format", "torchscript", "--out", out)[0] == 0
    from_run = json.loads(ofakd_cli("eval", vit_run, "--json")[1])
    code, stdout, stderr = ofakd_cli("eval", out / "model.torchscript.pt", "--data.val_subset", "8", "--json")
    assert code == 0, stderr
    from_ts = json.loads(stdout)
    assert from_ts["per_class_accuracy"] == from_run["per_class_accuracy"]
    assert from_ts["mean_loss"] == pytest.approx(from_run["mean_loss"], abs=1e-5)
    assert load_student(out)[1].kind == "torchscript"


def test_onnx_export_of_cnn_with_the_legacy_exporter(cnn_run, cnn_ref, tmp_path):
    result = export_student(cnn_run, "onnx", tmp_path / "onnx", onnx_exporter="legacy", opset=17)
    assert result.exporter == "legacy" and result.max_abs_diff <= ATOL
    _, _, x, expected = cnn_ref
    np.testing.assert_allclose(_onnx_logits(tmp_path / "onnx" / "model.onnx", x), expected, atol=ATOL, rtol=0)


# ---- TorchScript ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("which", ["cnn", "vit"])
def test_torchscript_export_runs_with_torch_jit(which, request, tmp_path):
    run = request.getfixturevalue(f"{which}_run")
    x, expected = request.getfixturevalue(f"{which}_ref")[-2:]
    result = export_student(run, "torchscript", tmp_path / "ts")
    assert result.max_abs_diff <= ATOL
    extra = {"config.json": ""}
    scripted = torch.jit.load(str(tmp_path / "ts" / "model.torchscript.pt"), _extra_files=extra)
    np.testing.assert_allclose(_logits(scripted, x), expected, atol=ATOL, rtol=0)
    assert json.loads(extra["config.json"])["pretrained_cfg"]["input_size"] == [3, 32, 32]


def test_formats_share_a_folder_and_config_lists_them(vit_run, tmp_path):
    out = tmp_path / "all"
    export_student(vit_run, "timm", out)
    export_student(vit_run, "torchscript", out)
    exports = json.loads((out / "config.json").read_text())["ofakd"]["exports"]
    assert set(exports) == {"timm", "torchscript"}
    assert exports["torchscript"]["max_abs_diff"] <= ATOL
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export_student(vit_run, "timm", out)


# ---- errors -----------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line]
    assert len(lines) == 1, text
    return lines[0]


def test_run_without_a_finished_checkpoint(vit_run, tmp_path, ofakd_cli):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((vit_run / "config.yaml").read_text())
    with pytest.raises(UnfinishedRunError, match="no finished checkpoint"):
        export_student(unfinished, "timm", tmp_path / "out")
    code, _, stderr = ofakd_cli("export", unfinished, "--format", "onnx", "--out", tmp_path / "out")
    assert code == 2
    assert "best.safetensors is missing" in _one_line(stderr)
    with pytest.raises(UnfinishedRunError, match="last.pt is missing"):
        load_student(unfinished, weights="last")
    assert not (tmp_path / "out").exists()
    with pytest.raises(StudentSourceError, match="neither config.yaml"):
        load_student(tmp_path)


def test_unknown_format(vit_run, tmp_path, ofakd_cli):
    with pytest.raises(UnknownFormatError, match="use --format timm, onnx or torchscript"):
        export_student(vit_run, "tflite", tmp_path / "out")
    code, _, stderr = ofakd_cli("export", vit_run, "--format", "coreml", "--out", tmp_path / "out")
    assert code == 2 and "unknown export format 'coreml'" in _one_line(stderr)


def test_architecture_that_cannot_export_says_why(vit_run, tmp_path, monkeypatch, ofakd_cli):
    def no_onnx(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise torch._dynamo.exc.Unsupported("Dynamic control flow is not supported at the moment.\nmore")
        raise RuntimeError("Exporting the operator 'aten::frobnicate' to ONNX opset version 18 is not supported.")

    monkeypatch.setattr(torch.onnx, "export", no_onnx)
    with pytest.raises(UnsupportedExportError) as err:
        export_student(vit_run, "onnx", tmp_path / "out")
    message = str(err.value)
    assert "vit_tiny_patch16_224 cannot be exported to ONNX" in message
    assert "Dynamic control flow is not supported" in message and "aten::frobnicate" in message
    assert "--format torchscript" in message and "\n" not in message
    code, _, stderr = ofakd_cli("export", vit_run, "--format", "onnx", "--out", tmp_path / "out")
    assert code == 2 and "cannot be exported to ONNX" in _one_line(stderr)

    def no_jit(*args, **kwargs):
        raise RuntimeError("Python builtin <built-in function id> is currently not supported in Torchscript")

    monkeypatch.setattr(torch.jit, "script", no_jit)
    monkeypatch.setattr(torch.jit, "trace", no_jit)
    with pytest.raises(UnsupportedExportError, match=r"cannot be exported to TorchScript: torch\.jit\.script: "
                       r"RuntimeError: Python builtin .*; torch\.jit\.trace: "):
        export_student(vit_run, "torchscript", tmp_path / "out")
    assert not any((tmp_path / "out").glob("model*"))


def test_an_export_that_does_not_match_is_not_kept(vit_run, tmp_path, monkeypatch):
    from ofakd.export import pipeline

    real = pipeline.load_torchscript

    def off_by_a_little(folder):
        module = real(folder)
        return lambda x: module(x) + 1e-3

    monkeypatch.setattr(pipeline, "load_torchscript", off_by_a_little)
    with pytest.raises(ExportCheckError, match=r"max \|torch.jit - PyTorch\| = 0.001 .* > 0.0001; nothing was written"):
        export_student(vit_run, "torchscript", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_errors_are_ofakd_errors():
    for cls in (UnfinishedRunError, UnknownFormatError, UnsupportedExportError, ExportCheckError, StudentSourceError):
        assert issubclass(cls, OfakdError)
