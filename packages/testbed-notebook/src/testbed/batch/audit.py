"""run-notebook's records in the station's audit trail: ``batch_start`` and ``batch_end``.

Inside a hub user's container the hub's spawner sets ``JUPYTERHUB_API_URL`` (e.g.
``http://172.30.0.1:8081/jupyter/hub/api``) and ``JUPYTERHUB_API_TOKEN`` (the server's
own token). :class:`BatchAudit` posts to ``<JUPYTERHUB_API_URL>/testbed/audit``::

    POST /jupyter/hub/api/testbed/audit
    Authorization: token <JUPYTERHUB_API_TOKEN>
    {"event": "batch_start", "object": ["exp-001", ...], "details": {...}}

and the hub adds who (the user's testbed identity), when and from where
(``testbed_hub.auditing.AuditAPIHandler``). Stdlib only: the notebook image gains no
dependency.

Never in the way of the runs: without those variables (run outside the hub) it does
nothing; when the hub answers 404 (auditing off, or a hub without the endpoint) it
says so once and stops asking; any other failure (hub unreachable, 503 log not
writable, 400) prints one warning on stderr for the whole batch and the runs go on.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

#: Experiment ids sent per record at most (the hub refuses more); the total goes in details.
MAX_EXPERIMENTS = 5000
#: The largest body the hub reads (testbed_hub.auditing.MAX_BODY_BYTES): fewer ids are
#: sent when long ones would pass it, and the total goes in details.
MAX_BODY_BYTES = 262144
#: Seconds to wait for the hub per record.
TIMEOUT = 10.0


class BatchAudit:
    """Posts a batch's records to the hub; see the module docstring for the policy.

    ``env`` defaults to ``os.environ``; ``stream`` (stderr) gets the one warning.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        stream: TextIO | None = None,
        prog: str = "run-notebook",
        timeout: float = TIMEOUT,
    ):
        env = os.environ if env is None else env
        api = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.url = f"{api}/testbed/audit" if api and token else ""
        self.bad_url = bool(self.url) and not self.url.startswith(("http://", "https://"))
        self.token = token
        self.stream = stream if stream is not None else sys.stderr
        self.prog = prog
        self.timeout = timeout
        self.warned = False
        # the hub's address is on the station: never through an HTTP(S)_PROXY
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def enabled(self) -> bool:
        """False outside the hub (no API URL or token) and after a 404."""
        return bool(self.url)

    def start(self, experiments: Sequence[str], **details: Any) -> bool:
        """``batch_start`` with the experiment ids; True when the hub recorded it."""
        return self.post("batch_start", experiments, details)

    def end(self, experiments: Sequence[str], **details: Any) -> bool:
        """``batch_end`` with the experiment ids; True when the hub recorded it."""
        return self.post("batch_end", experiments, details)

    def post(self, event: str, experiments: Sequence[str], details: dict[str, Any]) -> bool:
        """One record; never raises. Over :data:`MAX_EXPERIMENTS` ids, or more than
        :data:`MAX_BODY_BYTES` of them, the first ones are sent and
        ``details["experiments_total"]`` says how many there were (:meth:`body`)."""
        if not self.enabled:
            return False
        if self.bad_url:  # only the hub's http(s) API, never file: or another scheme
            url, self.url = self.url, ""
            self._warn(f"JUPYTERHUB_API_URL is not an http(s) URL ({url!r})")
            return False
        body = self.body(event, list(experiments), details)
        request = urllib.request.Request(  # noqa: S310 - http(s) only: checked above
            self.url,
            data=body,
            method="POST",
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                answer.read()
            return True
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code}: {_message(e)}"
            if e.code == 404:
                self.url = ""  # auditing is off on this hub: no more calls
                self._warn(f"the hub keeps no audit trail ({why})")
                return False
            self._warn(f"the hub did not record the {event} ({why})")
        except (OSError, ValueError) as e:  # URLError, timeouts, a bad URL
            self._warn(f"the hub did not record the {event} ({self.url}: {e})")
        return False

    @staticmethod
    def body(event: str, ids: list[str], details: dict[str, Any]) -> bytes:
        """The JSON body: the first ids that fit :data:`MAX_EXPERIMENTS` and
        :data:`MAX_BODY_BYTES`; when some are left out, ``details["experiments_total"]``
        says how many there were."""

        def encode(n: int) -> bytes:
            more = {"experiments_total": len(ids)} if n < len(ids) else {}
            record = {"event": event, "object": ids[:n], "details": {**details, **more}}
            return json.dumps(record).encode("utf-8")

        n = min(len(ids), MAX_EXPERIMENTS)
        data = encode(n)
        if len(data) <= MAX_BODY_BYTES:
            return data
        low, high = 0, n  # the most ids that fit: encode(low) fits, encode(high) does not
        while high - low > 1:
            mid = (low + high) // 2
            if len(encode(mid)) <= MAX_BODY_BYTES:
                low = mid
            else:
                high = mid
        return encode(low)

    def _warn(self, text: str) -> None:
        if self.warned:
            return
        self.warned = True
        print(
            f"{self.prog}: warning: {text}; this batch may be missing from the station's "
            "audit trail, the runs go on",
            file=self.stream,
            flush=True,
        )


def _message(error: urllib.error.HTTPError) -> str:
    """The hub's ``{"message": ...}``, else the reason phrase."""
    try:
        text = error.read().decode("utf-8", "replace")
        return str(json.loads(text).get("message") or error.reason)
    except (ValueError, AttributeError, OSError):
        return str(error.reason)
