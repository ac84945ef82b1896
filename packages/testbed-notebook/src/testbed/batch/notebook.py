"""Read a notebook's ``parameters`` cell without running it."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import TestbedError

PARAMETERS_TAG = "parameters"


class NotebookError(TestbedError):
    """The notebook cannot be used for a batch run."""


@dataclass(frozen=True)
class NotebookInfo:
    path: Path
    parameters: tuple[str, ...]
    kernel_name: str | None
    language: str | None


def _assigned_names(source: str, path: Path) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookError(
            f"{path}: the cell tagged '{PARAMETERS_TAG}' is not valid Python "
            f"(line {exc.lineno}: {exc.msg}); fix it in JupyterLab and save."
        ) from None
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            elts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
            for elt in elts:
                if isinstance(elt, ast.Name) and elt.id not in names:
                    names.append(elt.id)
    return names


def inspect_notebook(path: str | Path) -> NotebookInfo:
    """Parameters (names assigned in the cell tagged ``parameters``) and kernel of a notebook."""
    path = Path(path)
    if not path.is_file():
        where = "it is a directory" if path.is_dir() else "no such file"
        raise NotebookError(f"Notebook {path} cannot be read: {where}. Give the .ipynb path.")
    try:
        with path.open(encoding="utf-8") as fh:
            nb = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookError(f"Notebook {path} is not a readable .ipynb file: {exc}") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise NotebookError(f"Notebook {path} has no 'cells' list: is it a Jupyter notebook?")
    param_cells = [
        c
        for c in cells
        if c.get("cell_type") == "code"
        and PARAMETERS_TAG in (c.get("metadata", {}).get("tags") or [])
    ]
    if not param_cells:
        raise NotebookError(
            f"Notebook {path} has no cell tagged '{PARAMETERS_TAG}', so there is nowhere to "
            "inject the experiment. In JupyterLab select the cell that sets the defaults "
            '(e.g. experiment_id = "exp-001"), open the property inspector (gear icon, '
            f"right sidebar), add the tag '{PARAMETERS_TAG}' and save."
        )
    source = param_cells[0].get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    meta = nb.get("metadata", {}) or {}
    kernel = (meta.get("kernelspec") or {}).get("name")
    language = (meta.get("kernelspec") or {}).get("language") or (
        meta.get("language_info") or {}
    ).get("name")
    if language not in (None, "python"):
        raise NotebookError(
            f"Notebook {path} uses a {language} kernel; run-notebook reads parameters of "
            "Python notebooks only."
        )
    return NotebookInfo(path, tuple(_assigned_names(source, path)), kernel, language)
