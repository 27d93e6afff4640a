"""``ofakd cka``: linear CKA between the stages (or blocks) of two models, as a heatmap, CSV and JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, ModelError
from ..run_folder import writing

if TYPE_CHECKING:  # torch is imported when the command runs, not for `ofakd --help`
    import torch

NAME = "cka"
HELP = "linear CKA between every pair of stage/block features of two models (heatmap, CSV, JSON)"
DESCRIPTION = """\
Linear CKA between every stage (or block) feature of model A and of model B, estimated over
minibatches of the validation split with the unbiased HSIC estimator (Nguyen, Raghu & Kornblith
2021), so memory stays that of one batch. Writes OUT/cka.png, OUT/cka.csv and OUT/cka.json.

A model is a run folder (runs/NAME: its best weights, model and input), an ofakd .safetensors file,
a folder written by `ofakd export --format timm`, or a timm name (with --checkpoint-X/--kwargs-X).
The data default to the data set the first run (or export) trained on, else digits.

examples:
  ofakd cka runs/demo/teacher runs/demo/student-ofa --out cka/
  ofakd cka --model-a runs/my-teacher --model-b resnet18 --checkpoint-b r18.safetensors --data cifar100 --out cka/
  ofakd cka --model-a resnet18 --model-b vit_tiny_patch16_224 --kwargs-b img_size=32 patch_size=4 --out cka/
"""

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="models A and B: run folders, .safetensors files or timm export folders (or "
                        "--model-a/--model-b)")
    for side in ("a", "b"):
        parser.add_argument(
            f"--model-{side}", metavar="MODEL",
            help=f"model {side.upper()}: a timm name, a run folder, a .safetensors file or a timm export folder",
        )
        parser.add_argument(
            f"--checkpoint-{side}",
            metavar="FILE",
            help=f"local weights of model {side.upper()} (.pth/.safetensors)",
        )
        parser.add_argument(
            f"--kwargs-{side}",
            nargs="+",
            action="extend",
            default=[],
            metavar="KEY=VALUE",
            help=f"timm kwargs of model {side.upper()}, e.g. img_size=32 patch_size=4 depth=4 (values read as YAML)",
        )
    parser.add_argument(
        "--num-classes",
        type=int,
        help="classifier width (default: from each checkpoint, else the data set's)",
    )
    parser.add_argument(
        "--data",
        choices=DATASETS,
        help="data set whose validation split is fed to both models (default: the first run's, else digits)",
    )
    parser.add_argument("--data-root", metavar="DIR", help="data set folder (default per data set)")
    parser.add_argument(
        "--val-subset", type=int, metavar="N", help="use N validation images (fixed random subset)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="samples per minibatch (>= 4)")
    parser.add_argument(
        "--batches", type=int, metavar="N", help="use the first N batches (default: the whole split)"
    )
    parser.add_argument(
        "--layers", default="stages", choices=("stages", "blocks"), help="the four stages, or every block"
    )
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--device", help="torch device (default: auto: cuda, then mps, then cpu)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for cka.png, cka.csv and cka.json"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _data_config(args: argparse.Namespace, recorded=None):
    """The data flags (--data, --data-root, --val-subset, --workers) as a DataConfig, the data set and folder
    defaulting to ``recorded`` (the DataConfig a run or export recorded), else digits; a bad value is one line."""
    from pydantic import ValidationError

    from ..data.config import DataConfig
    from ..pydantic_errors import config_error

    name = args.data or (recorded.name if recorded is not None else "digits")
    root = args.data_root or (recorded.root if recorded is not None and recorded.name == name else None)
    try:
        return DataConfig(name=name, root=root, val_subset=args.val_subset, workers=args.workers)
    except ValidationError as err:
        raise config_error(err, DataConfig, "data.") from None


def parse_kwargs(items: list[str], flag: str) -> dict:
    """``["img_size=32", "act_layer=gelu"]`` -> ``{"img_size": 32, "act_layer": "gelu"}``."""
    from ..config.load import parse_value

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE pairs, got {item!r} (e.g. {flag} img_size=32)")
        out[key] = parse_value(value)  # (YAML, as every command-line value is read)
    return out


def checkpoint_classes(model: torch.nn.Module, checkpoint: str) -> int | None:
    """Rows of the checkpoint's classifier weight (the head named by the timm config), if found."""
    from ..models.weights import read_state_dict

    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    heads = head if isinstance(head, (list, tuple)) else [head]
    state = read_state_dict(checkpoint)
    for name in heads:
        weight = state.get(f"{name}.weight") if name else None
        if weight is not None and weight.dim() >= 1:
            return int(weight.shape[0])
    return None


def load_model(
    name: str,
    checkpoint: str | None,
    num_classes: int | None,
    kwargs: dict,
    default_classes: int | None = None,
) -> torch.nn.Module:
    """Build the model with ``num_classes`` outputs; when that is None, the head is sized from
    the checkpoint (else ``default_classes``, e.g. the data set's class count)."""
    from ..models import create_model
    from ..models.weights import load_checkpoint

    model = create_model(name, num_classes=num_classes or default_classes, **kwargs)
    if checkpoint:
        if num_classes is None:
            classes = checkpoint_classes(model, checkpoint)
            if classes is not None and classes != getattr(model, "num_classes", classes):
                model.reset_classifier(classes)
        load_checkpoint(model, checkpoint)
    return model


