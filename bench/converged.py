"""The converged accuracy benchmark (``bench/accuracy.py --converged``): what runs, as a job graph.

Fashion-MNIST at 1x28x28 (``bench/converged.yaml``). Two teachers trained once on all 60,000
training images (a CNN and a ViT), four heterogeneous pairs, nine student variants, two regimes
(students on all 60,000 images, or on a fixed 5,000-image subset while the teacher saw all), three
init seeds. Every student is evaluated per epoch on a fixed 2,000-image test subset (scratch runs:
on all 10,000, to test the plateau criterion) and, once finished, its final weights on all 10,000
test images (``ofakd eval --weights last``): the tables report that number.

Logit-only variants (KD, DKD, DIST, OFA, OFA+DIST) read the teacher from a teacher-output cache
recorded once per (teacher, regime); FitNet and RSD need teacher features and run it live.

Every finished run leaves a record in the result store (:mod:`records`; ``bench/results/converged/`` for the
full size), the teachers their weights: a run whose record matches its grid cell is not run again, on this
machine or any other, and the tables are written from the records alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pool import MLP_NAME, Job, Step
from records import Store, digest

RECIPE = str(Path(__file__).resolve().with_name("converged.yaml"))
DATA_LOADER = "batched"
"""Every run's data path (``--data.loader``): a record names it, and records of another path never mix."""
INPUT = [1, 28, 28]
MEAN_STD = {"mean": [0.286], "std": [0.353]}


@dataclass(frozen=True)
class Model:
    key: str
    """Short name used in tables and folder names."""
    name: str
    """timm name (``MLP_NAME`` is registered by the benchmark's processes)."""
    kwargs: dict
    input_size: tuple[int, int, int] = tuple(INPUT)
    """What the model is fed: a teacher at 56 px sees the 28-px images resized (PIL when it trains,
    the engine's teacher-input adapter when it teaches from the students' batches)."""

    def set_args(self) -> list[str]:
        args = ["--set", f"student.kwargs={json.dumps(self.kwargs)}"]
        if list(self.input_size) != INPUT:
            args += ["--set", f"student.input_size={json.dumps(list(self.input_size))}"]
        return args

    def cka_kwargs(self) -> list[str]:
        """``ofakd cka --kwargs-X``: the model at its input size and the benchmark's normalisation."""
        overlay = {"input_size": list(self.input_size), **MEAN_STD}
        items = {**self.kwargs, "in_chans": 1}
        return [f"{k}={json.dumps(v)}" for k, v in items.items()] + [f"pretrained_cfg_overlay={json.dumps(overlay)}"]


