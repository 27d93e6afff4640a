"""One 'did you mean' helper: the similarity cutoff decides, the closest name comes first, and every message that
suggests a name (config keys, recipes, methods, options, flags, modules, timm names) goes through it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

import ofakd
from ofakd.pydantic_errors import problem
from ofakd.suggest import SIMILARITY, close_matches, nearest


def test_a_name_at_the_cutoff_is_suggested_and_one_just_below_is_not():
    assert SIMILARITY == 0.75
    # difflib's ratio 2*M/T: "abcd" ~ "abcx" share 3 of 8 characters (0.75), "abcde" ~ "abcdxy" 4 of 11 (0.73)
    assert close_matches("abcd", ["abcx"]) == ["abcx"]
    assert close_matches("abcde", ["abcdxy"]) == []
    assert close_matches("data_dir", ["out_dir"]) == [] and close_matches("model", ["model_ema"]) == []  # 0.67, 0.71


def test_the_closest_names_come_first_and_n_bounds_them():
    known = ["kd", "dkd", "ofa", "dist", "fitnet"]
    assert close_matches("ofaa", known, n=3) == ["ofa"]
    assert close_matches("dkdd", known + ["dkdt"], n=3) == ["dkd", "dkdt"]  # 6/7 before 6/8; "kd" (4/6) is below
    assert close_matches("dkdd", known, n=1) == ["dkd"]
    assert nearest("train.lrr", ["train.epochs", "train.lr"]) == "train.lr"
    assert nearest("zzz", known) is None


def test_no_other_module_compares_names_itself():
    package = Path(ofakd.__file__).parent
    users = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "difflib" in p.read_text())
    assert users == ["suggest.py"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = 1
    lr: float = 0.1


class Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: Section = Section()


def first_problem(raw: dict, prefix: str = "") -> str:
    try:
        Root.model_validate(raw)
    except ValidationError as err:
        return problem(err, Root, prefix)
    raise AssertionError("valid")


def test_the_pydantic_formatter_names_the_path_the_fix_and_the_nearest_key():
    assert first_problem({"train": {"lrr": 1}}) == "unknown key 'train.lrr' — did you mean 'train.lr'?"
    assert first_problem({"train": {"zzz": 1}}) == "unknown key 'train.zzz'; valid keys here: epochs, lr"
    assert first_problem({"train": {"epochs": "ten"}}) == "train.epochs: expected an integer, got 'ten'"
    assert first_problem({"trian": {}}, prefix="run.") == "unknown key 'run.trian' — did you mean 'run.train'?"
