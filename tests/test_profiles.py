"""settings(PROFILE, SIZES, ...): the sizes of a profile from the notebook's own table, every value checked."""

import pytest
import torch

from lecture_utils.data import Data
from lecture_utils.profiles import (PROFILES, RULES, SCHEDULES, TIME_LIMITS, cap_to_data, check_size, get_profile,
                                    settings)

SIZES = {
    "N_TRAIN": {"smoke": 500, "default": 1_000, "full": 60_000},
    "N_TEST": {"smoke": 300, "default": 2_000, "full": 10_000},
    "EPOCHS": {"smoke": 2, "default": 40, "full": 40},
    "WIDTH": {"smoke": 0.25, "default": 0.5, "full": 1},  # an int may stand for a float
}


def test_env_var_selects_the_profile(monkeypatch):
    monkeypatch.setenv("LECTURE_PROFILE", "full")
    assert get_profile() == "full"
    monkeypatch.delenv("LECTURE_PROFILE")
    assert get_profile() == "default"
    assert get_profile("Smoke") == "smoke"
    assert set(TIME_LIMITS) == set(PROFILES)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match="smoke, default, full"):
        get_profile("fast")


def test_the_profiles_sizes_come_back_with_lower_case_keys_and_checked_parameters():
    cfg = settings("smoke", SIZES, dataset="digits", datasets=("mnist", "digits"), seed=3, lr=1, schedule=None)
    assert cfg == {"n_train": 500, "n_test": 300, "epochs": 2, "width": 0.25, "dataset": "digits", "seed": 3,
                   "lr": 1.0, "schedule": None}
    assert isinstance(cfg["lr"], float)
    full = settings("full", SIZES)
    assert full["n_train"] == 60_000 and full["width"] == 1.0 and isinstance(full["width"], float)


@pytest.mark.parametrize("parameters, message", [
    ({"seed": -1}, r"SEED=-1 is out of range: allowed is an int >= 0 and < 2\*\*63"),
    ({"seed": 2**63}, r"SEED=9223372036854775808 is out of range"),
    ({"seed": 1.0}, "SEED=1.0 has type float: allowed is an int"),
    ({"lr": float("inf")}, "LR=inf is not a finite number: allowed is a finite number > 0"),
    ({"lr": "fast"}, "LR='fast' has type str: allowed is a finite number > 0"),
    ({"lr": 0}, "LR=0 is out of range: allowed is a finite number > 0"),
    ({"alpha": -1.0}, "ALPHA=-1.0 is out of range: allowed is a finite number >= 0"),
    ({"sigma": True}, "SIGMA=True has type bool"),
    ({"schedule": "exponential"}, "SCHEDULE='exponential' is not allowed here: allowed are None, 'constant'"),
    ({"dataset": "svhn", "datasets": ("mnist", "digits")}, "DATASET='svhn' is not allowed here: allowed are "
                                                           "'mnist', 'digits'"),
    ({"epoch": 3}, "unknown parameter 'epoch': settings knows dataset, seed, lr"),
    ({"epochs": 3}, "unknown parameter 'epochs'.*a size goes into SIZES"),
])
def test_bad_parameters_name_the_parameter_the_value_and_what_is_allowed(parameters, message):
    with pytest.raises(ValueError, match=message):
        settings("smoke", SIZES, **parameters)


@pytest.mark.parametrize("entry, message", [
    ({"smoke": 2, "default": -1, "full": 3}, "EPOCHS=-1 at profile default is out of range: allowed is an int > 0"),
    ({"smoke": 0, "default": 1, "full": 3}, "EPOCHS=0 is out of range"),  # the profile in use: no "at profile"
    ({"smoke": 2, "default": "40", "full": 3}, r"SIZES\['EPOCHS'\] must hold one type at every profile .*"
                                               "default str"),
    ({"smoke": 2, "full": 3}, r"SIZES\['EPOCHS'\] has no value for default: every entry gives smoke, default, full"),
    ({"smoke": 2, "default": 3, "full": 3, "fast": 1}, "has unknown profile 'fast'"),
    ({"smoke": True, "default": 3, "full": 3}, "must hold one type"),
    (5, r"SIZES\['EPOCHS'\] must be a dict \{profile: value\}"),
])
def test_a_broken_sizes_entry_is_a_one_line_error(entry, message):
    with pytest.raises(ValueError, match=message) as info:
        settings("smoke", {"EPOCHS": entry})
    assert "\n" not in str(info.value)


def test_sizes_keys_and_collisions():
    with pytest.raises(ValueError, match="SIZES key 'epochs' must be an upper-case name"):
        settings("smoke", {"epochs": {"smoke": 1, "default": 1, "full": 1}})
    with pytest.raises(ValueError, match="SIZES must be a dict"):
        settings("smoke", [("EPOCHS", 1)])
    with pytest.raises(ValueError, match="SEED is both a SIZES entry and seed="):
        settings("smoke", {"SEED": {"smoke": 1, "default": 1, "full": 1}}, seed=1)
    with pytest.raises(ValueError, match="N_MONITOR=600 is larger than N_TEST=300"):
        settings("smoke", {**SIZES, "N_MONITOR": {"smoke": 600, "default": 500, "full": 500}})
    with pytest.raises(ValueError, match="datasets must be a tuple of data set names"):
        settings("smoke", SIZES, dataset="mnist", datasets="mnist")


