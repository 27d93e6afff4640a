"""``ofakd export RUN_DIR --format timm|onnx|torchscript --out DIR``."""

from __future__ import annotations

import argparse
import json

NAME = "export"
HELP = "export the trained student alone: timm folder, ONNX or TorchScript, checked against PyTorch"
DESCRIPTION = """\
Export the bare student of a run (its best.safetensors; on a run trained with EMA, the EMA
weights unless --no-ema) as
  timm         model.safetensors + config.json; plain timm loads it:
               timm.create_model("local-dir:DIR", pretrained=True)
  onnx         model.onnx, dynamic batch axis, input 'input', output 'logits' (onnxruntime)
  torchscript  model.torchscript.pt (torch.jit.load)
Each export is loaded back that way and compared with the PyTorch student on random inputs;
the largest difference is printed and must be within --atol, else nothing is written.
Several formats can share one --out folder: its config.json holds the preprocessing (input
size, mean, std, interpolation, crop) and lists the exports. A timm export also gets a model
card (README.md: teacher, method, data, accuracy, the command that reproduces it); no file of
an export holds a local path. --push-to-hub REPO uploads a timm export to the Hugging Face Hub
(huggingface_hub's login and settings; refused while HF_HUB_OFFLINE is set).

examples:
  ofakd export runs/my-run --format timm --out exported/my-run
  ofakd export runs/my-run --format onnx --out exported/my-run --json
  ofakd export runs/my-run --format torchscript --out exported/my-run-plain --no-ema
  ofakd export runs/my-run --format timm --out exported/my-run --push-to-hub my-org/my-student
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli_args import HelpFormatter

    parser.formatter_class = HelpFormatter
    parser.add_argument(
        "source", metavar="RUN_DIR",
        help="run folder (runs/NAME), an ofakd .safetensors file, or a folder written by --format timm",
    )
    parser.add_argument("-f", "--format", dest="fmt", metavar="FORMAT", default="timm",
                        help="timm, onnx or torchscript")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created when missing)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", default=argparse.SUPPRESS,
                        help="on a run trained with EMA, export the plain student instead of its EMA")
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="best: the best epoch (best.safetensors); last: the last epoch (last.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest |export - PyTorch| on random inputs that passes the check")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer)")
    parser.add_argument("--onnx-exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                        help="auto: torch.export-based exporter, falling back to the TorchScript-based one")
    parser.add_argument("--torchscript-method", choices=("auto", "script", "trace"), default="auto",
                        help="auto: torch.jit.script, falling back to torch.jit.trace")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the timm export to this Hugging Face Hub repo "
                        "(ORG/NAME; created when missing)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")


def run(args: argparse.Namespace) -> int:
    from ..export import check_format, export_student
    from ..export.hub_push import check_push, push_folder

    if args.push_to_hub:
        check_push(args.push_to_hub, check_format(args.fmt))
    result = export_student(
        args.source, args.fmt, args.out, ema=getattr(args, "ema", True), weights=args.weights, overwrite=args.overwrite,
        atol=args.atol, opset=args.opset, onnx_exporter=args.onnx_exporter,
        torchscript_method=args.torchscript_method, repo_id=args.push_to_hub,
    )
    pushed = push_folder(result.out_dir, args.push_to_hub, private=args.private) if args.push_to_hub else None
    if args.json:
        print(json.dumps({**result.to_dict(), "pushed": pushed}, indent=2))
        return 0
    for note in result.info.notes:
        print(f"note: {note}")
    print(result.describe())
    if pushed:
        print(f"pushed to {pushed}")
    return 0
