"""CKA: the unbiased minibatch estimator, its invariances, the heatmap/CSV/JSON files and ``ofakd cka``."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from ofakd.analysis.hsic import MinibatchCKA, hsic_unbiased, linear_cka, minibatch_cka
from ofakd.analysis.result import CKAResult


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two related random representations: Y is a noisy nonlinear function of X."""
    g = _gen(seed)
    x = torch.randn(n, 12, generator=g, dtype=torch.float64)
    w = torch.randn(12, 20, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ w) + 1.5 * torch.randn(n, 20, generator=g, dtype=torch.float64)
    return x, y


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(seed), dtype=torch.float64))
    return q


def full_batch_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The plain (biased) formula on all samples at once: ||Yᶜᵀ Xᶜ||²_F / (||Xᶜᵀ Xᶜ||_F ||Yᶜᵀ Yᶜ||_F)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def numpy_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012) eq. 5, written out with explicit matrices."""
    n = k.shape[0]
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    ones = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (ones @ kt @ ones) * (ones @ lt @ ones) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (ones @ kt @ lt @ ones)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def test_unbiased_hsic_matches_the_written_out_formula():
    x, y = _pair(40)
    k, l = (x @ x.T).numpy(), (y @ y.T).numpy()  # noqa: E741
    got = hsic_unbiased(torch.from_numpy(k), torch.from_numpy(l)).item()
    assert got == pytest.approx(numpy_unbiased_hsic(k, l), rel=1e-10)


def test_cka_of_a_representation_with_itself_is_one():
    x, _ = _pair()
    assert linear_cka(x, x).item() == pytest.approx(1.0, abs=1e-12)
    maps = torch.randn(32, 4, 5, 5, generator=_gen(1))
    assert linear_cka(maps, maps).item() == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(maps.split(8), maps.split(8)).item() == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_of_either_side():
    x, y = _pair()
    base = linear_cka(x, y).item()
    assert 0.05 < base < 0.95
    assert linear_cka(x @ _orthogonal(12, 3), y).item() == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, y @ _orthogonal(20, 4)).item() == pytest.approx(base, abs=1e-10)
    batches = minibatch_cka(x.split(16), y.split(16)).item()
    rotated = minibatch_cka((x @ _orthogonal(12, 5)).split(16), (y @ _orthogonal(20, 6)).split(16)).item()
    assert rotated == pytest.approx(batches, abs=1e-10)


def test_cka_is_invariant_to_isotropic_scaling_of_either_side():
    x, y = _pair()
    base = linear_cka(x, y).item()
    assert linear_cka(7.5 * x, y).item() == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 0.01 * y).item() == pytest.approx(base, abs=1e-10)
    assert minibatch_cka((3 * x).split(24), y.split(24)).item() == pytest.approx(
        minibatch_cka(x.split(24), y.split(24)).item(), abs=1e-10
    )


def test_cka_is_symmetric():
    x, y = _pair()
    assert linear_cka(x, y).item() == pytest.approx(linear_cka(y, x).item(), abs=1e-12)
    feats = [torch.randn(64, d, generator=_gen(d)) for d in (3, 8, 16)]
    mixed = [feats[0] @ torch.randn(3, 5, generator=_gen(9)), feats[1] + feats[2][:, :8], feats[2]]
    ab, ba = MinibatchCKA(3, 3), MinibatchCKA(3, 3)
    for chunk in range(4):
        part = slice(16 * chunk, 16 * chunk + 16)
        ab.update([f[part] for f in feats], [m[part] for m in mixed])
        ba.update([m[part] for m in mixed], [f[part] for f in feats])
    torch.testing.assert_close(ab.compute(), ba.compute().T, rtol=0, atol=1e-12)


def test_minibatch_estimate_agrees_with_a_full_batch_computation():
    x, y = _pair(n=4000, seed=11)
    full = full_batch_linear_cka(x.numpy(), y.numpy())
    estimate = minibatch_cka(x.split(100), y.split(100)).item()
    assert abs(estimate - full) < 0.02
    # Unrelated features: both near zero.
    z = torch.randn(4000, 20, generator=_gen(12), dtype=torch.float64)
    assert (
        abs(minibatch_cka(x.split(100), z.split(100)).item() - full_batch_linear_cka(x.numpy(), z.numpy()))
        < 0.02
    )


def test_small_batches_are_skipped_and_none_is_an_error():
    acc = MinibatchCKA(1, 1)
    assert acc.update([torch.randn(3, 4)], [torch.randn(3, 4)]) is False
    with pytest.raises(ValueError, match="at least 4"):
        acc.compute()


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _result() -> CKAResult:
    matrix = np.array([[0.9, 0.4, 0.1], [0.3, 0.8, 0.2], [0.1, 0.3, float("nan")], [0.05, 0.2, 0.6]])
    return CKAResult(
        matrix=matrix,
        names_a=["layer1", "layer2", "layer3", "layer4"],
        names_b=["blocks.0", "blocks.1", "blocks.3"],
        model_a="resnet18",
        model_b="vit_tiny_patch16_224",
        num_samples=128,
        num_batches=2,
    )


def test_heatmap_is_a_png_of_the_expected_size(tmp_path):
    from ofakd.analysis.heatmap import heatmap_figsize, plot_cka_heatmap

    result = _result()
    path = plot_cka_heatmap(result, tmp_path / "cka.png", dpi=80)
    width, height = heatmap_figsize(4, 3)
    assert _png_size(path) == (round(width * 80), round(height * 80))
    path = plot_cka_heatmap(result, tmp_path / "fixed.png", dpi=50, figsize=(6, 4))
    assert _png_size(path) == (300, 200)


def test_csv_and_json_hold_the_same_matrix(tmp_path):
    result = _result()
    result.save_csv(tmp_path / "cka.csv")
    result.save_json(tmp_path / "cka.json")
    names_a, names_b, from_csv = CKAResult.read_csv(tmp_path / "cka.csv")
    data = json.loads((tmp_path / "cka.json").read_text())
    from_json = np.array([[np.nan if v is None else v for v in row] for row in data["matrix"]])
    assert names_a == data["names_a"] == result.names_a
    assert names_b == data["names_b"] == result.names_b
    np.testing.assert_array_equal(from_csv, from_json)
    np.testing.assert_array_equal(from_json, result.matrix)
    loaded = CKAResult.load_json(tmp_path / "cka.json")
    np.testing.assert_array_equal(loaded.matrix, result.matrix)
    assert (loaded.model_a, loaded.model_b, loaded.num_samples) == ("resnet18", "vit_tiny_patch16_224", 128)


def _vit(**extra):
    import ofakd

    return ofakd.create_model(
        "vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=4, **extra
    )


def test_python_api_on_tiny_models_gives_a_labelled_matrix():
    import ofakd

    torch.manual_seed(0)
    resnet = ofakd.create_model("resnet18", num_classes=10)
    vit = _vit()
    images = torch.randn(24, 3, 32, 32, generator=_gen(2))
    loader = [(images[i : i + 8], torch.zeros(8, dtype=torch.long)) for i in range(0, 24, 8)]
    result = ofakd.cka(resnet, vit, loader, batches=2, progress=False)
    assert result.matrix.shape == (4, 4)
    assert result.names_a == ["layer1", "layer2", "layer3", "layer4"]
    assert all(name.startswith("blocks.") for name in result.names_b)
    assert (result.num_batches, result.num_samples) == (2, 16)
    assert np.isfinite(result.matrix).all()
    assert resnet.training and vit.training  # modes restored
    itself = ofakd.cka(vit, vit, loader, progress=False)
    np.testing.assert_allclose(np.diag(itself.matrix), 1.0, atol=1e-9)
    np.testing.assert_allclose(itself.matrix, itself.matrix.T, atol=1e-9)


def test_blocks_layers_cover_every_block():
    import ofakd

    vit = _vit()
    loader = [torch.randn(6, 3, 32, 32, generator=_gen(3))]
    result = ofakd.cka(vit, vit, loader, layers="blocks", progress=False)
    assert result.names_a == ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "head_input"]
    assert result.layers == "blocks"


def test_cli_cka_end_to_end_on_digits(tmp_path, capsys):
    from ofakd.cli import main

    out = tmp_path / "cka"
    code = main(
        [
            "cka",
            "--model-a",
            "resnet18",
            "--model-b",
            "vit_tiny_patch16_224",
            "--kwargs-b",
            "img_size=32",
            "patch_size=4",
            "depth=4",
            "--data",
            "digits",
            "--batch-size",
            "16",
            "--batches",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = json.loads((out / "cka.json").read_text())
    assert data["names_a"] == ["layer1", "layer2", "layer3", "layer4"]
    assert len(data["names_b"]) == 4
    assert (data["num_batches"], data["num_samples"]) == (2, 32)
    assert (data["model_a"], data["model_b"]) == ("resnet18", "vit_tiny_patch16_224")
    _, _, from_csv = CKAResult.read_csv(out / "cka.csv")
    np.testing.assert_allclose(from_csv, np.array(data["matrix"], dtype=float))
    assert _png_size(out / "cka.png")[0] > 100
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "batch" not in captured.err  # stderr is not a terminal here: no progress bar is written to it


def test_cli_cka_rejects_a_tiny_batch(tmp_path, capsys):
    from ofakd.cli import main

    code = main(
        ["cka", "--model-a", "resnet18", "--model-b", "resnet18", "--batch-size", "2", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_cli_model_loading_sizes_the_head_from_the_checkpoint(tmp_path):
    from ofakd.commands.cka import load_model, parse_kwargs
    from ofakd.errors import ConfigError

    assert parse_kwargs(["img_size=32", "act=gelu", "flag=true"], "--kwargs-a") == {
        "img_size": 32,
        "act": "gelu",
        "flag": True,
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_kwargs(["img_size"], "--kwargs-a")
    import ofakd

    trained = ofakd.create_model("vit_tiny_patch16_224", num_classes=7, img_size=32, patch_size=4, depth=2)
    torch.save(trained.state_dict(), tmp_path / "vit.pth")
    kwargs = parse_kwargs(["img_size=32", "patch_size=4", "depth=2"], "--kwargs-b")
    model = load_model("vit_tiny_patch16_224", str(tmp_path / "vit.pth"), None, kwargs, default_classes=10)
    assert model.num_classes == 7
    torch.testing.assert_close(model.head.weight, trained.head.weight)


def test_heatmap_colours_separate_close_values_and_rows_run_as_the_table(tmp_path):
    """0.92 and 0.98 on a fixed 0-1 scale are one colour; on the values' own range they are its two ends. The
    first row (model A's first layer) is drawn at the top, as the console table prints it."""
    from matplotlib.image import imread

    from ofakd.analysis.heatmap import colour_range, plot_cka_heatmap

    assert colour_range(np.array([[0.92, float("nan")], [0.98, 0.95]])) == (0.92, 0.98)
    assert colour_range(np.array([[0.5]])) == pytest.approx((0.495, 0.505))
    assert colour_range(np.array([[float("nan")]])) == (0.0, 1.0)
    result = CKAResult(matrix=np.array([[0.92], [0.98]]), names_a=["layer1", "layer2"], names_b=["blocks.0"])
    pixels = imread(plot_cka_heatmap(result, tmp_path / "cka.png", annotate=False, dpi=50))
    height, width = pixels.shape[:2]
    column = int(width * 0.35)  # inside the single column of cells, left of the colour bar
    top, bottom = (pixels[int(height * f), column, :3].mean() for f in (0.3, 0.7))
    assert bottom - top > 0.5  # "magma": 0.92, the low end, is near black (top); 0.98, the high end, near white


def _digits_run(out_dir, name: str, student: dict):
    from ofakd.config import load_config
    from ofakd.engine import fit

    overrides = [("method", {"name": "vanilla"}), ("student", student), ("data.train_subset", 32),
                 ("data.val_subset", 8), ("train.batch_size", 16), ("train.epochs", 1), ("train.device", "cpu"),
                 ("run.out_dir", str(out_dir)), ("run.name", name)]
    fit(load_config("demo", overrides), progress=False, tensorboard=False, log=lambda _msg: None)
    return out_dir / name


def test_cli_cka_takes_run_folders_and_prints_whole_names(tmp_path, capsys):
    from ofakd.cli import main

    vit = {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32,
                                                      "num_heads": 2}, "input_size": [3, 16, 16]}
    run = _digits_run(tmp_path, "vit-run", vit)
    out = tmp_path / "cka"
    code = main(["cka", str(run), str(run), "--batch-size", "16", "--batches", "2", "--out", str(out),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((out / "cka.json").read_text())
    assert data["model_a"] == data["model_b"] == "vit-run (vit_tiny_patch16_224)"
    assert data["data"] == "digits"  # the run's data set
    np.testing.assert_allclose(np.diag(np.array(data["matrix"], dtype=float)), 1.0, atol=1e-6)  # a model with itself
    lines = captured.out.splitlines()
    assert all(f" {name}" in lines[1] for name in data["names_b"])  # whole names
    assert lines[1].rstrip().endswith(data["names_b"][-1])
    rows = lines[2:2 + len(data["names_a"])]
    assert all(row.strip().startswith(name) for row, name in zip(rows, data["names_a"]))  # the heatmap's order

    code = main(["cka", str(run), "--out", str(out)])
    assert code == 2 and "pass two MODELs" in capsys.readouterr().err
    code = main(["cka", "--model-a", str(run), "--checkpoint-a", "x.pth", "--model-b", "resnet18", "--out", str(out)])
    assert code == 2 and "--checkpoint-a is for a model given by its timm name" in capsys.readouterr().err