CNN_TEACHER = Model("resnet18-w24@56", "resnet18", {"channels": [24, 48, 96, 192], "stem_width": 24}, (1, 56, 56))
VIT_TEACHER = Model("vit-p4-d64-L6-mlp2", "vit_tiny_patch16_224",
                    {"img_size": 28, "patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 2, "mlp_ratio": 2.0})
CNN_STUDENT = Model("resnet10-w8", "resnet18", {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8})
VIT_STUDENT = Model("vit-p7-d48-L4", "vit_tiny_patch16_224",
                    {"img_size": 28, "patch_size": 7, "embed_dim": 48, "depth": 4, "num_heads": 2})
MLP_STUDENT = Model("mixer-p7-d64-L4", MLP_NAME, {"img_size": 28, "patch_size": 7, "embed_dim": 64, "num_blocks": 4})


@dataclass(frozen=True)
class Teacher:
    key: str
    model: Model
    lr: float
    floor: float
    """Top-1 (%) on the 10,000 test images the teacher must reach (issue 16)."""
    train_ms: float
    """Measured milliseconds per training image on one idle core, data loading included (for the estimate)."""
    forward_ms: float
    """The same for its forward alone (cache recording, live teaching)."""


TEACHERS = {
    "cnn": Teacher("cnn", CNN_TEACHER, lr=2e-3, floor=93.0, train_ms=2.9, forward_ms=0.5),
    "vit": Teacher("vit", VIT_TEACHER, lr=1.5e-3, floor=90.0, train_ms=1.6, forward_ms=0.45),
}
PAIRS = {  # name -> (teacher key, student)
    "cnn->vit": ("cnn", VIT_STUDENT),
    "vit->cnn": ("vit", CNN_STUDENT),
    "cnn->mlp": ("cnn", MLP_STUDENT),
    "vit->mlp": ("vit", MLP_STUDENT),
}


@dataclass(frozen=True)
class Variant:
    key: str
    method: str
    options: dict = field(default_factory=dict)
    note: str = ""


VARIANTS = (
    Variant("scratch", "vanilla", note="labels only"),
    Variant("kd", "kd", note="T 1, x T^2"),
    Variant("dkd", "dkd", note="alpha 1, beta 2, T 1"),
    Variant("dist", "dist", note="beta 1, gamma 1, tau 1"),
    Variant("fitnet", "fitnet", note="stages 1-4, weight 1"),
    Variant("rsd", "rsd", note="weight 0.1, off-diagonal 0.01"),
    Variant("ofa", "ofa", {"ofa_weight": 0.1, "eps": [1.0], "temperature": 1.0}, "authors' CIFAR: eps 1, T 1, w_ofa 0.1"),
    Variant("ofa-w1", "ofa", {"ofa_weight": 1.0, "eps": [1.0], "temperature": 1.0}, "eps 1, T 1, w_ofa 1"),
    Variant("ofa+dist", "ofa+dist", {"ofa.ofa_weight": 0.1, "ofa.eps": [1.0], "ofa.temperature": 1.0},
            "OFA (authors') + DIST terms"),
)
VARIANT_KEYS = tuple(v.key for v in VARIANTS)
PRIORITY = ("scratch", "kd", "dist", "ofa", "ofa-w1", "ofa+dist", "dkd", "fitnet", "rsd")
"""Order of the variants within one seed of one regime."""
KEY_VARIANTS = PRIORITY[:6]
"""The variants the significance tests compare: every seed of these runs before the other variants."""


def uses_cache(method: str) -> bool:
    """Whether the method needs the teacher's logits only (so a teacher-output cache serves it)."""
    from ofakd.distill import get_method

    method_info = get_method(method)  # a Distiller class, or a Combination for "a+b"
    return bool(method_info.needs_teacher) and not method_info.needs_teacher_features


ABLATION = (
    Variant("ofa-w0.3", "ofa", {"ofa_weight": 0.3}, "w_ofa 0.3"),
    Variant("ofa-w3", "ofa", {"ofa_weight": 3.0}, "w_ofa 3"),
    Variant("ofa-eps1.5", "ofa", {"ofa_weight": 0.1, "eps": [1.5]}, "w_ofa 0.1, eps 1.5 (the paper's ImageNet DeiT-T pair)"),
    Variant("ofa-w1-eps1.5", "ofa", {"ofa_weight": 1.0, "eps": [1.5]}, "w_ofa 1, eps 1.5"),
    Variant("ofa-w1-s4", "ofa", {"ofa_weight": 1.0, "stages": [4]}, "w_ofa 1, a branch at stage 4 only"),
    Variant("ofa-w1-s34", "ofa", {"ofa_weight": 1.0, "stages": [3, 4]}, "w_ofa 1, branches at stages 3-4"),
    Variant("ofa-w1-s12", "ofa", {"ofa_weight": 1.0, "stages": [1, 2]}, "w_ofa 1, branches at stages 1-2"),
    Variant("ofa-w1-T4", "ofa", {"ofa_weight": 1.0, "temperature": 4.0}, "w_ofa 1, T 4 (OFA has no T^2 factor)"),
    Variant("ofa-w1-nokd", "ofa", {"ofa_weight": 1.0, "kd_weight": 0.0}, "w_ofa 1, no OFA term on the final logits"),
)
"""``--ablation`` (issue 16, item 5): one-factor changes of OFA, every pair, in :data:`ABLATION_REGIME`.
Every other option is the authors' (eps 1, T 1, stages 1-4, kd_weight 1). At eps 1 and T 1 OFA's term on
the final logits is KD's (soft-label cross-entropy = KL + a constant), so OFA vs KD isolates the branches."""
CKA_PRIORITY = 1_000
"""Above every training run (those are <= 0): a CKA job starts as soon as the run it measures is finished."""
ABLATION_REGIME = "low"
SUCCESSORS = (
    Variant("pat", "pat", note="PAT (ICCV 2025), the authors' defaults: prompts at stages 1-4, 64 queries, dim 512"),
)
"""``--successors`` (issue 30): heterogeneous-distillation methods published after OFA-KD, every pair, in the
low-data regime, after the grid and the ablation. They read teacher features (a live teacher) and cost several
OFA steps each (PAT: about 8)."""
COST_FACTOR = {"pat": 8.0}
"""A method's step cost relative to OFA's, for the progress estimate."""


@dataclass(frozen=True)
class Regime:
    key: str
    train_subset: int | None
    """Student training images (None: all 60,000)."""
    epochs: int
    label: str


@dataclass(frozen=True)
class Size:
    teacher_epochs: dict[str, int]
    teacher_subset: int | None
    regimes: tuple[Regime, ...]
    seeds: tuple[int, ...]
    val_subset: int | None
    """Per-epoch validation images of the distilled students (a fixed subset of the test split)."""
    test_subset: int | None
    """Images of the final evaluation and of the scratch runs' per-epoch validation (None: all 10,000)."""
    pairs: tuple[str, ...] = tuple(PAIRS)
    cka_pairs: tuple[str, ...] = ("cnn->vit", "vit->cnn")
    cka_regimes: tuple[str, ...] = ("low", "full")
    cka_variants: tuple[str, ...] = ("scratch", "kd", "ofa", "ofa-w1")
    cka_images: int | None = 2000


SIZES = {
    "converged": Size(
        teacher_epochs={"cnn": 12, "vit": 24},
        teacher_subset=None,
        regimes=(Regime("low", 5000, 30, "students on 5,000 images"),
                 Regime("full", None, 8, "students on all 60,000 images")),
        seeds=(0, 1, 2),
        val_subset=2000,
        test_subset=None,
    ),
    "converged-smoke": Size(
        teacher_epochs={"cnn": 1, "vit": 1},
        teacher_subset=256,
        regimes=(Regime("low", 128, 1, "students on 128 images"), Regime("full", 256, 1, "students on 256 images")),
        seeds=(0, 1),
        val_subset=64,
        test_subset=128,
        pairs=("cnn->vit",),
        cka_pairs=("cnn->vit",),
        cka_regimes=("full",),
        cka_images=64,
    ),
}


def _plain(value) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(value)))


