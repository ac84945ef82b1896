"""SCRAM-SHA-256 authentication (RFC 5802 / RFC 7677): ``saslStart`` / ``saslContinue``.

The users' passwords never stay in memory: each is salted and turned into the
stored and server keys once, at start-up, as a MongoDB server does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from testbed_sim.mongo.connection import Connection
from testbed_sim.mongo.errors import AUTHENTICATION_FAILED, MECHANISM_UNAVAILABLE, CommandError

MECHANISM = "SCRAM-SHA-256"
SCRAM_ITERATIONS = 15000


def _sasl_prep(password: str) -> str:
    try:
        from pymongo.saslprep import saslprep

        return saslprep(password)
    except ImportError:  # pragma: no cover
        return password


def scram_sha256_credentials(password: str, salt: bytes, iterations: int) -> dict[str, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _sasl_prep(password).encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return {
        "stored_key": hashlib.sha256(client_key).digest(),
        "server_key": hmac.digest(salted, b"Server Key", "sha256"),
        "salt": salt,
        "iterations": iterations,
    }


def _parse_scram(message: str) -> dict[str, str]:
    out = {}
    for part in message.split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


def _payload_user(doc: Mapping[str, Any]) -> str:
    payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
    user = _parse_scram(payload[3:]).get("n", "")
    return user.replace("=2C", ",").replace("=3D", "=")


class ScramAuthenticator:
    """The server side of the SCRAM-SHA-256 conversation; state lives on the connection."""

    def __init__(self, users: Mapping[str, str] | None = None, auth_db: str = "admin") -> None:
        self.auth_db = auth_db
        self._users = {
            name: scram_sha256_credentials(pw, secrets.token_bytes(16), SCRAM_ITERATIONS)
            for name, pw in (users or {}).items()
        }

    @property
    def enabled(self) -> bool:
        """True when users are configured (then every data command needs a login)."""
        return bool(self._users)

    def mechanisms_for(self, db_user: str) -> list[str]:
        """``hello``'s ``saslSupportedMechs`` for ``"<db>.<user>"``; empty for unknown users."""
        user = db_user.split(".", 1)[1] if "." in db_user else db_user
        return [MECHANISM] if user in self._users else []

    def _failed(self, conn: Connection) -> CommandError:
        conn.scram = None
        return CommandError(AUTHENTICATION_FAILED, "Authentication failed.", "AuthenticationFailed")

    def sasl_start(self, doc: Mapping[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        mechanism = doc.get("mechanism")
        if not self.enabled:
            raise CommandError(
                AUTHENTICATION_FAILED,
                "Authentication failed: this MongoDB stand-in has no users configured; "
                "connect without credentials",
                "AuthenticationFailed",
            )
        if mechanism != MECHANISM:
            if _payload_user(doc) not in self._users:
                raise self._failed(conn)
            raise CommandError(
                MECHANISM_UNAVAILABLE,
                f"Received authentication for mechanism {mechanism} which is not enabled; "
                "use SCRAM-SHA-256 (authMechanism=SCRAM-SHA-256)",
                "MechanismUnavailable",
            )
        if db != self.auth_db:
            raise self._failed(conn)
        payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
        if not payload.startswith(("n,,", "y,,")):
            raise self._failed(conn)
        bare = payload[3:]
        attrs = _parse_scram(bare)
        user = _payload_user(doc)
        creds = self._users.get(user)
        client_nonce = attrs.get("r", "")
        if creds is None or not client_nonce:
            raise self._failed(conn)
        nonce = client_nonce + base64.b64encode(secrets.token_bytes(24)).decode()
        server_first = (
            f"r={nonce},s={base64.b64encode(creds['salt']).decode()},i={creds['iterations']}"
        )
        conn.scram = {
            "user": user,
            "client_first_bare": bare,
            "server_first": server_first,
            "nonce": nonce,
            "step": 1,
        }
        conn.user = None
        return {"conversationId": 1, "done": False, "payload": server_first.encode()}

    def sasl_continue(self, doc: Mapping[str, Any], db: str, conn: Connection) -> dict[str, Any]:
        state = conn.scram
        if state is None:
            raise self._failed(conn)
        payload = bytes(doc.get("payload") or b"").decode("utf-8", "replace")
        if state["step"] == 2:
            # Client acknowledges the server signature.
            conn.scram = None
            conn.user = state["user"]
            return {"conversationId": 1, "done": True, "payload": b""}
        attrs = _parse_scram(payload)
        if attrs.get("r") != state["nonce"] or "p" not in attrs:
            raise self._failed(conn)
        without_proof = payload[: payload.rindex(",p=")]
        auth_message = f"{state['client_first_bare']},{state['server_first']},{without_proof}"
        creds = self._users[state["user"]]
        client_sig = hmac.digest(creds["stored_key"], auth_message.encode(), "sha256")
        try:
            proof = base64.b64decode(attrs["p"], validate=True)
        except ValueError as exc:
            raise self._failed(conn) from exc
        if len(proof) != len(client_sig):
            raise self._failed(conn)
        client_key = bytes(a ^ b for a, b in zip(proof, client_sig, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), creds["stored_key"]):
            raise self._failed(conn)
        server_sig = hmac.digest(creds["server_key"], auth_message.encode(), "sha256")
        state["step"] = 2
        final = f"v={base64.b64encode(server_sig).decode()}"
        if doc.get("options", {}).get("skipEmptyExchange"):
            conn.scram = None
            conn.user = state["user"]
            return {"conversationId": 1, "done": True, "payload": final.encode()}
        return {"conversationId": 1, "done": False, "payload": final.encode()}
