"""Fuzzing config parsing and overrides (hypothesis): any input gives a valid config or a
:class:`ConfigError`, never another exception; a valid config survives a YAML round trip."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ofakd.cli import main
from ofakd.config import RunConfig, dump_config, load_config
from ofakd.config.load import apply_override, parse_value, read_recipe, split_override, validate
from ofakd.config.schema import SECTIONS
from ofakd.distill import get_method, list_methods
from ofakd.errors import ConfigError

FIELDS = sorted({f"{section}.{name}" for section, model in SECTIONS.items() for name in model.model_fields}
                | {f"method.{name}" for m in list_methods() for name in get_method(m).Options.model_fields})
KEYS = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(sorted(SECTIONS)),
    st.sampled_from(FIELDS).map(lambda k: k + ".x"),  # one level too deep
    st.sampled_from(["student.kwargs.img_size", "teacher.kwargs.depth", "base", "train..lr", ".", "train.", ""]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz._ ", min_size=0, max_size=14),
    st.text(max_size=10),
)
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["ofa", "kd", "sgd", "adamw", "cpu", "cuda", "auto", "bicubic", "stop", "skip", "digits",
                     "imagefolder", "rand-m9-mstd0.5-inc1", "1e-3", "[1.5]", "{}", "null", "resnet18"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), children,
                                                                      max_size=4),
    max_leaves=8,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def has_nonfinite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_nonfinite(v) for v in value)
    return False


def check_valid(cfg: RunConfig) -> None:
    """A config that validated: every number finite, and dump -> load gives it back."""
    assert isinstance(cfg, RunConfig)
    assert not has_nonfinite(cfg.model_dump())
    text = dump_config(cfg)
    again = validate(read_recipe_text(text))
    assert dump_config(again) == text


def read_recipe_text(text: str) -> dict:
    from ofakd.config.load import parse_yaml

    return parse_yaml(text) or {}


@FUZZ
@given(recipe=st.sampled_from([None, "demo", "cifar-cnn", "imagenet-vit-mlp"]),
       overrides=st.lists(st.tuples(KEYS, VALUES), max_size=5))
@example(recipe=None, overrides=[("method.eps", [float("nan")])])
@example(recipe=None, overrides=[("train.lr", float("inf"))])
@example(recipe=None, overrides=[("method", {1: 2})])
@example(recipe=None, overrides=[("train", None), ("train.lr", 0.1)])
@example(recipe="demo", overrides=[("student.kwargs", [1])])
@example(recipe=None, overrides=[("train.lr", "[" * 1000)])
def test_overrides_give_a_config_or_a_config_error(recipe, overrides):
    try:
        cfg = load_config(recipe, overrides)
    except ConfigError as err:
        assert str(err).startswith("config: ") and str(err).strip()
        return
    check_valid(cfg)


@FUZZ
@given(text=st.text(max_size=40) | st.sampled_from(FIELDS).flatmap(lambda k: st.text(max_size=20).map(lambda v: f"{k}={v}")))
@example(text="train.lr=" + "[" * 1000)
@example(text="train.lr=!!python/object/apply:os.system ['echo hi']")
@example(text="method.eps=[.nan]")
@example(text="=1")
def test_set_strings_give_a_config_or_a_config_error(text):
    try:
        key, value = split_override(text)
        raw: dict = {}
        apply_override(raw, key, value)
        cfg = validate(raw)
    except ConfigError:
        return
    check_valid(cfg)


YAML_DOCS = st.one_of(
    st.text(max_size=80),
    st.dictionaries(st.sampled_from(sorted(SECTIONS) + ["base", "extra"]),
                    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3) | SCALARS, max_size=4).map(
        lambda d: __import__("yaml").safe_dump(d, allow_unicode=True)),
)


@FUZZ
@given(doc=YAML_DOCS)
@example(doc="base: base.yaml\n")
@example(doc="train: !!python/object/apply:os.system ['echo hi']\n")
@example(doc="a: &a [*a]\n")
@example(doc="[" * 1000)
@example(doc="train: {lr: .inf}\n")
def test_recipe_files_give_a_config_or_a_config_error(doc, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzzed-recipe" / "base.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    try:
        cfg = validate(read_recipe(str(path)))
    except ConfigError:
        return
    check_valid(cfg)


def test_parse_value_never_raises():
    assert parse_value("[" * 1000) == "[" * 1000
    assert parse_value("1e-3") == pytest.approx(1e-3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(st.sampled_from(["--set", "--train.lr", "--epochs", "--method.eps", "--model", "--name",
                                      "--data.train_subset", "--checkpoint-every", "--stop-after-epochs", "-c",
                                      "--trian.lr", "--", "x"]) | st.text(max_size=12), max_size=6))
def test_command_lines_give_status_0_or_2(args):
    """``ofakd distill ... --print-config``: a config (0) or one error line (2); never a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["distill", "--config", "demo", *args, "--print-config"])
        except SystemExit as exit_:  # -h / --help
            code = exit_.code
    assert code in (0, 2)
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
