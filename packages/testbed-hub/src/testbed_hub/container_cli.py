"""``python -m testbed_hub.container_cli --user NAME``: a user's notebook container as JSON.

Reads the hub's settings (``--settings``, default ``/etc/jupyterhub/settings.json``),
validates them and prints :func:`testbed_hub.container.spec` on one line.
``playbooks/run-notebooks.yml`` and ``make bench`` start their containers from it.
Exit codes: 0 printed; 2 bad settings or arguments (message on stderr, naming the fix).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from testbed_hub.config import SettingsError, load, validate
from testbed_hub.container import spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed_hub.container_cli",
        description="Print the notebook container of a hub user as JSON (mounts, "
        "environment, network, host mapping) from the hub's settings.",
    )
    parser.add_argument("--settings", default="/etc/jupyterhub/settings.json")
    parser.add_argument("--user", required=True, help="JupyterHub user name (not the identity)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", args.user):
        print(
            f"--user {args.user!r} is not a JupyterHub user name of this hub "
            "(lower-case letters, digits and '-', e.g. alice-testbed-example-1a2b3c4d5e6f)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load(args.settings)
        validate(settings)
        out = spec(settings, args.user)
    except (SettingsError, LookupError) as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
