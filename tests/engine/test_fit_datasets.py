"""``ofakd.fit``: a distiller built in Python trained on torch Datasets by the engine (run folder, resume, EMA)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import Dataset

import ofakd
from ofakd.engine.evaluate import evaluate
from ofakd.errors import CacheMismatchError, ConfigError, DataError, ModelError, OfakdError
from ofakd.models.info import input_spec
from tests.blobs import SETTINGS, Blobs, Killed, bf16_distiller, distiller
from tests.tiny_models import SmallCNN, tiny


def test_fit_trains_given_datasets_into_a_run_folder(tmp_path):
    made = distiller()
    val = Blobs(24, 1)
    run = ofakd.fit(made, Blobs(64, 0), val, out_dir=tmp_path, name="blobs", ema_decay=0.5, **SETTINGS)
    assert run == tmp_path / "blobs"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["name"] == "python" and config["method"]["name"] == "ofa"
    assert config["student"]["name"] == "deit_tiny_patch16_224" and config["student"]["kwargs"]["img_size"] == 16
    assert config["teacher"]["name"] == "SmallCNN" and config["train"]["ema_decay"] == 0.5
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and summary["steps"] == 8 and summary["train_images"] == 64
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"ofa_s1", "kd", "gt"} <= set(next(r for r in records if r["kind"] == "train")["losses"])
    # best.safetensors holds the weights that scored best_top1 on the given validation set
    best = tiny("deit", num_classes=3, size=16)
    best.load_state_dict(load_file(str(run / "best.safetensors")))
    loader = torch.utils.data.DataLoader(val, batch_size=8)
    assert evaluate(best, loader, device=torch.device("cpu")).scores()["top1"] == pytest.approx(summary["best_top1"])


def test_a_crashed_fit_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = distiller()
    ofakd.fit(whole, Blobs(64, 0), Blobs(16, 1), out_dir=tmp_path, name="whole", **SETTINGS)
    with pytest.raises(Killed):  # dies in epoch 2, after epoch 1's last.pt (a batch checked + 64 items + 8)
        ofakd.fit(distiller(), Blobs(64, 0, crash_after=88), Blobs(16, 1), out_dir=tmp_path, name="crash", **SETTINGS)
    assert torch.load(tmp_path / "crash" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = distiller()
    run = ofakd.fit(resumed, Blobs(64, 0), Blobs(16, 1), out_dir=tmp_path, name="crash", resume=True, **SETTINGS)
    assert json.loads((run / "summary.json").read_text())["steps"] == 8
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_teacher_cache_is_recorded_once_and_replays_what_the_live_teacher_gave(tmp_path):
    live = ofakd.fit(bf16_distiller(), Blobs(64, 0), Blobs(16, 1), out_dir=tmp_path, name="live", **SETTINGS)
    made, again, calls = bf16_distiller(), bf16_distiller(), []
    teacher = made.teacher
    for each in (made, again):
        each.teacher.model.register_forward_hook(lambda *_: calls.append(1))
    cache = tmp_path / "cache"
    first = ofakd.fit(made, Blobs(64, 0), Blobs(16, 1), out_dir=tmp_path, name="first", teacher_cache=cache, **SETTINGS)
    assert len(calls) == 2 * 4 and made.teacher is teacher  # recorded 2 epochs x 4 batches; the live teacher is back
    second = ofakd.fit(again, Blobs(64, 0), Blobs(16, 1), out_dir=tmp_path, name="second", teacher_cache=cache,
                       **SETTINGS)
    assert len(calls) == 2 * 4  # replayed: the teacher never ran
    assert yaml.safe_load((second / "config.yaml").read_text())["teacher"]["cache"] == str(cache)
    expected = load_file(str(live / "best.safetensors"))
    for run in (first, second):
        got = load_file(str(run / "best.safetensors"))
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), run


def blob_arrays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 12-px uint8 noise around different gray levels, (N, 3, H, W) tensors: ``fit`` resizes them."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 3, (n,), generator=g)
    pixels = torch.randn(n, 3, 12, 12, generator=g) * 30 + 60 + 60 * targets.view(-1, 1, 1, 1).float()
    return pixels.clamp(0, 255).round().to(torch.uint8), targets


ARRAY_AUGMENT = {"hflip": 0.5, "reprob": 0.25, "crop_padding": 2, "mixup": 0.4}


def test_images_given_as_arrays_train_on_the_batched_path_and_a_cache_replays_them_exactly(tmp_path):
    """uint8 arrays go the batched path: resized to the student's 16 px, flipped, padded-cropped, erased and mixed
    per view; the run records the augmentation and the path; a teacher cache recorded over those views replays
    what the live teacher gave, bit for bit."""
    train, val = blob_arrays(64, 0), blob_arrays(16, 1)
    live = ofakd.fit(bf16_distiller("kd"), train, val, out_dir=tmp_path, name="live", augment=ARRAY_AUGMENT,
                     **SETTINGS)
    summary = json.loads((live / "summary.json").read_text())
    config = yaml.safe_load((live / "config.yaml").read_text())
    assert summary["data_path"] == "batched" and summary["complete"] and summary["train_images"] == 64
    assert config["augment"]["crop_padding"] == 2 and config["augment"]["train_resize_only"]
    own = input_spec(tiny("deit", num_classes=3, size=16))
    assert config["data"]["loader"] == "auto" and config["student"]["mean"] == list(own.mean)  # the student's own
    cache = tmp_path / "cache"
    for name in ("first", "second"):  # recorded by the first, replayed by the second
        run = ofakd.fit(bf16_distiller("kd"), train, val, out_dir=tmp_path, name=name, augment=ARRAY_AUGMENT,
                        teacher_cache=cache, **SETTINGS)
        expected, got = load_file(str(live / "best.safetensors")), load_file(str(run / "best.safetensors"))
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), name
    assert json.loads((cache / "manifest.json").read_text())["dataset"]["views"] == "batched"
    per_image = ofakd.fit(bf16_distiller("kd"), train, val, out_dir=tmp_path, name="per-image", loader="per_image",
                          augment=ARRAY_AUGMENT, **SETTINGS)
    assert json.loads((per_image / "summary.json").read_text())["data_path"] == "per_image"


def test_arrays_and_datasets_are_not_mixed_and_augment_is_for_arrays(tmp_path):
    arrays = blob_arrays(32, 0)
    with pytest.raises(DataError, match="must both be Datasets or both"):
        ofakd.fit(distiller("kd"), arrays, Blobs(8, 1), out_dir=tmp_path, **SETTINGS)
    with pytest.raises(ConfigError, match="augment= and loader= apply to images given as"):
        ofakd.fit(distiller("kd"), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, augment={"hflip": 0.5}, **SETTINGS)
    with pytest.raises(ConfigError, match="augment.hflip"):
        ofakd.fit(distiller("kd"), arrays, blob_arrays(8, 1), out_dir=tmp_path, augment={"hflip": 2}, **SETTINGS)
    with pytest.raises(DataError, match="train_set: images must be uint8"):
        ofakd.fit(distiller("kd"), (arrays[0].float(), arrays[1]), blob_arrays(8, 1), out_dir=tmp_path, **SETTINGS)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_teacher_cache_refuses_another_teacher_and_feature_methods(tmp_path):
    cache = tmp_path / "cache"
    ofakd.fit(bf16_distiller("kd"), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="a", teacher_cache=cache,
              **{**SETTINGS, "epochs": 1})
    with pytest.raises(CacheMismatchError, match="teacher.weights_sha256.*delete .* to record afresh"):
        ofakd.fit(bf16_distiller("kd", seed=1), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="b",
                  teacher_cache=cache, **{**SETTINGS, "epochs": 1})
    with pytest.raises(ConfigError, match="needs teacher features .* leave teacher_cache= out"):
        ofakd.fit(bf16_distiller("fitnet"), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="c",
                  teacher_cache=cache, **{**SETTINGS, "epochs": 1})


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(lrr=0.1), ConfigError, r"unknown key 'train.lrr' — did you mean 'train.lr'"),
        (dict(train_set=Blobs(64, 0), input_size=(3, 32, 32)), DataError,
         r"train_set gives images of shape \(3, 16, 16\) but the distiller was built for input_size \(3, 32, 32\)"),
        (dict(method="crd", num_samples=10), ConfigError, r"create_distiller\(..., num_samples=len\(train_set\)\) \(64\)"),
        (dict(class_names=["a", "b"]), DataError, "2 class names for a student with 3 outputs"),
        (dict(exists=True), ConfigError, "already exists; pass resume=True to continue it, overwrite=True"),
        (dict(cache_topk=2), ConfigError, "pass teacher_cache=FOLDER too"),
    ],
    ids=["unknown-setting", "image-size", "memory-bank-size", "class-names", "run-exists", "topk-without-cache"],
)
def test_bad_input_names_the_problem_and_the_fix(tmp_path, change, error, message):
    change = dict(change)
    built_with = {k: change.pop(k) for k in ("method", "num_samples", "input_size") if k in change}
    method = built_with.pop("method", "kd")
    if "input_size" in built_with:
        torch.manual_seed(0)
        made = ofakd.create_distiller(method, teacher=SmallCNN(classes=3), student=SmallCNN(classes=3), **built_with)
    else:
        made = distiller(method, **built_with)
    if change.pop("exists", False):
        (tmp_path / "taken").mkdir()
    train = change.pop("train_set", Blobs(64, 0))
    with pytest.raises(error, match=message):
        ofakd.fit(made, train, Blobs(8, 1), out_dir=tmp_path, name="taken", **{**SETTINGS, **change})
    assert issubclass(error, OfakdError)


class Altered(Dataset):
    """``Blobs`` whose item ``at`` (every item with ``at=None``) is changed by ``change(image, label)``."""

    def __init__(self, base: Dataset, change, at: int | None = 3) -> None:
        self.base, self.change, self.at = base, change, at

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.change(image, label) if self.at in (None, index) else (image, label)


class TupleStudent(SmallCNN):
    def forward(self, x):
        return super().forward(x), x.mean()


def kd_with(teacher=None, student=None):
    torch.manual_seed(0)
    student = student if student is not None else SmallCNN(classes=3)
    return ofakd.create_distiller("kd", teacher=teacher if teacher is not None else SmallCNN(classes=3),
                                  student=student, input_size=(3, 16, 16))


def same_module():
    model = SmallCNN(classes=3)
    return kd_with(model, model)


BOUNDARY = {  # what fit is given -> the error that names it (issue 29, point 10; wrong types: point 7)
    "label-out-of-range": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x, 3))), DataError,
                           r"train_set\[3\]: label 3 is outside \[0, 3\) for a student with 3 classes"),
    "negative-label": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x, -1))), DataError,
                       r"train_set\[3\]: label -1 is outside \[0, 3\)"),
    "float-label": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x, 1.0))), DataError,
                    r"train_set\[3\]: the label must be an integer class index, got 1.0"),
    "string-label": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x, "mid"))), DataError,
                     r"train_set\[3\]: the label must be an integer class index, got 'mid'"),
    "val-label-out-of-range": (dict(val=Altered(Blobs(8, 1), lambda x, y: (x, 7))), DataError,
                               r"val_set\[3\]: label 7 is outside \[0, 3\)"),
    "mixed-sizes": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x[:, :8, :8], y))), DataError,
                    r"train_set gives images of shape \(3, 8, 8\) but the distiller was built for input_size"),
    "uint8-images": (dict(train=Altered(Blobs(32, 0), lambda x, y: ((x * 60).clamp(0, 255).byte(), y), at=None)),
                     DataError, r"train_set\[0\]: the image is a torch.uint8 tensor; the models take float images"),
    "extra-element": (dict(train=Altered(Blobs(32, 0), lambda x, y: (x, y, "note"), at=None)), DataError,
                      r"train_set\[0\] must be \(image tensor, class index\), got a 3-item tuple"),
    "empty-train-set": (dict(train=torch.utils.data.TensorDataset(torch.zeros(0, 3, 16, 16))), DataError,
                        "train_set is empty"),
    "meta-teacher": (dict(made=lambda: kd_with(SmallCNN(classes=3).to("meta"))), ModelError,
                     r"the teacher's stem.0.weight is on the meta device: the teacher has no weights yet"),
    "fp16-teacher": (dict(made=lambda: kd_with(SmallCNN(classes=3).half())), ModelError,
                     r"the teacher holds torch.float16 weights .* pass teacher.float\(\)"),
    "student-returns-a-tuple": (dict(made=lambda: kd_with(student=TupleStudent(classes=3))), ModelError,
                                r"the student's forward returns a tuple for one image, not its logits \(1, 3\)"),
    "teacher-is-student": (dict(made=same_module), ModelError,
                           r"the teacher and the student are the same module .* copy.deepcopy\(model\)"),
    "epochs-as-text": (dict(epochs="3"), ConfigError, r"epochs='3': expected int, got str; pass the value itself"),
}


@pytest.mark.parametrize("case", BOUNDARY, ids=list(BOUNDARY))
def test_fit_checks_what_it_is_given_before_training(tmp_path, case):
    change, error, message = BOUNDARY[case]
    change = dict(change)
    made = change.pop("made", lambda: kd_with())()
    train, val = change.pop("train", Blobs(32, 0)), change.pop("val", Blobs(8, 1))
    with pytest.raises(error, match=message):
        ofakd.fit(made, train, val, out_dir=tmp_path, name="checked", **{**SETTINGS, **change})
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_resume_refuses_a_teacher_with_other_weights(tmp_path):
    """fit(resume=True) with the teacher rebuilt with other weights stops, naming the teacher (issue 29, point 7);
    the same weights resume."""
    ofakd.fit(kd_with(), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="r", **{**SETTINGS, "epochs": 1})
    torch.manual_seed(5)
    other = kd_with(SmallCNN(classes=3))  # the same student, a teacher of other weights
    with pytest.raises(ConfigError, match=r"the teacher's weights differ from the ones the run trained with"):
        ofakd.fit(other, Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="r", resume=True, **SETTINGS)
    ofakd.fit(kd_with(), Blobs(32, 0), Blobs(8, 1), out_dir=tmp_path, name="r", resume=True, **SETTINGS)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["complete"]
