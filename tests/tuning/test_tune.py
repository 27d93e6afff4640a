"""``ofakd tune``: the search space, the trials' protocol, pruning, the budget shared by workers (one killed),
best.yaml run as is, the report, resume."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import ofakd
from ofakd.config import load_config
from ofakd.distill import get_method, list_methods
from ofakd.distill.search import Choice, Range
from ofakd.errors import ConfigError
from ofakd.tuning.space import DEFAULT_METHODS, Fixed, SearchSpace, declared_space, method_names
from ofakd.tuning.study import counts, open_storage, places_before
from ofakd.tuning.trial import TrialPlan, TrialRunner, trial_config
from tests.tuning_runs import QUIET, save_tiny_teacher, tiny_flags, tiny_overrides


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"))


# ----------------------------------------------------------------------------- the search space


def test_each_methods_space_is_what_it_declares_beside_its_options_and_every_range_end_is_a_valid_option():
    for method in list_methods():  # every registered method, a parallel one (pat) included once it declares one
        options = get_method(method).Options
        for option, dim in options.search_space.items():
            assert option in options.model_fields, (method, option)
            values = [dim.low, dim.high] if isinstance(dim, Range) else list(dim.values)
            for value in values:
                default = options.model_fields[option].get_default(call_default_factory=True)
                get_method(method).parse_options({option: [value] if isinstance(default, list) else value})
    assert declared_space("ofa+dist") == {
        **{f"ofa.{k}": v for k, v in get_method("ofa").Options.search_space.items()},
        **{f"dist.{k}": v for k, v in get_method("dist").Options.search_space.items()}}
    assert set(declared_space("dist")) == {"beta", "gamma", "temperature"}  # kd_weight would scale both again
    assert set(declared_space("ofa")) == {"eps", "ofa_weight", "kd_weight", "temperature"}


def test_space_defaults_narrowing_and_suggestions():
    assert method_names(None) == list(DEFAULT_METHODS) == ["kd", "dkd", "dist", "ofa", "ofa+dist"]
    assert method_names(["default,fitnet", "kd"]) == [*DEFAULT_METHODS, "fitnet"]
    space = SearchSpace.build(["kd", "ofa"], lr=3e-3, narrow={"ofa.eps": "1:1.5", "kd.temperature": "4",
                                                              "ofa.ofa_weight": "[0.1, 1]", "lr": "1e-3:1e-2"})
    assert space.lr == Range(1e-3, 1e-2, log=True)  # the declared scale (log) is kept
    assert SearchSpace.build(["kd"], lr=3e-3).lr == Range(3e-3 / 3, 3e-3 * 3, log=True)  # a factor of 3 either side
    assert space.options["ofa"]["eps"] == Range(1.0, 1.5, log=False)
    assert space.options["kd"]["temperature"] == Fixed(4)
    assert space.options["ofa"]["ofa_weight"] == Choice((0.1, 1))
    trial = optuna.trial.FixedTrial({"method": "ofa", "lr": 2e-3, "ofa.eps": 1.2, "ofa.ofa_weight": 1,
                                     "ofa.kd_weight": 0.5, "ofa.temperature": 2.0})
    assert space.suggest(trial) == ("ofa", {"eps": [1.2], "ofa_weight": 1, "kd_weight": 0.5, "temperature": 2.0},
                                    2e-3)
    kd = optuna.trial.FixedTrial({"method": "kd", "lr": 2e-3, "kd.kd_weight": 2.0})
    assert space.suggest(kd) == ("kd", {"kd_weight": 2.0, "temperature": 4}, 2e-3)  # fixed: set, not searched


@pytest.mark.parametrize(("narrow", "message"), [
    ({"ofa.ofa_weight": "-1:2:linear"}, r"--space ofa.ofa_weight: -1.0 is not a valid value: .*must be >= 0"),
    ({"ofa.ofa_weight": "-1:2"}, r"--space ofa.ofa_weight=-1:2: .*low > 0 for a log range"),
    ({"ofa.nope": "1"}, r"--space ofa.nope: 1 is not a valid value: method 'ofa': unknown key 'nope'; valid keys here: "),
    ({"pat.x": "1"}, r"--space pat.x: the key is lr or METHOD.OPTION for a searched method \(kd, ofa\)"),
    ({"ofa.eps": "2:1"}, r"--space ofa.eps=2:1: a search range needs low < high"),
    ({"ofa.eps": "a:b"}, r"a range is LOW:HIGH with two numbers"),
    ({"lr": "[0, 0.1]"}, r"--space lr=\[0, 0.1\]: learning rates must be numbers > 0"),
])
def test_bad_space_specs_are_one_line_errors_naming_the_key(narrow, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpace.build(["kd", "ofa"], lr=1e-3, narrow=narrow)


# ----------------------------------------------------------------------------- trials and the budget


def test_a_trial_is_the_recipe_on_the_training_images_less_the_holdout_with_the_cache_for_logit_methods(
        teacher_file, tmp_path):
    base = load_config("demo", tiny_overrides(teacher_file) + [("method", {"name": "ofa", "stages": [3, 4]})])
    plan = TrialPlan(holdout=32, holdout_seed=3, epochs=2, trials_dir=tmp_path / "trials", cache=tmp_path / "cache")
    ofa = trial_config(base, plan, "ofa", {"eps": [1.3]}, 1e-3, "trial-0000")
    assert (ofa.data.holdout, ofa.data.holdout_seed, ofa.data.val_subset) == (32, 3, None)
    assert (ofa.train.lr, ofa.train.eval_teacher, ofa.teacher.cache) == (1e-3, False, str(tmp_path / "cache"))
    assert ofa.method.options["stages"] == [3, 4] and ofa.method.options["eps"] == [1.3]  # the recipe's kept
    fitnet = trial_config(base, plan, "fitnet", {}, 1e-3, "trial-0001")
    assert fitnet.teacher.cache is None and "stages" in fitnet.method.options  # live teacher; fitnet's defaults
    both = trial_config(base, plan, "ofa+dist", {"ofa.eps": [1.1], "dist.beta": 2.0}, 1e-3, "trial-0002")
    assert both.method.options["ofa"]["eps"] == [1.1] and both.method.options["dist"]["beta"] == 2.0


def _trial(number: int, state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    done = state in (TrialState.COMPLETE, TrialState.PRUNED)
    trial = create_trial(state=state, value=1.0 if done else None, params={"lr": 0.1},
                         distributions={"lr": FloatDistribution(0.01, 1.0)}, user_attrs=attrs)
    trial.number = number
    return trial


def test_the_budget_counts_trials_that_ran_not_a_killed_workers_nor_a_surplus_one():
    trials = [_trial(0, TrialState.COMPLETE), _trial(1, TrialState.PRUNED),
              _trial(2, TrialState.FAIL),  # its worker died: failed by the heartbeat, no error of its own
              _trial(3, TrialState.FAIL, error="loss is NaN"), _trial(4, TrialState.FAIL, surplus=True),
              _trial(5, TrialState.RUNNING)]
    assert [counts(t) for t in trials] == [True, True, False, True, False, True]
    assert [places_before(trials, n) for n in range(7)] == [0, 1, 2, 2, 3, 3, 4]


def test_a_trial_is_pruned_from_inside_training_after_the_epoch_its_pruner_rejects(teacher_file, tmp_path):
    base = load_config("demo", tiny_overrides(teacher_file, epochs=3))
    plan = TrialPlan(holdout=32, holdout_seed=0, epochs=3, trials_dir=tmp_path / "trials", cache=None)
    runner = TrialRunner(base, SearchSpace.build(["kd"], lr=1e-3), plan, **QUIET)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # always
    study.set_user_attr("budget", 1)
    study.optimize(runner, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 1
    assert trial.value == trial.intermediate_values[1] == trial.user_attrs["top1"][0]
    summary = json.loads((tmp_path / "trials" / "trial-0000" / "summary.json").read_text())
    assert (summary["epochs_done"], summary["val_images"], summary["train_images"]) == (1, 32, 64)


# ----------------------------------------------------------------------------- a whole tuning


@pytest.fixture(scope="module")
def tuned(teacher_file, tmp_path_factory):
    """A tuning of kd and fitnet (a feature method: live teacher) with 4 trials and one final run."""
    out = tmp_path_factory.mktemp("tune") / "digits"
    base = load_config("demo", tiny_overrides(teacher_file))
    result = ofakd.tune(base, budget=4, out=out, methods=["kd", "fitnet"], holdout=32, final_seeds=[5],
                        space={"lr": "1e-3:4e-3"}, **QUIET)
    return out, base, result


def test_a_tuning_scores_trials_on_the_holdout_and_only_the_final_run_reads_the_test_split(tuned):
    out, _, result = tuned
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{out / 'study.db'}")
    assert len([t for t in study.trials if counts(t)]) == 4
    for trial in study.trials:
        summary = json.loads((out / "trials" / f"trial-{trial.number:04d}" / "summary.json").read_text())
        config = yaml.safe_load((out / "trials" / f"trial-{trial.number:04d}" / "config.yaml").read_text())
        assert (summary["train_images"], summary["val_images"]) == (64, 32)  # 96 less the 32 held out
        assert (config["data"]["holdout"], config["data"]["val_subset"]) == (32, None)
        assert trial.user_attrs["teacher"] == {"kd": "cache", "fitnet": "live"}[trial.user_attrs["method"]]
        assert summary["epochs_done"] == trial.user_attrs["epochs"] == len(trial.intermediate_values)
    manifest = json.loads((out / "teacher-cache" / "manifest.json").read_text())
    assert "-train64-val32-" in manifest["dataset"]["fingerprint"]  # recorded over the training images less the holdout
    final = json.loads((out / "final" / "s5" / "summary.json").read_text())
    assert (final["train_images"], final["val_images"], final["seed"]) == (96, 64, 5)  # all training, the test split
    assert result.finals[0]["final_top1"] == final["final_top1"]
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: (t.value, -t.number))
    assert result.best == {"trial": best.number, "method": best.user_attrs["method"],
                           "options": best.user_attrs["options"], "lr": best.user_attrs["lr"],
                           "holdout_top1": best.value}


def test_best_yaml_is_the_recipe_with_the_best_trials_settings_and_ofakd_distill_runs_it_as_is(
        tuned, ofakd_cli, tmp_path, monkeypatch):
    out, base, result = tuned
    best = load_config(str(out / "best.yaml"))
    assert best.method.name == result.best["method"] and best.train.lr == result.best["lr"]
    assert {k: best.method.options[k] for k in result.best["options"]} == result.best["options"]
    assert best.data.holdout is None and best.data.val_subset == base.data.val_subset and best.run == base.run
    monkeypatch.chdir(tmp_path)  # best.yaml keeps the recipe's run folder: runs/<name>
    code, stdout, stderr = ofakd_cli("distill", "--config", str(out / "best.yaml"))
    assert code == 0, stderr
    ran = json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())
    final = json.loads((out / "final" / "s5" / "summary.json").read_text())
    assert ran["method"] == best.method.name and ran["complete"] and ran["val_images"] == final["val_images"]


def test_the_report_shows_protocol_trials_best_per_method_cost_and_figures(tuned, ofakd_cli, tmp_path):
    out, _, result = tuned
    code, stdout, stderr = ofakd_cli("report", str(out), "--out", str(tmp_path / "r"), "--quiet")
    assert code == 0, stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert text == (out / "report.md").read_text()  # the same report, written again from the study
    for png in ("history.png", "importance.png"):
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "The test split (the recipe's validation split) was never read by a trial" in text
    assert "64 training images, 32 held out" in text
    assert f"test top-1 **{result.finals[0]['final_top1']:.2f}**" in text
    assert f"last epoch on {result.finals[0]['val_images']:,} test images" in text  # a subset says how many
    assert "| kd |" in text and "| fitnet |" in text and "## Cost" in text and "student-epochs" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(rows) == 4 and all(row.rstrip(" |").endswith(("cache", "live")) for row in rows)
    code, _, stderr = ofakd_cli("report", str(out), str(out / "final"))
    assert code == 2 and "report it alone" in stderr


def test_a_tuning_resumes_and_a_larger_budget_extends_it(tuned, teacher_file):
    out, base, result = tuned
    before = json.loads((out / "final" / "s5" / "summary.json").read_text())
    again = ofakd.tune(base, budget=5, out=out, methods=["kd", "fitnet"], holdout=32, final_seeds=[5],
                       space={"lr": "1e-3:4e-3"}, **QUIET)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 5 and again.best["holdout_top1"] >= result.best["holdout_top1"]
    if again.best == result.best:  # the same best: its final run is read back, not trained again
        assert json.loads((out / "final" / "s5" / "summary.json").read_text()) == before
    with pytest.raises(ConfigError, match=r"study 'digits' was made with holdout = 32, this worker has 16"):
        ofakd.tune(base, budget=5, out=out, methods=["kd", "fitnet"], holdout=16, final_seeds=[5],
                   space={"lr": "1e-3:4e-3"}, **QUIET)


def test_tune_input_errors_are_one_line(ofakd_cli, teacher_file, tmp_path):
    flags = tiny_flags(teacher_file)
    code, _, err = ofakd_cli("tune", *flags, "--out", str(tmp_path / "a"))
    assert code == 2 and "--budget N is needed to start a tuning" in err
    code, _, err = ofakd_cli("tune", *flags, "--budget", "2", "--out", str(tmp_path / "b"), "--space", "ofa.eps")
    assert code == 2 and "--space ofa.eps: write KEY=SPEC" in err
    code, _, err = ofakd_cli("tune", *flags, "--budget", "2", "--out", str(tmp_path / "c"), "--data.holdout", "10",
                             "--data.val_subset", "null")
    assert code == 2 and "data.holdout is what ofakd tune sets for its trials" in err
    code, _, err = ofakd_cli("tune", *flags, "--budget", "2", "--out", str(tmp_path / "d"), "--methods", "kdd")
    assert code == 2 and "unknown method 'kdd'" in err
    code, _, err = ofakd_cli("tune", *flags, "--budget", "2", "--out", str(tmp_path / "e"), "--space", "lr=1e-6:1e-5",
                             "--train.min_lr", "1e-4")
    assert code == 2 and "a trial of kd at lr 1e-06" in err and "must not exceed train.lr" in err


def test_a_journal_file_holds_the_study_for_workers_on_machines_sharing_a_file_system(teacher_file, tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    base = load_config("demo", tiny_overrides(teacher_file, epochs=1))
    result = ofakd.tune(base, budget=2, out=tmp_path / "tune", methods=["kd"], holdout=32, storage=str(journal),
                        study="pair-a", final_seeds=[], **QUIET)
    assert isinstance(open_storage(str(journal), heartbeat_s=1), optuna.storages.JournalStorage)
    study = optuna.load_study(study_name="pair-a", storage=open_storage(str(journal), heartbeat_s=1))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 and not (tmp_path / "tune" / "study.db").exists()
    assert result.finals == [] and "No final run has read it yet." in (tmp_path / "tune" / "report.md").read_text()
