"""Config: shipped recipes, overrides, inheritance, validation messages, run names."""

from __future__ import annotations

import pytest
import yaml

from ofakd.config import RunConfig, dump_config, list_recipes, load_config, read_recipe
from ofakd.config.load import parse_value, split_override
from ofakd.errors import ConfigError
from ofakd.run_folder import sanitize_name

OFFICIAL = {
    # recipe: (epochs, batch/GPU, lr, min_lr, optimizer, weight decay, scheduler, warm-up epochs)
    "cifar-cnn": (300, 128, 0.05, 1e-3, "sgd", 2e-3, "cosine", 3),
    "cifar-vit-mlp": (300, 128, 5e-4, 1e-5, "adamw", 0.05, "cosine", 20),
    "imagenet-cnn": (100, 64, 0.1, 1e-6, "sgd", 1e-4, "step", 3),
    "imagenet-vit-mlp": (300, 128, 5e-4, 1e-6, "adamw", 0.05, "cosine", 20),
    "imagenet-stronger": (300, 256, 5e-3, None, "lamb", 0.02, "cosine", 5),
}


def test_shipped_recipes_are_listed_and_valid():
    assert set(list_recipes()) >= {*OFFICIAL, "demo", "fashion-mnist"}
    for name in list_recipes():
        assert isinstance(load_config(name), RunConfig)


REFERENCE_WARMUP_LR = {
    # the reference's default warm-up lr (1e-4) unless its config sets one (ViT/MLP: 5e-7)
    "cifar-cnn": 1e-4, "imagenet-cnn": 1e-4, "imagenet-stronger": 1e-4,
    "cifar-vit-mlp": 5e-7, "imagenet-vit-mlp": 5e-7,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_recipes_follow_the_reference_training_defaults(name):
    cfg = load_config(name)
    assert cfg.train.warmup_lr == REFERENCE_WARMUP_LR[name]
    assert cfg.augment.interpolation == "random"  # the reference's training interpolation
    expected_smoothing = 0.0 if name == "imagenet-stronger" else 0.1
    assert cfg.augment.smoothing == expected_smoothing


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_recipe_values(name):
    cfg = load_config(name)
    epochs, batch, lr, min_lr, opt, wd, sched, warmup = OFFICIAL[name]
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, t.optimizer, t.weight_decay, t.scheduler, t.warmup_epochs) == (
        epochs, batch, lr, opt, wd, sched, warmup
    )
    if min_lr is not None:
        assert t.min_lr == min_lr
    assert t.seed == 42
    assert cfg.augment.scale == (0.08, 1.0) and cfg.augment.hflip == 0.5


def test_official_recipe_details():
    cnn = load_config("cifar-cnn")
    assert cnn.augment.color_jitter == 0 and cnn.augment.smoothing == 0.1 and cnn.train.momentum == 0.9
    assert cnn.data.name == "cifar100" and cnn.student.mean == (0.5071, 0.4865, 0.4409)
    vit = load_config("cifar-vit-mlp")
    a = vit.augment
    assert (vit.train.clip_grad, a.color_jitter, a.reprob, a.auto_augment, a.mixup, a.cutmix) == (
        5.0, 0.4, 0.25, "rand-m9-mstd0.5-inc1", 0.8, 1.0
    )
    assert vit.train.warmup_lr == 5e-7
    inet = load_config("imagenet-cnn")
    assert (inet.train.decay_epochs, inet.train.decay_rate, inet.augment.smoothing) == (30, 0.1, 0.1)
    assert load_config("imagenet-vit-mlp").train.ema_decay == 0.99996
    strong = load_config("imagenet-stronger")
    a = strong.augment
    assert (a.smoothing, a.repeated_aug, a.auto_augment, a.mixup, a.cutmix, a.crop_pct) == (
        0.0, 3, "rand-m7-mstd0.5", 0.1, 1.0, 0.95
    )
    assert strong.student.kwargs["drop_path_rate"] == 0.05 and strong.train.ema_decay == 0.9998
    assert strong.method.gt_loss == "bce"