def teacher_cell(size: Size, teacher: Teacher) -> dict:
    """What decides a teacher's weights: the recipe, the data path, its model, lr, epochs, images and seed."""
    return {"recipe": digest(yaml.safe_load(Path(RECIPE).read_text())), "data_loader": DATA_LOADER, "model": _plain(teacher.model),
            "lr": teacher.lr, "epochs": size.teacher_epochs[teacher.key], "train_subset": size.teacher_subset,
            "test_subset": size.test_subset, "seed": 0}


def student_cell(size: Size, regime: Regime, pair: str, variant: Variant, seed: int) -> dict:
    """What decides a student run's result: the recipe, the data path, the regime, the student, the method and its
    options, the seed, the validation images, and (distilled) its teacher's cell."""
    teacher_key, student = PAIRS[pair]
    scratch = variant.method == "vanilla"
    return {"recipe": digest(yaml.safe_load(Path(RECIPE).read_text())), "data_loader": DATA_LOADER, "regime": _plain(regime),
            "student": _plain(student), "variant": {"method": variant.method, "options": variant.options},
            "seed": seed, "val_subset": size.test_subset if scratch else size.val_subset,
            "test_subset": size.test_subset,
            "teacher": None if scratch else digest(teacher_cell(size, TEACHERS[teacher_key]))}


def grid(size: Size) -> dict:
    """Everything that decides what the runs compute: kept in OUT/grid.json, checked when OUT is reused."""
    from dataclasses import asdict

    return {"recipe": Path(RECIPE).read_text(), "data_loader": DATA_LOADER, "size": json.loads(json.dumps(asdict(size))),
            "teachers": {k: json.loads(json.dumps(asdict(t))) for k, t in TEACHERS.items()},
            "pairs": {p: [t, json.loads(json.dumps(asdict(m)))] for p, (t, m) in PAIRS.items()},
            "variants": [json.loads(json.dumps(asdict(v))) for v in VARIANTS]}


