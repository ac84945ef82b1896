"""testbed.record / read_records: values survive the trip through a notebook's outputs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from testbed import RECORD_MIME, read_records, record
from testbed.record import _jsonable


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float64(2.5), 2.5),
        (np.int64(7), 7),
        (np.bool_(True), True),
        (np.array([1, 2, 3]), [1, 2, 3]),
        (float("nan"), None),
        (dt.datetime(2024, 3, 4, 9, 0), "2024-03-04T09:00:00"),
        (Path("/a/b.wav"), "/a/b.wav"),
        ({"a": np.float32(0.5), 1: (1, 2)}, {"a": 0.5, "1": [1, 2]}),
    ],
)
def test_values_become_plain_json(value, expected):
    plain = _jsonable(value)
    assert plain == expected
    assert json.loads(json.dumps(plain)) == expected


def test_unsupported_value_is_refused_with_advice():
    with pytest.raises(TypeError, match="cannot record a value of type object; record numbers"):
        record("thing", object())


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_name_must_be_a_string(name):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        record(name, 1)


def test_outside_ipython_prints_and_returns_the_value(capsys):
    assert record("mean_ms", np.float64(12.5)) == 12.5
    assert capsys.readouterr().out == "mean_ms = 12.5\n"


def _output(name, value, output_type="display_data"):
    return {
        "output_type": output_type,
        "data": {RECORD_MIME: {"name": name, "value": value}, "text/plain": "x"},
        "metadata": {},
    }


def test_read_records_last_value_wins_and_other_outputs_are_ignored(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "hi"},
            {
                "cell_type": "code",
                "outputs": [
                    _output("a", 1),
                    {"output_type": "stream", "name": "stdout", "text": "a = 9"},
                    {"output_type": "display_data", "data": {"text/plain": "a = 5"}},
                ],
            },
            {
                "cell_type": "code",
                "outputs": [_output("a", 2, "execute_result"), _output("b", [1])],
            },
        ]
    }
    assert read_records(nb) == {"a": 2, "b": [1]}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    assert read_records(path) == {"a": 2, "b": [1]}


def test_read_records_rejects_non_notebooks():
    with pytest.raises(ValueError, match="expected a notebook"):
        read_records({"not": "a notebook"})
