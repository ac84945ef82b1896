import itertools

import pytest

from testbed_devtools.waiting import parameterised_notebook, poll


def test_poll_returns_the_first_truthy_value():
    values = iter([None, [], {"ready": True}])
    assert poll("ready", lambda: next(values), timeout=5, every=0.01) == {"ready": True}


def test_poll_fails_naming_what_and_the_last_value():
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"server stopped: not within 0 s \(last: 0\)"):
        poll("server stopped", lambda: 0 * next(counter), timeout=0.05, every=0.01)


def test_the_notebook_has_a_parameters_cell_and_the_code():
    nb = parameterised_notebook("print(experiment_id)")
    assert [c["source"] for c in nb["cells"]] == ["experiment_id = None", "print(experiment_id)"]
    assert nb["cells"][0]["metadata"] == {"tags": ["parameters"]}
    assert nb["cells"][1]["metadata"] == {}
