"""Links in a batch's ``summary.html`` that work where researchers open it.

Why plain relative links fail inside JupyterLab: its HTML viewer shows the file in
an ``<iframe>`` (a ``blob:`` URL, sandboxed with ``allow-same-origin``; "Trust HTML"
adds ``allow-scripts`` and ``allow-popups``) and inserts
``<base href="<server>/files/<path of the file>" target="_self">`` so that relative
URLs resolve against the file's folder (jupyterlab/jupyterlab,
packages/htmlviewer/src/widget.tsx). A relative link thus names the right file
but opens it *inside that iframe*, and every answer of a JupyterHub single-user
server carries ``Content-Security-Policy: frame-ancestors 'none'``
(jupyterhub/singleuser/extension.py): the browser refuses to show it in a frame
and draws "localhost refused to connect" instead.

So the summary's links open a new browser tab (``target="_blank"``). The viewer
lets them once the file is trusted (its toolbar's "Trust HTML": JupyterLab >= 4.1
grants ``allow-popups`` to trusted HTML, jupyterlab/jupyterlab#14933); while it is
not, JupyterLab marks such links "Action disabled as the file is not trusted."
A notebook's link is JupyterLab's URL for it, ``<server prefix>lab/tree/<path
below the server's root>`` (:class:`LabServer`), so it opens in JupyterLab rather
than as JSON; an HTML file's link stays relative (``experiments/exp-001.html``),
which the viewer's ``<base>``, the server's ``files/`` URL and a downloaded copy
all resolve.

The same page opened on its own (the file browser's "Open in New Browser Tab",
the server's ``files/`` URL) is sandboxed by jupyter_server without popups
(``Content-Security-Policy: ... sandbox allow-scripts``), so ``_blank`` links
would do nothing there: :data:`SAME_TAB_SCRIPT` drops the targets when the page
is not in a frame.

A tab opened from the viewer keeps the viewer's sandbox (browsers copy it to the
pages a sandboxed frame opens, ``rel="noopener"`` or not): JupyterLab works in
it, but the browser blocks downloads and dialogs there, the warning about
unsaved changes on leaving included.

Checked in Chromium against a stand-in of the three (the viewer's frame, the
hub's and jupyter_server's headers): a relative link in the viewer ends on
Chromium's error page ("Framing ... violates ... frame-ancestors 'none'"), these
links open the notebook's ``lab/tree`` URL and the HTML in a new tab once
trusted, in the same tab from the ``files/`` URL and from a downloaded copy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

#: JupyterHub sets both in the environment of a single-user server (and so of its
#: terminals and kernels): the server's URL path and its root folder.
PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"
ROOT_ENV = "JUPYTERHUB_ROOT_DIR"

#: Follow links in the same tab when the page is not in a frame (see the module
#: docstring); inside JupyterLab's viewer it runs only when the file is trusted.
SAME_TAB_SCRIPT = (
    "<script>if (window.top === window) "
    'document.querySelectorAll("a[target]").forEach(a => a.removeAttribute("target"));'
    "</script>"
)


def path_below(path: str | Path, root: str | Path) -> PurePosixPath | None:
    """``path`` relative to ``root`` as JupyterLab names it, None when it is not below.

    Tried as written (made absolute, ``..`` collapsed) and then with symbolic links
    resolved, as a folder linked into the root is browsed under the link's name.
    """
    pairs = (
        (Path(os.path.abspath(path)), Path(os.path.abspath(root))),
        (Path(path).resolve(), Path(root).resolve()),
    )
    for full, top in pairs:
        try:
            rel = full.relative_to(top)
        except ValueError:
            continue
        return PurePosixPath(rel.as_posix())
    return None


def url_path(path: PurePosixPath | str) -> str:
    """A relative POSIX path as a URL path: each part percent-encoded, ``/`` kept."""
    return quote(str(PurePosixPath(path)), safe="/")


def relative_href(target: str | Path, start: str | Path) -> str:
    """A link from a page in folder ``start`` to the file ``target``."""
    return url_path(Path(os.path.relpath(Path(target), Path(start))).as_posix())


def lab_tree_url(prefix: str, path: PurePosixPath | str) -> str:
    """JupyterLab's URL that opens ``path`` (below the server's root) in JupyterLab:
    ``lab_tree_url("/jupyter/user/alice/", "runs/a b.ipynb")`` ->
    ``/jupyter/user/alice/lab/tree/runs/a%20b.ipynb``."""
    base = prefix.strip("/")
    return f"/{base}/lab/tree/{url_path(path)}" if base else f"/lab/tree/{url_path(path)}"


@dataclass(frozen=True)
class LabServer:
    """The JupyterLab server the summary's notebook links open the notebooks in.

    - ``prefix``: the server's URL path, e.g. ``/jupyter/user/alice/``;
    - ``root``: its root folder (the top of JupyterLab's file browser), e.g.
      ``/home/jovyan/nist``.
    """

    prefix: str
    root: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> LabServer | None:
        """The server whose terminal or kernel this is; None outside a JupyterHub
        server (then the summary has relative links only)."""
        environ = os.environ if environ is None else environ
        prefix, root = environ.get(PREFIX_ENV), environ.get(ROOT_ENV)
        if not prefix or not root:
            return None
        return cls(prefix, Path(root))

    def notebook_url(self, notebook: str | Path) -> str | None:
        """The URL that opens ``notebook`` in JupyterLab; None when it lies outside
        the server's root (JupyterLab cannot open it)."""
        rel = path_below(notebook, self.root)
        return None if rel is None else lab_tree_url(self.prefix, rel)
