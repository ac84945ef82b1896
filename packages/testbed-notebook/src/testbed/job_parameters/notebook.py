"""A notebook's parameters as the Create Job form takes them (see :mod:`testbed.job_parameters`)."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testbed.batch.notebook import PARAMETERS_TAG
from testbed.batch.runner import parse_value


@dataclass(frozen=True)
class JobParameter:
    """One name the parameters cell assigns.

    ``value``: the default as ``run-notebook -p`` text, or ``None`` when the default is
    not a literal that text can carry (the form leaves such a parameter out).
    """

    name: str
    value: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


def as_parameter_text(value: Any) -> str | None:
    """``value`` as the text ``run-notebook -p`` (:func:`testbed.batch.runner.parse_value`)
    reads back as an equal value of the same type; ``None`` when there is no such text
    (a tuple, a set, bytes, a dict with keys that are not strings)."""
    if isinstance(value, str) and _same(parse_value(value), value):
        return value
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return text if _same(parse_value(text), value) else None


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def job_parameters(nb: Mapping[str, Any]) -> list[JobParameter]:
    """The parameters of a notebook (its JSON as a mapping, nbformat 4), in the order the
    first code cell tagged ``parameters`` assigns them; ``[]`` when there is no such cell.

    Raises ``SyntaxError`` when that cell is not valid Python.
    """
    cells = nb.get("cells") or []
    for cell in cells:
        tags = (cell.get("metadata") or {}).get("tags") or []
        if cell.get("cell_type") == "code" and PARAMETERS_TAG in tags:
            source = cell.get("source", "")
            return _assignments("".join(source) if isinstance(source, list) else source)
    return []


def _assignments(source: str) -> list[JobParameter]:
    found: dict[str, str | None] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = _literal_text(value)
            elif isinstance(target, ast.Tuple | ast.List):
                # a, b = 1, 2: each name's own value is not worth guessing here
                for elt in target.elts:
                    if isinstance(elt, ast.Name):
                        found[elt.id] = None
    return [JobParameter(name, text) for name, text in found.items()]


def _literal_text(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return as_parameter_text(value)