def test_a_size_with_a_rule_of_its_own_may_be_zero():
    cfg = settings("smoke", {"ALPHA": {"smoke": 0.0, "default": 34.0, "full": 34.0}})
    assert cfg["alpha"] == 0.0
    schedule = {"SCHEDULE": {"smoke": "cosine", "default": "cosine", "full": "step"}}
    assert settings("full", schedule)["schedule"] == "step"
    with pytest.raises(ValueError, match="SCHEDULE='exp' at profile full is not allowed here"):
        settings("smoke", {"SCHEDULE": {**schedule["SCHEDULE"], "full": "exp"}})


@pytest.mark.parametrize("value, message", [
    (-1, "EPOCHS=-1 is out of range: allowed is an int > 0"), ("3", "EPOCHS='3' has type str: allowed is an int > 0"),
    (2.5, "EPOCHS=2.5 has type float: allowed is an int > 0"), (True, "EPOCHS=True has type bool"),
])
def test_an_override_keeps_the_entrys_type_and_is_positive(value, message):
    with pytest.raises(ValueError, match=message):
        check_size("EPOCHS", value, SIZES["EPOCHS"])
    assert check_size("EPOCHS", 3, SIZES["EPOCHS"]) == 3
    assert check_size("WIDTH", 2, SIZES["WIDTH"]) == 2.0  # an int may stand for a float


def test_schedules_and_rules_agree_with_train():
    from lecture_utils import train

    assert SCHEDULES == train.SCHEDULES
    assert {"seed", "lr", "sigma", "alpha", "schedule"} <= set(RULES)


def mirror(n_train, n_test, fallback_reason=""):
    x, y = torch.zeros(n_train, 1, 28, 28, dtype=torch.uint8), torch.zeros(n_train, dtype=torch.long)
    return Data("digits" if fallback_reason else "mnist", x, y, x[:n_test], y[:n_test], classes=tuple("0123456789"),
                fallback_reason=fallback_reason)


def test_cap_to_data_cuts_a_size_on_the_fallback_with_a_note(capsys):
    cfg = settings("full", {**SIZES, "N_MONITOR": {"smoke": 100, "default": 500, "full": 2_000}})
    capped = cap_to_data(cfg, mirror(1_437, 360, fallback_reason="mnist could not be loaded (test)"))
    assert (capped["n_train"], capped["n_test"], capped["n_monitor"], capped["epochs"]) == (1_437, 360, 360, 40)
    out = capsys.readouterr().out
    assert "N_TRAIN: 60,000 is more than the 1,437 train images of digits (the fallback) in use: using 1,437" in out
    assert cfg["n_train"] == 60_000  # the caller's dict is left as it was


def test_cap_to_data_refuses_a_size_larger_than_the_data_asked_for():
    with pytest.raises(ValueError, match=r"N_TRAIN=60,000 is larger than the 100 train images of mnist: "
                                         r"allowed is 1 to 100"):
        cap_to_data(settings("full", SIZES), mirror(100, 50))
    assert cap_to_data(settings("smoke", {"N_TRAIN": SIZES["N_TRAIN"]}), mirror(500, 50)) == {"n_train": 500}
    with pytest.raises(TypeError, match="cfg must be the dict settings"):
        cap_to_data([("n_train", 5)], mirror(100, 50))


def test_measured_times_written_by_the_runner_are_what_the_sizes_table_shows(tmp_path):
    from types import SimpleNamespace

    from lecture_utils.course.summary import update_times
    from lecture_utils.profiles import read_times, sizes_table

    path = tmp_path / "measured_times.json"
    ok = SimpleNamespace(status="ok", profile="default", notebook="02_x", seconds=412.4, date="2026-12-04T10:00:00Z",
                         cpu="AMD EPYC 7B13", dataset="mnist")
    failed = SimpleNamespace(status="failed", profile="smoke", notebook="02_x", seconds=3.0, date="2026-12-04",
                             cpu="x", dataset="mnist")
    update_times(path, [ok, failed])
    times = read_times(path, "02_x")
    assert list(times) == ["default"] and times["default"].startswith("412 s on ")
    assert "AMD EPYC 7B13, 2026-12-04" in times["default"]
    table = sizes_table({"EPOCHS": {"smoke": 2, "default": 40, "full": 40}}, times)
    assert "EPOCHS" in table and "40" in table and "smoke    not measured" in table and "412 s" in table
    assert read_times(tmp_path / "missing.json", "02_x") == {} and read_times(path, "other") == {}
