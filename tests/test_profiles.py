import pytest

from lecture_utils.profiles import PROFILES, SETTINGS, get_profile, settings


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
    [({"epochs": -1}, "epochs=-1 must be positive"), ({"epochs": "3"}, "expected int"),
     ({"epochs": 2.5}, "expected int"), ({"epoch": 3}, "unknown setting 'epoch'"), ({"epochs": True}, "expected int")],
)
def test_bad_overrides_name_the_parameter(override, message):
    with pytest.raises(ValueError, match=message):
        settings("demo", "smoke", **override)


def test_unknown_notebook():
    with pytest.raises(ValueError, match="known are"):
        settings("nope", "smoke")
