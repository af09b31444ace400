import pytest

from lecture_utils.profiles import PARAMETERS, PROFILES, SETTINGS, TIME_LIMITS, get_profile, settings


def test_env_var_selects_the_profile(monkeypatch):
    monkeypatch.setenv("LECTURE_PROFILE", "full")
    assert get_profile() == "full"
    monkeypatch.delenv("LECTURE_PROFILE")
    assert get_profile() == "default"
    assert get_profile("Smoke") == "smoke"


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match="smoke, default, full"):
        get_profile("fast")


def test_every_table_has_the_same_keys_at_every_profile():
    for name, table in SETTINGS.items():
        assert set(table) == set(PROFILES), name
        keys = {p: set(table[p]) for p in PROFILES}
        assert keys["smoke"] == keys["default"] == keys["full"], name


def test_none_takes_the_profile_value_and_overrides_win():
    assert settings("demo", "smoke", epochs=None) == SETTINGS["demo"]["smoke"]
    assert settings("demo", "smoke", epochs=3)["epochs"] == 3


@pytest.mark.parametrize(
    "override, message",
    [({"epochs": -1}, r"EPOCHS=-1 is out of range: allowed is an int > 0"),
     ({"epochs": "3"}, "EPOCHS='3' has type str: allowed is an int > 0"),
     ({"epochs": 2.5}, "has type float: allowed is an int"), ({"epoch": 3}, "unknown setting 'epoch'"),
     ({"epochs": True}, "has type bool"), ({"seed": -1}, "SEED=-1 is not allowed: it must be an int >= 0"),
     ({"dataset": "cifar10"}, "DATASET='cifar10' is not allowed here: allowed are 'digits', 'mnist'")],
)
def test_bad_overrides_name_the_parameter(override, message):
    with pytest.raises(ValueError, match=message):
        settings("demo", "smoke", **override)


def test_unknown_notebook():
    with pytest.raises(ValueError, match="known are"):
        settings("nope", "smoke")


def test_fixed_parameters_are_checked_and_returned():
    cfg = settings("elastic", "smoke", dataset="digits", seed=3, lr=1, alpha=0, sigma=4.0)
    assert cfg["dataset"] == "digits" and cfg["seed"] == 3 and cfg["lr"] == 1.0 and isinstance(cfg["lr"], float)
    assert cfg.explicit == frozenset() and cfg.profile == "smoke"
    assert settings("elastic", "smoke", n_train=10).explicit == {"n_train"}
    assert set(PARAMETERS) == set(SETTINGS) and set(TIME_LIMITS) == set(PROFILES)


def test_notebook_names_and_datasets_agree_with_the_data_module():
    from lecture_utils.data import DATASETS, SIZES

    assert set(SIZES) == set(DATASETS)
    for name, params in PARAMETERS.items():
        assert set(params["dataset"]) <= set(DATASETS), name
