"""``python -m testbed_hub.audit {append,verify,report,rotate} --log FILE ...``

``append --event E --identity I [--user U] [--source IP] [--object TEXT | --object-json JSON]
[--details JSON]``
    appends one record, prints it (one JSON line).
``verify``
    prints ``intact: N records in F files, last seq S, last hash H``, or the first problem.
``report [--since T] [--until T] [--user U] [--identity I] [--experiment X] [--event E]
[--csv]``
    prints the matching records as JSON Lines, or as CSV with ``--csv``.
``rotate [--keep N] [--identity I]``
    rotates the log (``--keep``: delete rotated files beyond ``.N``), prints the rotate record.
``collect-nginx --socket PATH [--hub-path /jupyter/] [--group www-data]``
    the nginx-log collector (:mod:`.nginx`): receives nginx's audit datagrams on a unix
    socket and appends ``file_read`` / ``export`` records until stopped (SIGTERM/SIGINT).
    Takes the socket from systemd (socket activation) when it passes one, else binds it.

Exit status: 0 done (verify: intact); 1 the log is damaged (verify failed, or append /
rotate / report refused a damaged file; the message names the file and line); 2 bad
input or refused (message on stderr; nothing was written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys

from .log import AuditError, AuditLog, rotate
from .record import EVENTS, canonical
from .report import report, to_csv
from .verify import verify


def _json(flag: str):
    def parse(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{flag} is not JSON ({e}): {text!r}") from e

    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m testbed_hub.audit",
        description="The tamper-evident audit log: append a record, verify the chain, report "
        "records, rotate the file.",
    )
    sub = ap.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log", required=True, help="the audit log, e.g. /var/log/testbed/audit.log"
    )

    a = sub.add_parser("append", parents=[common], help="append one record")
    a.add_argument("--event", required=True, choices=[e for e in EVENTS if e != "rotate"])
    a.add_argument("--identity", required=True, help="testbed identity or operator name")
    a.add_argument("--user", help="JupyterHub user name")
    a.add_argument("--source", help="client IP address")
    obj = a.add_mutually_exclusive_group()
    obj.add_argument("--object", help="what was touched, as text (a path, a server name)")
    obj.add_argument(
        "--object-json", type=_json("--object-json"), help='as JSON, e.g. \'["e41", "e42"]\''
    )
    a.add_argument("--details", type=_json("--details"), help="a JSON object, e.g. '{\"n\": 3}'")

    sub.add_parser("verify", parents=[common], help="check the whole chain")

    r = sub.add_parser("report", parents=[common], help="print matching records")
    r.add_argument("--since", help="from this UTC date/time on, e.g. 2025-03-01")
    r.add_argument("--until", help="before this UTC date/time")
    r.add_argument("--user")
    r.add_argument("--identity")
    r.add_argument("--experiment", help="an experiment id in the object or details")
    r.add_argument("--event", choices=list(EVENTS))
    r.add_argument("--csv", action="store_true", help="CSV instead of JSON Lines")

    o = sub.add_parser("rotate", parents=[common], help="start a new file, linked to the old")
    o.add_argument("--keep", type=int, help="delete rotated files beyond .N (default: keep all)")
    o.add_argument("--identity", help="who rotates (default: the user running this)")

    c = sub.add_parser(
        "collect-nginx", parents=[common], help="record file reads and exports nginx reports"
    )
    c.add_argument("--socket", required=True, help="the unix datagram socket nginx sends to")
    c.add_argument("--hub-path", default="/jupyter/", help="the hub's base URL (default /jupyter/)")
    c.add_argument("--group", help="group that may send (nginx's workers', e.g. www-data)")
    return ap


def _collect(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .nginx import bind, serve

    if not (args.hub_path.startswith("/") and args.hub_path.endswith("/")):
        raise ValueError(
            f"--hub-path {args.hub_path!r} must start and end with '/', e.g. /jupyter/"
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # systemd socket activation (testbed-audit-nginx.socket): the socket outlives a
    # restart of the collector, so nginx keeps its connection and nothing is lost
    activated = (
        os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1"
    )
    sock = socket.socket(fileno=3) if activated else bind(args.socket, args.group)
    print(
        f"collecting nginx audit lines on {args.socket}"
        f"{' (socket from systemd)' if activated else ''} into {args.log} "
        f"(hub path {args.hub_path})",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(sock, AuditLog(args.log), args.hub_path, stop)
    finally:
        sock.close()
        if not activated:
            with contextlib.suppress(OSError):
                os.unlink(args.socket)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.action == "collect-nginx":
            return _collect(args)
        if args.action == "append":
            obj = args.object if args.object is not None else args.object_json
            record = AuditLog(args.log).append(
                args.event,
                args.identity,
                user=args.user,
                source=args.source,
                object=obj,
                details=args.details,
            )
            print(canonical(record).decode("utf-8"))
        elif args.action == "verify":
            result = verify(args.log)
            print(result.summary(), file=sys.stdout if result else sys.stderr)
            return 0 if result else 1
        elif args.action == "report":
            rows = report(
                args.log,
                since=args.since,
                until=args.until,
                user=args.user,
                identity=args.identity,
                experiment=args.experiment,
                event=args.event,
            )
            if args.csv:
                sys.stdout.write(to_csv(rows))
            else:
                for row in rows:
                    print(canonical(row).decode("utf-8"))
        else:
            record = rotate(args.log, keep=args.keep, identity=args.identity)
            if record is None:
                print(f"{args.log} is empty or absent: nothing to rotate")
            else:
                print(canonical(record).decode("utf-8"))
    except AuditError as e:
        print(f"testbed_hub.audit: {e}", file=sys.stderr)
        return e.code
    except (ValueError, OSError) as e:
        print(f"testbed_hub.audit: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m testbed_hub.audit
    sys.exit(main())
