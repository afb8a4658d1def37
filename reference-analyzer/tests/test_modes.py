import pytest

from reference_analyzer.modes import Behaviour, Mode, ModeError, Signing, resolve

pytestmark = pytest.mark.unit


def test_no_metadata_means_the_configured_behaviour():
    assert resolve({}) == Behaviour()
    assert resolve({}, default_mode=Mode.SILENT, default_fail_first=2) == Behaviour(
        mode=Mode.SILENT, fail_first=2
    )


def test_metadata_overrides_the_configuration():
    behaviour = resolve(
        {
            "reference.mode": "TWICE",
            "reference.fail_first": "3",
            "reference.delay_seconds": "0.5",
            "reference.sign": "false",
            "unrelated": "kept for the caller",
        },
        default_mode=Mode.SLOW,
        default_fail_first=1,
        slow_delay_seconds=9,
    )
    assert behaviour == Behaviour(Mode.TWICE, 3, 0.5, Signing.OFF)


def test_slow_uses_the_configured_delay_unless_one_is_given():
    assert resolve({"reference.mode": "slow"}, slow_delay_seconds=7).delay_seconds == 7
    given = {"reference.mode": "slow", "reference.delay_seconds": "2"}
    assert resolve(given, slow_delay_seconds=7).delay_seconds == 2
    assert resolve({"reference.mode": "normal"}, default_mode=Mode.SLOW).delay_seconds == 0


@pytest.mark.parametrize(
    "metadata",
    [
        {"reference.mode": "sleepy"},
        {"reference.fail_first": "-1"},
        {"reference.fail_first": "two"},
        {"reference.delay_seconds": "nan"},
        {"reference.delay_seconds": "-1"},
        {"reference.sign": "maybe"},
        {"reference.failfirst": "2"},
    ],
)
def test_invalid_test_mode_metadata_is_refused(metadata):
    with pytest.raises(ModeError):
        resolve(metadata)
