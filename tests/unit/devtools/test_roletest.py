"""testbed_devtools.roletest.assert_refused: the check every role's bad-input test
makes; each way a case can be wrong fails it."""

from __future__ import annotations

import pytest

from testbed_devtools.roletest import assert_refused

SPEC = "Validating arguments against arg spec 'main' - Some role"


def test_a_refusal_with_the_words_by_the_expected_task_passes():
    assert_refused(
        "x must be\n  an integer", "Assert x", "x must be an integer", spec_task=SPEC, by_spec=False
    )
    assert_refused("port: wrong type", SPEC, "port", spec_task=SPEC, by_spec=True)


@pytest.mark.parametrize(
    ("outcome", "task", "by_spec", "message"),
    [
        ("ok", "", False, "accepted"),
        ("y must be a list", "Assert y", False, "y must be a list"),
        ("x must be an integer", SPEC, False, "refused by"),
        ("x must be an integer", "Assert x", True, "refused by"),
    ],
)
def test_each_way_a_case_is_wrong_fails(outcome, task, by_spec, message):
    with pytest.raises(AssertionError, match=message):
        assert_refused(outcome, task, "x must be an integer", spec_task=SPEC, by_spec=by_spec)
