"""The ``testbed-sim-mongo`` command: JSON config (the role writes it), flags, serve."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from testbed_sim import seed as seed_mod
from testbed_sim.jsonconfig import read_json_object
from testbed_sim.mongo.server import MongoStandIn

# The package's logger name, as before the split into modules.
log = logging.getLogger("testbed_sim.mongo")

CONFIG_KEYS = {
    "host",
    "port",
    "database",
    "seed",
    "experiments",
    "users",
    "users_file",
    "nist_media_dir",
}


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    cfg = read_json_object(path)
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise ValueError(
            f"config file {path}: unknown keys {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}"
        )
    return cfg


def _users_from(cfg: Mapping[str, Any]) -> dict[str, str]:
    users = cfg.get("users") or []
    if cfg.get("users_file"):
        path = Path(cfg["users_file"])
        try:
            users = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read users_file {path}: {exc}") from exc
    out = {}
    if not isinstance(users, list):
        raise ValueError("users must be a list of {name, password} objects")
    for u in users:
        if not isinstance(u, Mapping) or not u.get("name") or not u.get("password"):
            raise ValueError("each user needs a non-empty 'name' and 'password'")
        out[str(u["name"])] = str(u["password"])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="testbed-sim-mongo",
        description="MongoDB wire-protocol stand-in serving the testbed seed data.",
    )
    p.add_argument("--config", type=Path, help=f"JSON config file (keys: {sorted(CONFIG_KEYS)})")
    p.add_argument(
        "--host",
        action="append",
        help="listen address, repeat for several (default 127.0.0.1); the config's "
        '"host" is one address or a list',
    )
    p.add_argument("--port", type=int, help="listen port (default 27017)")
    p.add_argument("--database", help="database name (default testbed)")
    p.add_argument("--seed", type=int, help="seed for the generated data")
    p.add_argument("--experiments", type=int, help="number of experiments (default 24)")
    p.add_argument(
        "--nist-media-dir",
        help="serve each experiment's NIST tests (<dir>/<experiment>/nist/nist.json, "
        "written by testbed-sim-seed --nist) under its document's nist key",
    )
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        cfg = load_config(args.config)
        for key in ("host", "port", "database", "seed", "experiments", "nist_media_dir"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        hosts = cfg.get("host", "127.0.0.1")
        hosts = [hosts] if isinstance(hosts, str) else hosts
        if (
            not isinstance(hosts, list)
            or not hosts
            or not all(isinstance(h, str) and h for h in hosts)
        ):
            raise ValueError(f"host must be an address or a non-empty list of them, got {hosts!r}")
        port = cfg.get("port", 27017)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        users = _users_from(cfg)
        nist_media_dir = cfg.get("nist_media_dir")
        if nist_media_dir is not None and (
            not isinstance(nist_media_dir, str) or not nist_media_dir.startswith("/")
        ):
            raise ValueError(
                f"nist_media_dir must be an absolute path (the recordings folder), "
                f"got {nist_media_dir!r}"
            )
        seed_mod.generate(int(cfg.get("seed", seed_mod.DEFAULT_SEED)), cfg.get("experiments", 24))
        if args.check_config:
            print(f"{args.config}: ok ({len(users)} users)")
            return 0
        server = MongoStandIn(
            host=hosts,
            port=port,
            database=str(cfg.get("database", seed_mod.DATABASE)),
            seed=int(cfg.get("seed", seed_mod.DEFAULT_SEED)),
            experiments=int(cfg.get("experiments", seed_mod.DEFAULT_EXPERIMENTS)),
            users=users,
            nist_media_dir=nist_media_dir,
        )
        server.start()
    except (ValueError, OSError) as exc:
        print(f"testbed-sim-mongo: {exc}", file=sys.stderr)
        return 2
    data = server.data
    log.info(
        "serving database %r (%d experiments, %d ptt_events) on %s:%d%s",
        cfg.get("database", seed_mod.DATABASE),
        len(data.experiments) if data else 0,
        len(data.ptt_events) if data else 0,
        " and ".join(hosts),
        server.port,
        ", SCRAM-SHA-256 auth" if server.dispatcher.auth_enabled else "",
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