def run(args: argparse.Namespace) -> int:
    from ..analysis.heatmap import plot_cka_heatmap
    from ..analysis.stage_cka import cka
    from ..data import AugmentConfig, build_data, dataset_num_classes
    from ..device import pick_device
    from ..teacher.input_view import teacher_adapter

    if args.batch_size < 4:
        raise ConfigError(f"--batch-size must be >= 4 for the unbiased HSIC estimator, got {args.batch_size}")
    if args.batches is not None and args.batches < 1:
        raise ConfigError(f"--batches must be >= 1, got {args.batches}")
    references = _references(args)
    out = _output_folder(args.out)  # before the work: a folder we cannot write is found now
    device = pick_device(args.device or "auto")
    loaded = [_load_run_model(ref, side, args) if Path(ref).exists() else None for side, ref in zip("ab", references)]
    recorded = next((info.data for _, info, _ in filter(None, loaded) if info.data is not None), None)
    data_config = _data_config(args, recorded)
    models, specs, names = _load_pair(args, references, loaded, lambda: dataset_num_classes(data_config), device)
    # Load at the larger resolution; the other model gets resized, renormalised images.
    source = max(specs, key=lambda s: (s.input_size[1] * s.input_size[2], s.input_size[0]))
    data = build_data(
        data_config,
        AugmentConfig(),
        input_size=source.input_size,
        mean=source.mean,
        std=source.std,
        batch_size=args.batch_size,
        seed=0,
    )
    result = cka(
        models[0],
        models[1],
        data.val_loader,
        layers=args.layers,
        batches=args.batches,
        adapt_a=teacher_adapter(source, specs[0]),
        adapt_b=teacher_adapter(source, specs[1]),
        name_a=names[0],
        name_b=names[1],
        progress=not args.no_progress,
    )
    result.extra.update(
        {"data": data_config.name, "checkpoint_a": args.checkpoint_a, "checkpoint_b": args.checkpoint_b}
    )
    png = plot_cka_heatmap(result, out / "cka.png")
    csv_path = result.save_csv(out / "cka.csv")
    json_path = result.save_json(out / "cka.json")
    _print_matrix(result, args)
    print(f"wrote {png}, {csv_path}, {json_path}")
    return 0


def _output_folder(out: str) -> Path:
    """``--out``, created; an error (74) when it cannot be."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; pass a folder for cka.png, cka.csv and cka.json")
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _references(args: argparse.Namespace) -> list[str]:
    """Models A and B as given: two positional MODELs, or --model-a and --model-b."""
    given = [args.model_a, args.model_b]
    if args.models:
        if len(args.models) != 2 or any(given):
            raise ConfigError(
                f"cka compares two models: pass two MODELs (run folders, .safetensors files, exports) or --model-a "
                f"and --model-b, not {len(args.models)} MODEL(s){' and --model-a/--model-b' if any(given) else ''}"
            )
        return list(args.models)
    if not all(given):
        raise ConfigError("cka compares two models: pass two MODELs (e.g. ofakd cka runs/A runs/B --out cka/) or "
                          "--model-a and --model-b (timm names or run folders)")
    return given


def _load_run_model(reference: str, side: str, args: argparse.Namespace):
    """(model, StudentInfo, label) of a model given as a path (:func:`~ofakd.export.run_loading.load_student`)."""
    from ..export.run_loading import load_student

    for flag in (f"checkpoint_{side}", f"kwargs_{side}"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} is for a model given by its timm name; {reference} is a "
                              "path, whose model and weights it gives")
    model, info = load_student(reference)
    if info.kind in ("onnx", "torchscript"):
        raise ModelError(f"{reference}: CKA reads stage features, which an {info.kind} export does not give; pass "
                         "its run folder or an export made with --format timm")
    return model, info, f"{Path(reference).resolve().name} ({info.architecture})"


def _load_pair(args: argparse.Namespace, references: list[str], loaded: list, data_classes, device) -> tuple:
    """Models A and B (on ``device``), their input specs and labels; channel counts checked to be feedable.
    ``loaded`` holds what :func:`_load_run_model` loaded for a side given as a path (else None); ``data_classes()``
    sizes the head of a model built by name."""
    from ..models import input_spec

    models, specs, names = [], [], []
    for side, reference, run_model in zip("ab", references, loaded):
        if run_model is not None:
            model, _, label = run_model
        else:
            model, label = load_model(
                reference,
                getattr(args, f"checkpoint_{side}"),
                args.num_classes,
                parse_kwargs(getattr(args, f"kwargs_{side}"), f"--kwargs-{side}"),
                default_classes=data_classes(),
            ), reference
        models.append(model.to(device))
        specs.append(input_spec(model))
        names.append(label)
    if specs[0].input_size[0] != specs[1].input_size[0] and not all(s.input_size[0] in (1, 3) for s in specs):
        raise ModelError(
            f"models take {specs[0].input_size[0]} and {specs[1].input_size[0]} input channels; cannot feed both"
        )
    return models, specs, names


def _print_matrix(result, args: argparse.Namespace) -> None:
    """The matrix as a table: rows model A's layers (as in the heatmap, the first at the top), a column per layer
    of model B headed by its whole name."""
    print(
        f"CKA {result.model_a} x {result.model_b} ({args.layers}, {result.num_samples} samples in "
        f"{result.num_batches} batches)"
    )
    width = max(len(n) for n in result.names_a)
    columns = [max(len(n), 8) for n in result.names_b]
    print(" " * width + "  " + "  ".join(f"{n:>{w}}" for n, w in zip(result.names_b, columns)))
    for name, row in zip(result.names_a, result.matrix):
        print(f"{name:>{width}}  " + "  ".join(f"{v:{w}.3f}" for v, w in zip(row, columns)))
