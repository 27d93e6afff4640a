"""``ofakd tune``: search the method, its key options and the lr for a teacher/student pair on your data."""

from __future__ import annotations

import argparse

from ..config.load import list_recipes
from ..errors import ConfigError
from .cli_args import (
    HelpFormatter,
    TeacherRunAction,
    add_field_flags,
    add_override,
    print_config,
    resolve_config,
)

NAME = "tune"
HELP = "find the best method, options and lr for your pair and data (an Optuna study; trials on the teacher cache)"
DESCRIPTION = """\
Search which distillation method (kd, dkd, dist, ofa, ofa+dist, or those given with --methods), which of
its key options (temperature, loss weights, OFA's eps and ofa_weight, DIST's beta and gamma: what each
method declares, see `ofakd methods`) and which lr (a factor of 3 around the recipe's) suit a teacher and
student on your data, with --budget trials of an Optuna study (TPE sampler; Hyperband pruning on the
per-epoch validation top-1, so the budget goes to promising trials).

Protocol: trials train on the training images less a holdout (--holdout, drawn with a fixed seed) and
are scored on it; the recipe's validation split is the test split, read only by the best configuration's
final run(s) (--final-seeds). Logit-only methods replay the teacher from a cache recorded once over the
trials' views (or --teacher-cache); feature methods run it live, at their cost.

Output (--out DIR): best.yaml (run it with `ofakd distill --config DIR/best.yaml`), final/s<seed>/,
trials/trial-NNNN/, report.md with history.png and importance.png (`ofakd report DIR` writes them again).
The study lives in DIR/study.db (SQLite); run the same command again to resume it, or in several processes
(or machines sharing --storage URL) at once to share its budget.

examples:
  ofakd tune --config demo --teacher-run runs/digits-teacher --budget 30 --out tune/digits
  ofakd tune --config demo --teacher-run runs/digits-teacher --budget 30 --out tune/digits \\
      --methods default,fitnet --space ofa.eps=1:1.5 --space kd.temperature=4
  ofakd tune ... --storage postgresql://user@db/tuning --study pair-a   # on each machine
  ofakd report tune/digits --out tune/digits/report
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    search = parser.add_argument_group("the search")
    search.add_argument("--budget", type=int, metavar="N", help="trials in the study (needed to start one; a "
                        "larger N resumed extends it)")
    search.add_argument("--methods", nargs="+", metavar="M", help="methods searched, comma- or space-separated; "
                        "'default' stands for kd,dkd,dist,ofa,ofa+dist (e.g. --methods default,fitnet) "
                        "[default: default]")
    search.add_argument("--space", action="append", default=[], metavar="KEY=SPEC",
                        help="narrow the space (repeatable): KEY is lr or METHOD.OPTION (ofa.eps, ofa+dist.dist.beta); "
                        "SPEC LOW:HIGH[:log|:linear] a range, [a, b] a choice, one value fixes it")
    search.add_argument("--holdout", type=_holdout, default=0.1, metavar="N|F",
                        help="training images held out to score trials on: a count or a fraction")
    search.add_argument("--holdout-seed", type=int, default=0, metavar="S", help="seed of the holdout draw")
    search.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="Optuna sampler")
    search.add_argument("--pruner", choices=("hyperband", "halving", "median", "none"), default="hyperband",
                        help="Optuna pruner on the per-epoch holdout top-1 (halving: successive halving)")
    search.add_argument("--final-seeds", type=int, nargs="*", metavar="SEED",
                        help="seeds of the best configuration's final runs on the test split (none: no final run) "
                        "[default: the recipe's seed]")
    where = parser.add_argument_group("study and folders")
    where.add_argument("--out", default="tune", metavar="DIR", help="the tune folder")
    where.add_argument("--storage", metavar="URL|FILE", help="the study's storage: an RDB URL (sqlite:///..., "
                       "postgresql://...) or a journal file several machines share [default: DIR/study.db]")
    where.add_argument("--study", metavar="NAME", help="the study's name in the storage [default: DIR's name]")
    where.add_argument("--teacher-cache", metavar="DIR", help="a teacher cache recorded over the trials' views "
                       "(default: recorded once into OUT/teacher-cache)")
    where.add_argument("--heartbeat", type=int, default=60, metavar="S", help="seconds between a worker's "
                       "heartbeats (RDB storages): a killed worker's trial is failed after 2 x S")
    models = parser.add_argument_group("teacher, student, data")
    add_override(models, "--teacher", key="teacher.name", raw=True, metavar="NAME", help="timm name of the teacher")
    add_override(models, "--teacher-checkpoint", key="teacher.checkpoint", raw=True, metavar="PATH",
                 help="the teacher's weights, a local file (teacher.checkpoint)")
    models.add_argument("--teacher-run", action=TeacherRunAction, dest="overrides", default=argparse.SUPPRESS,
                        metavar="RUN_DIR", help="use the model trained by `ofakd train` in RUN_DIR as the teacher")
    add_override(models, "--student", key="student.name", raw=True, metavar="NAME", help="timm name of the student")
    add_override(models, "--data", key="data.name", raw=True, metavar="NAME", help="data set (data.name)")
    recipe = parser.add_argument_group("recipe and overrides")
    recipe.add_argument("-c", "--config", metavar="RECIPE", help=f"shipped recipe ({', '.join(list_recipes())}) or a "
                        "YAML path: what every trial and the final runs start from")
    add_override(recipe, "--set", key=None, metavar="KEY=VALUE", help="override any config key (YAML value)")
    recipe.add_argument("--print-config", action="store_true", help="print the resolved recipe as YAML and exit")
    add_override(recipe, "--epochs", key="train.epochs", metavar="N", help="epochs of every trial and final run")
    add_override(recipe, "--seed", key="train.seed", metavar="N",
                 help="seed of the trials' model initialisation and of the sampler")
    add_override(recipe, "--device", key="train.device", raw=True, metavar="DEVICE", help="cpu, cuda, cuda:1, ...")
    add_field_flags(parser, ["data", "augment", "teacher", "student", "train"])


def _holdout(text: str) -> int | float:
    """``300`` -> 300 images, ``0.1`` -> a tenth of them."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number of images nor a fraction") from None


def _space_item(text: str) -> tuple[str, str]:
    """``ofa.eps=1:1.5`` -> (``ofa.eps``, ``1:1.5``): the spec stays text (YAML would read 1:30 as a number)."""
    key, sep, spec = text.partition("=")
    if not sep or not key.strip() or not spec.strip():
        raise ConfigError(f"--space {text}: write KEY=SPEC, e.g. --space ofa.eps=1:1.5")
    return key.strip(), spec.strip()


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print_config(cfg)
        return 0
    import optuna

    from ..tuning.api import tune

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # ofakd prints each trial's line (and failures) itself
    space = dict(_space_item(item) for item in args.space)
    result = tune(cfg, budget=args.budget, out=args.out, methods=args.methods, space=space, holdout=args.holdout,
                  holdout_seed=args.holdout_seed, sampler=args.sampler, pruner=args.pruner, storage=args.storage,
                  study=args.study, teacher_cache=args.teacher_cache, final_seeds=args.final_seeds,
                  heartbeat_s=args.heartbeat)
    for final in result.finals:
        print(f"final run {final['name']}: test top-1 {final['final_top1']:.2f} (last epoch)")
    return 0
