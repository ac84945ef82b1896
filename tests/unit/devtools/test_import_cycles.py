"""The import-cycle check: small packages with and without cycles, and this repository."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from testbed_devtools.import_cycles import build_graph, main

REPO = Path(__file__).resolve().parents[3]


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``{"pkg/a.py": source}`` under ``root``; return ``root``."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def run(capsys, *roots: Path) -> tuple[int, str]:
    code = main([str(r) for r in roots])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_no_cycle_exits_0_and_counts(tmp_path, capsys):
    src = make_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import os\nimport pkg.b\n",
            "pkg/b.py": "from pkg.c import thing\n",
            "pkg/c.py": "thing = 1\n",
        },
    )
    code, out = run(capsys, src)
    assert code == 0, out
    assert "no cycles: 4 modules, 2 first-party imports" in out


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        pytest.param(
            {"pkg/a.py": "import pkg.b\n", "pkg/b.py": "import pkg.a\n"},
            "pkg.a -> pkg.b -> pkg.a",
            id="direct",
        ),
        pytest.param(
            {"pkg/a.py": "from .b import x\ny = 1\n", "pkg/b.py": "from .a import y\nx = 1\n"},
            "pkg.a -> pkg.b -> pkg.a",
            id="relative",
        ),
        pytest.param(
            {"pkg/a.py": "from pkg import b\n", "pkg/b.py": "from pkg import a\n"},
            "pkg.a -> pkg.b -> pkg.a",
            id="from-package-import-submodule",
        ),
        pytest.param(
            {"pkg/a.py": "from . import b\n", "pkg/b.py": "from . import a\n"},
            "pkg.a -> pkg.b -> pkg.a",
            id="from-dot-import-submodule",
        ),
        pytest.param(
            {
                "pkg/a.py": "import pkg.b\n",
                "pkg/b.py": "import pkg.sub.c\n",
                "pkg/sub/__init__.py": "",
                "pkg/sub/c.py": "from ..a import name\n",
            },
            "pkg.a -> pkg.b -> pkg.sub.c -> pkg.a",
            id="three-modules-relative-parent",
        ),
        pytest.param(
            {
                "pkg/a.py": "def lazy():\n    from pkg import b\n    return b\n",
                "pkg/b.py": "import pkg.a\n",
            },
            "pkg.a -> pkg.b -> pkg.a",
            id="function-level-import-counts",
        ),
        pytest.param(
            {
                "pkg/__init__.py": "from pkg.a import helper\nVERSION = 1\n",
                "pkg/a.py": "from pkg import VERSION\ndef helper():\n    return VERSION\n",
            },
            "pkg -> pkg.a -> pkg",
            id="submodule-imports-from-its-package-init",
        ),
    ],
)
def test_cycle_exits_1_and_names_the_modules(tmp_path, capsys, files, cycle):
    files.setdefault("pkg/__init__.py", "")
    src = make_tree(tmp_path, files)
    code, out = run(capsys, src)
    assert code == 1, out
    assert cycle in out
    assert "1 import cycle(s)" in out
    first = cycle.split(" -> ")[0]
    second = cycle.split(" -> ")[1]
    assert f"{first} imports {second} at " in out


def test_type_checking_imports_do_not_count(tmp_path, capsys):
    src = make_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": """\
                from __future__ import annotations
                import typing
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg.a import Thing
                if typing.TYPE_CHECKING:
                    import pkg.a
            """,
        },
    )
    code, out = run(capsys, src)
    assert code == 0, out


def test_else_branch_of_type_checking_counts(tmp_path, capsys):
    src = make_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    pass\nelse:\n    import pkg.a\n",
        },
    )
    code, out = run(capsys, src)
    assert code == 1
    assert "pkg.a -> pkg.b -> pkg.a" in out


def test_package_reexporting_submodules_is_not_a_cycle(tmp_path, capsys):
    """Importing pkg.b runs pkg/__init__ first, but that is not an edge: an __init__
    that re-exports submodules which import each other is the normal layout."""
    src = make_tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\nfrom pkg.b import g\n",
            "pkg/a.py": "from pkg.b import g\ndef f():\n    return g()\n",
            "pkg/b.py": "def g():\n    return 1\n",
        },
    )
    code, out = run(capsys, src)
    assert code == 0, out


def test_cycle_across_source_roots(tmp_path, capsys):
    one = make_tree(tmp_path / "one", {"alpha/__init__.py": "import beta\n"})
    two = make_tree(tmp_path / "two", {"beta/__init__.py": "from alpha import x\n"})
    code, out = run(capsys, one, two)
    assert code == 1
    assert "alpha -> beta -> alpha" in out


def test_third_party_and_stdlib_are_ignored(tmp_path):
    src = make_tree(
        tmp_path,
        {"pkg/__init__.py": "import json\nimport numpy as np\nfrom os import path\n"},
    )
    graph = build_graph([src])
    assert graph.edge_count == 0


def test_every_cycle_is_listed(tmp_path, capsys):
    src = make_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "import pkg.a\n",
            "pkg/x.py": "import pkg.y\n",
            "pkg/y.py": "import pkg.x\n",
        },
    )
    code, out = run(capsys, src)
    assert code == 1
    assert "2 import cycle(s)" in out
    assert "pkg.a -> pkg.b -> pkg.a" in out
    assert "pkg.x -> pkg.y -> pkg.x" in out


def test_relative_import_beyond_the_top_level_is_ignored(tmp_path):
    src = make_tree(tmp_path, {"pkg/__init__.py": "from .. import other\n", "other.py": ""})
    assert build_graph([src]).edge_count == 0


def test_bad_root_and_syntax_error_exit_2(tmp_path, capsys):
    code, out = run(capsys, tmp_path / "missing")
    assert code == 2
    assert "not a directory" in out
    src = make_tree(tmp_path / "src", {"pkg/__init__.py": "def broken(:\n"})
    code, out = run(capsys, src)
    assert code == 2
    assert "__init__.py:1: cannot parse" in out


def test_the_repository_has_no_import_cycle(capsys):
    roots = sorted((REPO / "packages").glob("*/src"))
    assert roots, "no packages/*/src under the repository"
    code, out = run(capsys, *roots)
    assert code == 0, out
