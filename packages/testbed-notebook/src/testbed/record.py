"""Record named values from a notebook so that ``run-notebook`` can collect them.

``record("mean_access_delay_ms", 181.2)`` emits a display output with the custom
MIME type ``application/x-testbed-record+json``; it is stored in the executed
notebook and read back by :func:`read_records`. This replaces scrapbook's
``glue`` (scrapbook is unmaintained) with a few lines the project owns.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD_MIME = "application/x-testbed-record+json"
_OUTPUT_TYPES = ("display_data", "execute_result", "update_display_data")


def _jsonable(value: Any) -> Any:
    """Convert numpy/pandas scalars, paths and dates to plain JSON values."""
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return None if math.isnan(value) else float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy / pandas scalars
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return _jsonable(item())
    tolist = getattr(value, "tolist", None)  # numpy arrays, pandas series
    if callable(tolist):
        return [_jsonable(v) for v in tolist()]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    raise TypeError(
        f"testbed.record: cannot record a value of type {type(value).__name__}; "
        "record numbers, strings, booleans, dates, or lists/dicts of them."
    )


def record(name: str, value: Any) -> Any:
    """Store ``value`` under ``name`` in the notebook's outputs and return it.

    The value must be JSON-like: numbers, strings, booleans, ``None``, dates,
    numpy/pandas scalars or arrays, lists and dicts of those.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"testbed.record: the name must be a non-empty string, got {name!r}; "
            'call it like record("mean_access_delay_ms", value).'
        )
    plain = _jsonable(value)
    json.dumps(plain)  # proves the value round-trips before it is stored
    text = f"{name} = {plain!r}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is not None and get_ipython() is not None:
        display({RECORD_MIME: {"name": name, "value": plain}, "text/plain": text}, raw=True)
    else:
        print(text)
    return value


def _cells(notebook: Any) -> list[Any]:
    if isinstance(notebook, str | os.PathLike):
        path = Path(notebook)
        with path.open(encoding="utf-8") as fh:
            notebook = json.load(fh)
    if not isinstance(notebook, Mapping) or "cells" not in notebook:
        raise ValueError("read_records: expected a notebook (path or nbformat dict with 'cells')")
    return list(notebook["cells"])


def read_records(notebook: Any) -> dict[str, Any]:
    """Return ``{name: value}`` of every :func:`record` call in an executed notebook.

    ``notebook`` is a path or an nbformat notebook/dict. A name recorded twice
    keeps its last value.
    """
    records: dict[str, Any] = {}
    for cell in _cells(notebook):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") not in _OUTPUT_TYPES:
                continue
            data = output.get("data", {}).get(RECORD_MIME)
            if isinstance(data, str):  # some writers keep JSON MIME data as text
                data = json.loads(data)
            if isinstance(data, Mapping) and "name" in data:
                records[str(data["name"])] = data.get("value")
    return records