def check_grid(out: Path, size: Size, ablation: bool = False, successors: bool = False) -> None:
    """Refuse to mix runs of another grid into OUT (finished runs are skipped by folder name alone)."""
    _check(out / "grid.json", grid(size))
    for wanted, name, variants in ((ablation, "ablation", ABLATION), (successors, "successors", SUCCESSORS)):
        if wanted:
            _check(out / f"{name}.json", {"regime": ABLATION_REGIME, "variants": [_plain(v) for v in variants]})


def _check(path: Path, current: dict) -> None:
    out = path.parent
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise SystemExit(f"{out} holds runs of another grid ({', '.join(changed)} changed since "
                             f"{path}); use --fresh or another --out")
    else:
        path.write_text(json.dumps(current, indent=2) + "\n")


def folder(pair: str) -> str:
    return pair.replace("->", "-to-")


def scratch_pair(pair: str) -> str:
    """The pair whose scratch runs stand for ``pair``'s: a scratch run trains the student alone, so the pairs
    that share a student (CNN -> MLP and ViT -> MLP) share the first one's scratch runs."""
    student = PAIRS[pair][1]
    return next(p for p, (_, s) in PAIRS.items() if s == student)


def runs_elsewhere(size: Size, pair: str, variant: Variant) -> bool:
    """Whether ``pair``'s run of ``variant`` is another pair's of the grid (scratch runs of a shared student)."""
    return variant.key == "scratch" and scratch_pair(pair) != pair and scratch_pair(pair) in size.pairs


def record_folder(pair: str, variant: str) -> str:
    """The pair folder a variant's runs and records live in (scratch runs: the first pair with that student)."""
    return folder(scratch_pair(pair) if variant == "scratch" else pair)


def run_dir(out: Path, regime: str, pair: str, variant: str, seed: int) -> Path:
    return out / "runs" / regime / record_folder(pair, variant) / f"{variant}-s{seed}"


TEST_JSON = "test.json"
"""``ofakd eval --json`` of a run's final weights on the test images, written into the run folder."""


