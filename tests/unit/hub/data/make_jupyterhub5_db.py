"""Write jupyterhub-5.5.4.sql: a hub database as JupyterHub 5.5.4 leaves it, as SQL text.

The fixture of ``tests/unit/hub/test_hub_database.py`` (the previous release's
database, upgraded by ``testbed_hub.database``). Made with JupyterHub 5.5.4 itself,
in a throw-away virtualenv (the project's ``.venv`` has the current JupyterHub)::

    python3 -m venv /tmp/jh5 && /tmp/jh5/bin/pip install jupyterhub==5.5.4
    /tmp/jh5/bin/python tests/unit/hub/data/make_jupyterhub5_db.py

JupyterHub's own start-up (``JupyterHub.initialize``: database, roles, users) writes
the database: ``alice`` an admin (the ``admin`` role and the admin flag), ``bob`` a
user, ``alice``'s default server with the state DockerSpawner 14 keeps for a
container (no ``started_image``: the previous testbed_hub did not record it). The
tests rebuild the file with ``sqlite3.executescript``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).with_name("jupyterhub-5.5.4.sql")


async def _initialize(path: str) -> None:
    from jupyterhub import orm
    from jupyterhub.app import JupyterHub
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.db_url = "sqlite:///" + path
    c.JupyterHub.cookie_secret_file = os.path.join(os.path.dirname(path), "cookie_secret")
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.admin_users = {"alice"}
    c.Authenticator.allowed_users = {"bob"}
    app = JupyterHub(config=c)
    await app.initialize([])
    alice = orm.User.find(app.db, "alice")
    app.db.add(
        orm.Spawner(
            user=alice,
            name="",
            state={"object_id": "0123456789ab" * 5 + "0123", "object_name": "jupyter-alice"},
        )
    )
    app.db.commit()
    app.db.close()


def main() -> int:
    import jupyterhub

    if jupyterhub.__version__ != "5.5.4":
        print(f"run this with JupyterHub 5.5.4, not {jupyterhub.__version__}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jupyterhub.sqlite")
        asyncio.run(_initialize(path))
        con = sqlite3.connect(path)
        lines = list(con.iterdump())
        con.close()
    header = (
        "-- A JupyterHub 5.5.4 hub database (alembic revision 4621fec11365), written by\n"
        "-- tests/unit/hub/data/make_jupyterhub5_db.py; do not edit by hand.\n"
    )
    OUT.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