def test_recipes_say_batch_is_per_gpu():
    for name in OFFICIAL:
        text = read_recipe_text(name)
        assert "8 x" in text and "per GPU" in text, name


def read_recipe_text(name):
    from ofakd.config.load import recipe_text

    return recipe_text(name)


def test_overrides_parse_yaml_values():
    cfg = load_config("demo", [
        split_override("train.lr=0.1"),
        split_override("method.eps=[1.5]"),
        split_override("train.min_lr=1e-6"),
        split_override("student.kwargs.depth=3"),
        split_override("train.ema_decay=null"),
    ])
    assert cfg.train.lr == 0.1 and cfg.train.min_lr == 1e-6 and cfg.train.ema_decay is None
    assert cfg.method.options["eps"] == [1.5]
    assert cfg.student.kwargs["depth"] == 3 and cfg.student.kwargs["img_size"] == 32  # merged, not replaced
    assert parse_value("1e-3") == 1e-3 and parse_value("yes") is True and parse_value("a b") == "a b"


def test_an_override_inside_a_section_given_as_a_mapping_leaves_the_callers_mapping_alone():
    teacher = {"name": "test_byobnet", "kwargs": {}}
    cached = load_config("demo", [("teacher", teacher), ("teacher.cache", "caches/t"), ("teacher.kwargs.depth", 2)])
    live = load_config("demo", [("teacher", teacher)])
    assert cached.teacher.cache == "caches/t" and cached.teacher.kwargs == {"depth": 2}
    assert live.teacher.cache is None and live.teacher.kwargs == {}
    assert teacher == {"name": "test_byobnet", "kwargs": {}}


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr' — did you mean 'train.lr'\?"):
        load_config("demo", [("train.lrr", 0.1)])
    with pytest.raises(ConfigError, match=r"unknown key 'trian' — did you mean 'train'\?"):
        load_config(None, [("trian.lr", 0.1)])
    with pytest.raises(ConfigError, match=r"unknown key 'augment.mixpu' — did you mean 'augment.mixup'\?"):
        load_config("demo", [("augment.mixpu", 0.1)])


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError) as err:
        load_config("demo", [("train.epochs", "ten")])
    assert str(err.value) == "config: train.epochs: expected an integer, got 'ten'"
    with pytest.raises(ConfigError, match=r"config: train.amp: expected 'auto', 'none', 'bf16' or 'fp16'"):
        load_config("demo", [("train.amp", "fp8")])
    with pytest.raises(ConfigError, match=r"config: train.optimizer: .*unknown timm optimizer 'adamz'"):
        load_config("demo", [("train.optimizer", "adamz")])
    with pytest.raises(ConfigError, match=r"config: augment.hflip: must be a probability"):
        load_config("demo", [("augment.hflip", 2)])


def test_method_options_are_checked_against_the_method():
    with pytest.raises(ConfigError, match=r"unknown key 'method.epss' — did you mean 'method.eps'\?"):
        load_config("demo", [("method.epss", [1.0])])
    with pytest.raises(ConfigError, match=r"config: method.eps"):
        load_config("demo", [("method.eps", "abc")])
    with pytest.raises(ConfigError, match=r"method.name: unknown method 'ofaa'.*Did you mean ofa"):
        load_config("demo", [("method.name", "ofaa")])
    # an option of another method is not an option of this one
    with pytest.raises(ConfigError, match=r"unknown key 'method.eps'"):
        load_config("demo", [("method.name", "kd"), ("method.eps", [1.0])])


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown recipe 'cifar-cn' — did you mean 'cifar-cnn'\?"):
        load_config("cifar-cn")
    with pytest.raises(ConfigError, match=r"file 'nowhere/r.yaml' does not exist"):
        load_config("nowhere/r.yaml")