def finished(path: Path) -> bool:
    try:
        return bool(json.loads((path / "summary.json").read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def evaluated(path: Path) -> bool:
    return finished(path) and (path / TEST_JSON).is_file()


# ---- jobs ----

def _subset(flag: str, n: int | None) -> list[str]:
    return ["--set", f"{flag}=null"] if n is None else ["--set", f"{flag}={n}"]


def _common(device: str) -> list[str]:
    return ["--config", RECIPE, "--device", device, "--data.loader", DATA_LOADER]


def teacher_job(out: Path, size: Size, teacher: Teacher, device: str, store: Store) -> Job | None:
    """Train the teacher unless the store holds it; keep its weights and record there."""
    cell = teacher_cell(size, teacher)
    if store.teacher(teacher.key, digest(cell)) is not None:
        return None
    path = out / "teachers" / teacher.key
    keep = lambda job, path=path, cell=cell: store.keep_teacher(teacher.key, path, cell)  # noqa: E731
    if finished(path):
        keep(None)
        return None
    log = str(out / "logs" / f"teacher-{teacher.key}.log")
    if (path / "last.pt").is_file():  # interrupted: continue it exactly
        argv = ["train", "--resume", str(path), "--device", device]
    else:
        argv = ["train", *_common(device), "--model", teacher.model.name, *teacher.model.set_args(), "--seed", "0",
                "--epochs", str(size.teacher_epochs[teacher.key]), "--train.lr", str(teacher.lr),
                *_subset("data.train_subset", size.teacher_subset), *_subset("data.val_subset", size.test_subset),
                "--out-dir", str(path.parent), "--name", teacher.key, "--overwrite"]
    epochs = size.teacher_epochs[teacher.key]
    cost = epochs * (size.teacher_subset or 60000) * teacher.train_ms / 1000
    return Job(f"teacher {teacher.key}", [Step(argv)], log, priority=1000 + cost, cost=cost, watch=str(path), after=keep)


def cache_path(out: Path, teacher: str, regime: Regime) -> Path:
    return out / "caches" / f"{teacher}-{regime.key}"


def cache_job(out: Path, size: Size, teacher: Teacher, regime: Regime, device: str, teacher_pending: bool,
              store: Store) -> Job | None:
    path = cache_path(out, teacher.key, regime)
    marker = path.with_name(path.name + ".done")
    if marker.is_file():
        return None
    argv = ["cache", "record", *_common(device), "--teacher-run", str(store.teacher_dir(teacher.key)),
            "--epochs", str(regime.epochs), *_subset("data.train_subset", regime.train_subset),
            *_subset("data.val_subset", size.val_subset), "--out", str(path), "--overwrite"]
    cost = regime.epochs * (regime.train_subset or 60000) * (teacher.forward_ms + 0.25) / 1000
    return Job(f"cache {teacher.key}-{regime.key}", [Step(argv)], str(out / "logs" / f"cache-{path.name}.log"),
               needs=(f"teacher {teacher.key}",) if teacher_pending else (), priority=900, cost=cost,
               after=lambda job, marker=marker: marker.touch())


def student_job(out: Path, size: Size, regime: Regime, regime_rank: int, pair: str, variant: Variant, seed: int,
                device: str, pending: set[str], store: Store) -> Job | None:
    """Train and evaluate one student unless the store holds its record; write the record when it is done."""
    path = run_dir(out, regime.key, pair, variant.key, seed)
    cell = student_cell(size, regime, pair, variant, seed)
    where = (regime.key, record_folder(pair, variant.key), variant.key, seed)
    if store.run(*where, cell_digest=digest(cell)) is not None:
        return None

    def keep(job, path=path, where=where, cell=cell) -> None:
        store.keep_run(*where, path, json.loads((path / TEST_JSON).read_text()), cell)

    if evaluated(path) and (path / "config.yaml").is_file():
        keep(None)  # finished before its record was written
        return None
    teacher_key, student = PAIRS[pair]
    scratch = variant.method == "vanilla"
    val = size.test_subset if scratch else size.val_subset
    steps = []
    if not finished(path):
        if (path / "last.pt").is_file():
            argv = ["distill", "--resume", str(path), "--device", device]
        else:
            argv = ["distill", *_common(device), "--method", variant.method, "--student", student.name,
                    *student.set_args(), "--seed", str(seed), "--epochs", str(regime.epochs),
                    *_subset("data.train_subset", regime.train_subset), *_subset("data.val_subset", val),
                    "--out-dir", str(path.parent), "--name", path.name, "--overwrite"]
            if not scratch:
                argv += ["--teacher-run", str(store.teacher_dir(teacher_key))]
            if uses_cache(variant.method):
                argv += ["--teacher-cache", str(cache_path(out, teacher_key, regime))]
            for key, value in variant.options.items():
                argv += ["--set", f"method.{key}={json.dumps(value)}"]
        steps.append(Step(argv))
    steps.append(Step(["eval", str(path), "--weights", "last", "--json", "--device", device,
                       *_subset("data.val_subset", size.test_subset)], stdout=str(path / TEST_JSON)))
    needs = []
    if not scratch and f"teacher {teacher_key}" in pending:
        needs.append(f"teacher {teacher_key}")
    cache_id = f"cache {teacher_key}-{regime.key}"
    if uses_cache(variant.method) and cache_id in pending:
        needs.append(cache_id)
    live = not scratch and not uses_cache(variant.method)
    images = regime.epochs * (regime.train_subset or 60000)
    ms = 0.55 + (0.2 if variant.method.startswith("ofa") else 0.05 if not scratch else 0.0)
    ms *= COST_FACTOR.get(variant.method, 1.0)
    ms += TEACHERS[teacher_key].forward_ms if live else 0.0
    cost = images * ms / 1000 + regime.epochs * ((size.test_subset or 10000) if scratch else (size.val_subset or 10000)) * 0.25 / 1000
    # regime by regime; within a regime every seed of the key variants first, then the others, seed by seed:
    # partial results hold the significance tests that matter most early
    group = 0 if variant.key in KEY_VARIANTS else 1
    order = PRIORITY.index(variant.key) if variant.key in PRIORITY else 50
    priority = -(regime_rank * 10_000 + group * 1_000 + seed * 100 + order)
    label = f"{regime.key} {pair} {variant.key} s{seed}"
    log = str(out / "logs" / regime.key / folder(pair) / f"{variant.key}-s{seed}.log")
    return Job(label, steps, log, needs=tuple(needs), priority=priority, cost=cost, watch=str(path), after=keep)


def cka_job(out: Path, size: Size, regime: Regime, device: str, pending: set[str], store: Store) -> list[Job]:
    """Teacher-vs-student stage CKA of the CKA pairs' students (every seed of each CKA variant) whose run folder is
    here (a record alone holds no weights)."""
    variants = {v.key: v for v in VARIANTS}
    jobs = []
    for pair in size.cka_pairs:
        teacher_key, student = PAIRS[pair]
        teacher = TEACHERS[teacher_key]
        for variant in size.cka_variants:
            for seed in size.seeds:
                path = run_dir(out, regime.key, pair, variant, seed)
                cell = {"student": digest(student_cell(size, regime, pair, variants[variant], seed)),
                        "teacher": digest(teacher_cell(size, teacher)), "images": size.cka_images}
                where = (regime.key, record_folder(pair, variant), variant, seed)
                label = f"{regime.key} {pair} {variant} s{seed}"
                if store.cka(*where, cell_digest=digest(cell)) is not None or (label not in pending and not finished(path)):
                    continue
                dest = out / "cka" / regime.key / record_folder(pair, variant) / f"{variant}-s{seed}"

                def keep(job, where=where, dest=dest, cell=cell) -> None:
                    store.keep_cka(*where, dest / "cka.json", cell)

                if (dest / "cka.json").is_file():
                    keep(None)
                    continue
                argv = ["cka", "--model-a", teacher.model.name,
                        "--checkpoint-a", str(store.teacher_dir(teacher_key) / "best.safetensors"),
                        "--kwargs-a", *teacher.model.cka_kwargs(),
                        "--model-b", student.name, "--checkpoint-b", str(path / "best.safetensors"),
                        "--kwargs-b", *student.cka_kwargs(),
                        "--num-classes", "10", "--data", "fashion-mnist", "--batch-size", "250",
                        "--out", str(dest), "--no-progress", "--device", device]
                if size.cka_images is not None:
                    argv += ["--val-subset", str(size.cka_images)]
                needs = tuple(n for n in (label, f"teacher {teacher_key}") if n in pending)
                # a minute each: as soon as its student is trained, before any further training run, so that
                # the CKA story can be told while the grid goes on
                jobs.append(Job(f"cka {label}", [Step(argv)], str(dest.parent / f"{dest.name}.log"), needs=needs,
                                priority=CKA_PRIORITY, cost=5, after=keep))
    return jobs


def all_jobs(out: Path, size: Size, device: str, store: Store, ablation: bool = False,
             successors: bool = False, successors_first: bool = False) -> list[Job]:
    jobs: list[Job] = []
    teachers = [TEACHERS[k] for k in dict.fromkeys(PAIRS[p][0] for p in size.pairs)]
    for teacher in teachers:
        job = teacher_job(out, size, teacher, device, store)
        if job:
            jobs.append(job)
    pending = {j.id for j in jobs}
    caches = [job for regime in size.regimes for teacher in teachers
              if (job := cache_job(out, size, teacher, regime, device, f"teacher {teacher.key}" in pending, store))]
    pending |= {j.id for j in caches}
    students = []
    for rank, regime in enumerate(size.regimes):
        for seed in size.seeds:
            for pair in size.pairs:
                for variant in VARIANTS:
                    if runs_elsewhere(size, pair, variant):
                        continue
                    job = student_job(out, size, regime, rank, pair, variant, seed, device, pending, store)
                    if job:
                        students.append(job)
    rank, regime = next((i, r) for i, r in enumerate(size.regimes) if r.key == ABLATION_REGIME)
    extras = [(ABLATION, 100_000)] if ablation else []  # after the main grid
    # after the ablation (the costliest runs), or with successors_first right after the first regime's grid
    extras += [(SUCCESSORS, 8_000 if successors_first else 200_000)] if successors else []
    for variants, later in extras:
        for seed in size.seeds:
            for pair in size.pairs:
                for variant in variants:
                    job = student_job(out, size, regime, rank, pair, variant, seed, device, pending, store)
                    if job:
                        job.priority -= later
                        students.append(job)
    needed = {n for job in students for n in job.needs}
    jobs += [job for job in caches if job.id in needed]  # a cache only for runs still to train
    jobs += students
    pending = {j.id for j in jobs}
    for regime in size.regimes:
        if regime.key in size.cka_regimes:
            jobs += cka_job(out, size, regime, device, pending, store)
    return jobs
