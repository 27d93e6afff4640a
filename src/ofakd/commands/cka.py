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
DESCRIPTION = (
    "Linear CKA between every stage (or block) feature of model A and of model B, estimated over "
    "minibatches of the validation split with the unbiased HSIC estimator (Nguyen, Raghu & Kornblith "
    "2021), so memory stays that of one batch. Writes OUT/cka.png, OUT/cka.csv and OUT/cka.json."
)

DATASETS = ("digits", "fashion-mnist", "cifar10", "cifar100", "imagefolder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for side in ("a", "b"):
        parser.add_argument(
            f"--model-{side}", required=True, metavar="NAME", help=f"timm name of model {side.upper()}"
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
        default="digits",
        choices=DATASETS,
        help="data set whose validation split is fed to both models",
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


def _data_config(args: argparse.Namespace):
    """The data flags (--data, --data-root, --val-subset, --workers) as a DataConfig; a bad value is one line."""
    from pydantic import ValidationError

    from ..data.config import DataConfig
    from ..pydantic_errors import config_error

    try:
        return DataConfig(name=args.data, root=args.data_root, val_subset=args.val_subset, workers=args.workers)
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
    out = _output_folder(args.out)  # before the work: a folder we cannot write is found now
    device = pick_device(args.device or "auto")
    data_config = _data_config(args)
    models, specs = _load_pair(args, dataset_num_classes(data_config), device)
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
        name_a=args.model_a,
        name_b=args.model_b,
        progress=not args.no_progress,
    )
    result.extra.update(
        {"data": args.data, "checkpoint_a": args.checkpoint_a, "checkpoint_b": args.checkpoint_b}
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


def _load_pair(args: argparse.Namespace, data_classes: int, device: torch.device) -> tuple[list, list]:
    """Models A and B (on ``device``) and their input specs; channel counts checked to be feedable."""
    from ..models import input_spec

    models, specs = [], []
    for side in ("a", "b"):
        model = load_model(
            getattr(args, f"model_{side}"),
            getattr(args, f"checkpoint_{side}"),
            args.num_classes,
            parse_kwargs(getattr(args, f"kwargs_{side}"), f"--kwargs-{side}"),
            default_classes=data_classes,
        )
        models.append(model.to(device))
        specs.append(input_spec(model))
    if specs[0].input_size[0] != specs[1].input_size[0] and not all(s.input_size[0] in (1, 3) for s in specs):
        raise ModelError(
            f"models take {specs[0].input_size[0]} and {specs[1].input_size[0]} input channels; cannot feed both"
        )
    return models, specs


def _print_matrix(result, args: argparse.Namespace) -> None:
    print(
        f"CKA {args.model_a} x {args.model_b} ({args.layers}, {result.num_samples} samples in {result.num_batches} batches)"
    )
    width = max(len(n) for n in result.names_a)
    print(" " * width + "  " + "  ".join(f"{n[-8:]:>8}" for n in result.names_b))
    for name, row in zip(result.names_a, result.matrix):
        print(f"{name:>{width}}  " + "  ".join(f"{v:8.3f}" for v in row))