def test_recipe_files_inherit_with_base(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: demo\ntrain:\n  lr: 0.5\n  epochs: 3\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\ntrain:\n  epochs: 4\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.name) == (0.5, 4, "digits")
    assert cfg.student.name == load_config("demo").student.name
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="inherit in a loop"):
        read_recipe(str(tmp_path / "a.yaml"))


def test_bad_yaml_and_bad_override_are_one_line_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+ is not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="must look like KEY=VALUE"):
        split_override("train.lr")
    with pytest.raises(ConfigError, match="'train.lr' is a value, not a section"):
        load_config("demo", [("train.lr.x", 1)])


def test_dump_round_trips(tmp_path):
    cfg = load_config("cifar-vit-mlp", [("method.eps", [1.0, 1.0, 1.0, 1.0, 1.5]), ("student.name", "deit_tiny_patch16_224")])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(str(path)) == cfg


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "etc-passwd"),
    ("a/b\\c", "a-b-c"),
    (".hidden", "hidden"),
    ("ofa-resnet18-s42", "ofa-resnet18-s42"),
    ("x..y", "x.y"),
])
def test_run_names_cannot_escape_the_runs_folder(name, expected):
    assert sanitize_name(name) == expected


def test_empty_run_name_is_an_error():
    with pytest.raises(ConfigError, match="run.name"):
        sanitize_name("../..")


def test_a_combination_recipe_checks_each_part_and_its_own_options():
    cfg = load_config("demo", [("method", {"name": "ofa+dist", "ofa.ofa_weight": 0.1, "dist": {"beta": 2.0},
                                           "gt_weight": 0.5})])
    assert cfg.method.name == "ofa+dist"
    with pytest.raises(ConfigError, match="config: method: method 'ofa\\+dist': unknown key 'bta' — did you mean 'beta'\\?"):
        load_config("demo", [("method", {"name": "ofa+dist", "bta": 2.0})])
    with pytest.raises(ConfigError, match="'gt_weight' belongs to the combination"):
        load_config("demo", [("method", {"name": "ofa+dist", "dist.gt_weight": 0.5})])


def test_a_string_that_reads_as_a_float_round_trips_through_config_yaml(tmp_path):
    cfg = load_config("demo", [("student.kwargs", {"tag": "0E0", "rate": 1e-5})])
    (tmp_path / "config.yaml").write_text(dump_config(cfg))
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.student.kwargs == {"tag": "0E0", "rate": 1e-5}
    assert dump_config(again) == dump_config(cfg)


def test_config_yaml_records_every_method_option_with_its_default(tmp_path):
    """A run folder says what ran: config.yaml (and --print-config) hold the method's resolved options."""
    from ofakd.distill import get_method

    cfg = load_config("demo", [("method.eps", [1.5])])
    options = get_method("ofa").Options
    assert set(cfg.method.options) == set(options.model_fields)
    assert cfg.method.options == {**options().model_dump(mode="json"), "eps": [1.5]}
    written = yaml.safe_load(dump_config(cfg))["method"]
    assert written["ofa_weight"] == 1.0 and written["temperature"] == 1.0 and written["stages"] == [1, 2, 3, 4]
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(str(path)) == cfg


def test_a_combination_records_each_part_options_in_full():
    from ofakd.distill import get_method

    cfg = load_config("demo", [("method", {"name": "ofa+dist", "eps": [1.5], "dist": {"beta": 2.0}})])
    method = cfg.method.options
    assert method["gt_weight"] == 1.0 and method["part_weights"] is None
    assert set(method["ofa"]) == set(get_method("ofa").Options.model_fields) - {"gt_weight", "gt_loss"}
    assert method["ofa"]["eps"] == [1.5] and method["dist"]["beta"] == 2.0 and method["dist"]["gamma"] == 1.0
    again = load_config("demo", [("method", {"name": "ofa+dist", **method})])
    assert again == cfg
