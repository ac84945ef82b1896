"""One-line access to the testbed's experiments, PTT events and recordings.

Connection settings come from the environment the hub's spawner sets:

``TESTBED_MONGO_URI``        MongoDB URI without credentials
``TESTBED_MONGO_DB``         database name (default ``testbed``)
``TESTBED_MONGO_USER`` / ``TESTBED_MONGO_PASSWORD``   optional read-only credentials
``TESTBED_MONGO_TIMEOUT_MS`` server selection timeout (default 3000)
``TESTBED_MEDIA_DIR``        read-only recordings mount (default ``~/nist/media``)

Example::

    from testbed import data
    df = data.experiments()
    events = data.ptt_events("exp-001")
    samples, rate = data.load_recording(("exp-001", "ptt-0001.wav"))

Every failure raises a :class:`testbed.errors.TestbedError` subclass whose
message names the host, path or variable involved and what to check.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.errors import (
    ConfigError,
    DatabaseAuthError,
    DatabaseUnreachable,
    RecordingMissing,
    TestbedError,
    UnknownExperiment,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    from pymongo.database import Database

__all__ = [
    "Settings",
    "connect",
    "experiment",
    "experiment_ids",
    "experiments",
    "load_recording",
    "media_dir",
    "play",
    "ptt_events",
    "recordings",
    "unknown_experiment",
]

DEFAULT_URI = "mongodb://localhost:27017/"
DEFAULT_DB = "testbed"
DEFAULT_TIMEOUT_MS = 3000
CHANNEL_FIELDS = ("bandwidth_kbps", "delay_ms", "packet_loss_pct", "bit_error_rate")
EVENT_COLUMNS = [
    "experiment_id",
    "seq",
    "t_start",
    "talker",
    "listeners",
    "duration_s",
    "access_delay_ms",
    "mouth_to_ear_ms",
    "recording",
]
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed


@dataclass(frozen=True)
class Settings:
    """Where the data lives; built from the environment by :meth:`from_env`."""

    uri: str = DEFAULT_URI
    database: str = DEFAULT_DB
    user: str | None = None
    password: str | None = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    media_dir: Path = Path("~/nist/media")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw_timeout = env.get("TESTBED_MONGO_TIMEOUT_MS", str(DEFAULT_TIMEOUT_MS))
        try:
            timeout_ms = int(raw_timeout)
        except ValueError:
            timeout_ms = -1
        if timeout_ms <= 0:
            raise ConfigError(
                f"TESTBED_MONGO_TIMEOUT_MS={raw_timeout!r} is not a positive number of "
                f"milliseconds; unset it (default {DEFAULT_TIMEOUT_MS}) or set e.g. 5000."
            )
        user = env.get("TESTBED_MONGO_USER") or None
        password = env.get("TESTBED_MONGO_PASSWORD") or None
        if (user is None) != (password is None):
            missing = "TESTBED_MONGO_PASSWORD" if password is None else "TESTBED_MONGO_USER"
            raise ConfigError(
                f"{missing} is not set but its partner is: set both TESTBED_MONGO_USER and "
                "TESTBED_MONGO_PASSWORD for an authenticated database, or neither."
            )
        database = env.get("TESTBED_MONGO_DB") or DEFAULT_DB
        media = env.get("TESTBED_MEDIA_DIR") or "~/nist/media"
        return cls(
            uri=env.get("TESTBED_MONGO_URI") or DEFAULT_URI,
            database=database,
            user=user,
            password=password,
            timeout_ms=timeout_ms,
            media_dir=Path(media).expanduser(),
        )

    @property
    def hosts(self) -> str:
        """``host:port[,host:port]`` of the URI, for messages."""
        from pymongo.errors import InvalidURI
        from pymongo.uri_parser import parse_uri

        try:
            nodes = parse_uri(self.uri, validate=False, warn=True)["nodelist"]
        except (InvalidURI, ValueError) as exc:
            raise ConfigError(
                f"TESTBED_MONGO_URI={self.uri!r} is not a MongoDB URI ({exc}); expected "
                "something like mongodb://host.docker.internal:27017/"
            ) from None
        return ",".join(f"{host}:{port}" for host, port in nodes)


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _client(settings: Settings) -> Any:
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, InvalidURI

    key = (settings.uri, settings.user, settings.password, settings.timeout_ms)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            settings.hosts  # noqa: B018 - validates the URI with a clear message
            kwargs: dict[str, Any] = {
                "serverSelectionTimeoutMS": settings.timeout_ms,
                "connectTimeoutMS": settings.timeout_ms,
                "socketTimeoutMS": max(settings.timeout_ms, 30_000),
                "appname": "testbed-notebook",
            }
            if settings.user is not None:
                kwargs.update(username=settings.user, password=settings.password)
            try:
                client = MongoClient(settings.uri, **kwargs)
            except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"Cannot use TESTBED_MONGO_URI={settings.uri!r}: {exc}. Fix the URI "
                    "(e.g. mongodb://host.docker.internal:27017/) or the connection options."
                ) from None
            _clients[key] = client
    return client


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


@contextlib.contextmanager
def _db_errors(settings: Settings) -> Iterator[None]:
    """Turn pymongo exceptions into TestbedError subclasses with advice."""
    from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

    try:
        yield
    except ConnectionFailure as exc:  # includes ServerSelectionTimeoutError, AutoReconnect
        raise DatabaseUnreachable(
            f"Cannot reach the experiment database at {settings.hosts} "
            f"(TESTBED_MONGO_URI={settings.uri}, waited {settings.timeout_ms / 1000:g} s). "
            "Check that MongoDB is running on the base station and listens on that address "
            "and port, that TESTBED_MONGO_URI names it, and that this container can reach "
            "the host (host.docker.internal resolves to the Docker host gateway). "
            f"Driver said: {_short(exc)}"
        ) from None
    except OperationFailure as exc:
        if exc.code in _AUTH_CODES:
            who = (
                f"user {settings.user!r} (TESTBED_MONGO_USER / TESTBED_MONGO_PASSWORD)"
                if settings.user
                else "no credentials (TESTBED_MONGO_USER / TESTBED_MONGO_PASSWORD are unset)"
            )
            raise DatabaseAuthError(
                f"The experiment database at {settings.hosts} refused {who} for database "
                f"{settings.database!r}. Check the read-only credentials the hub passes to "
                f"notebooks. Server said: {_short(exc)}"
            ) from None
        raise TestbedError(
            f"The experiment database at {settings.hosts} rejected a query on "
            f"{settings.database!r}: {_short(exc)}"
        ) from None
    except PyMongoError as exc:
        raise TestbedError(
            f"Reading the experiment database at {settings.hosts} failed: {_short(exc)}"
        ) from None


def connect(settings: Settings | None = None) -> Database:
    """Return the experiment database (pymongo ``Database``), checked with a ping."""
    settings = settings or Settings.from_env()
    client = _client(settings)
    with _db_errors(settings):
        client.admin.command("ping")
    return client[settings.database]


def _db() -> tuple[Settings, Database]:
    settings = Settings.from_env()
    return settings, _client(settings)[settings.database]


def experiment_ids(query: Mapping[str, Any] | None = None) -> list[str]:
    """Experiment ids, sorted; all of them or those matching a MongoDB filter."""
    if query is not None and not isinstance(query, Mapping):
        raise TypeError(
            f"experiment_ids(query=...) wants a MongoDB filter dict, got {type(query).__name__}"
        )
    settings, db = _db()
    with _db_errors(settings):
        docs = db.experiments.find(dict(query or {}), {"_id": 1})
        return sorted(str(doc["_id"]) for doc in docs)


def _flatten(doc: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"experiment_id": str(doc.get("_id"))}
    for key, value in doc.items():
        if key == "_id":
            continue
        if key == "channel" and isinstance(value, Mapping):
            for ck, cv in value.items():
                row[f"channel_{ck}"] = cv
        elif key == "nist":
            continue  # nested file lists: testbed.qoe reads them; the table says which
        else:
            row[key] = value
    row["n_participants"] = len(doc.get("participants") or [])
    row["n_recordings"] = len(doc.get("recordings") or [])
    nist = doc.get("nist") if isinstance(doc.get("nist"), Mapping) else {}
    row["nist_m2e"] = bool(nist.get("m2e"))
    row["nist_access_time"] = bool(nist.get("access_time"))
    return row


def experiments(query: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Experiments as a DataFrame, one row each, sorted by ``experiment_id``.

    The channel settings are flattened into ``channel_bandwidth_kbps``,
    ``channel_delay_ms``, ``channel_packet_loss_pct``, ``channel_bit_error_rate``;
    ``n_participants`` and ``n_recordings`` count the lists; ``nist_m2e`` and
    ``nist_access_time`` say whether the experiment has NIST's M2E / access-time test
    (:mod:`testbed.qoe` evaluates them). ``query`` is an
    optional MongoDB filter, e.g. ``{"channel.packet_loss_pct": {"$gte": 1}}``.
    """
    import pandas as pd

    if query is not None and not isinstance(query, Mapping):
        raise TypeError(
            f"experiments(query=...) wants a MongoDB filter dict, got {type(query).__name__}"
        )
    settings, db = _db()
    with _db_errors(settings):
        docs = list(db.experiments.find(dict(query or {})).sort("_id", 1))
    columns = ["experiment_id", "name", "title", "date"]
    columns += [f"channel_{f}" for f in CHANNEL_FIELDS]
    columns += ["participants", "n_participants", "recordings", "n_recordings"]
    columns += ["nist_m2e", "nist_access_time"]
    rows = [_flatten(d) for d in docs]
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in columns]
    frame = frame.reindex(columns=columns + extra)
    if "date" in frame and len(frame):
        frame["date"] = pd.to_datetime(frame["date"])
    return frame


def unknown_experiment(experiment_id: Any, known: list[str]) -> UnknownExperiment:
    """The :class:`UnknownExperiment` error for ``experiment_id``, with close matches."""
    wanted = str(experiment_id)
    close = difflib.get_close_matches(wanted, known, n=5, cutoff=0.6)
    if close:
        hint = "Did you mean: " + ", ".join(close) + "?"
    elif known:
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        hint = f"Known experiments ({len(known)}): {shown}."
    else:
        hint = "The database holds no experiments at all: check TESTBED_MONGO_DB."
    return UnknownExperiment(
        f"No experiment {wanted!r} in the experiment database. {hint} "
        "List them with testbed.data.experiments().",
        wanted,
        close,
    )


def experiment(experiment_id: str) -> dict[str, Any]:
    """One experiment document (with ``experiment_id`` next to ``_id``)."""
    settings, db = _db()
    with _db_errors(settings):
        doc = db.experiments.find_one({"_id": experiment_id})
    if doc is None:
        raise unknown_experiment(experiment_id, experiment_ids())
    doc["experiment_id"] = str(doc["_id"])
    return doc


def ptt_events(experiment_id: str | None = None) -> pd.DataFrame:
    """PTT events, one row each, sorted by ``experiment_id`` then ``seq``.

    With an ``experiment_id`` only that experiment's events; an unknown id
    raises :class:`UnknownExperiment`.
    """
    import pandas as pd

    settings, db = _db()
    query = {} if experiment_id is None else {"experiment_id": experiment_id}
    with _db_errors(settings):
        docs = list(db.ptt_events.find(query, {"_id": 0}).sort([("experiment_id", 1), ("seq", 1)]))
    if experiment_id is not None and not docs:
        experiment(experiment_id)  # raises UnknownExperiment when it does not exist
    frame = pd.DataFrame(docs)
    extra = [c for c in frame.columns if c not in EVENT_COLUMNS]
    frame = frame.reindex(columns=EVENT_COLUMNS + extra)
    if len(frame):
        frame["t_start"] = pd.to_datetime(frame["t_start"])
    return frame


def media_dir() -> Path:
    """The recordings mount (``TESTBED_MEDIA_DIR``)."""
    return Settings.from_env().media_dir


def _mount_advice(media: Path) -> str:
    return (
        f"The recordings mount {media} (TESTBED_MEDIA_DIR) is not present in this "
        "container: the hub mounts the base station's recordings there read-only. "
        "Ask the operator to check the media volume of the spawner, or set "
        "TESTBED_MEDIA_DIR to where the recordings are."
    )


def recordings(experiment_id: str) -> list[Path]:
    """Paths of an experiment's recordings on the media mount, in event order.

    Taken from the experiment's ``recordings`` list; an experiment without that
    list falls back to ``<media>/<experiment_id>/*.wav``.
    """
    doc = experiment(experiment_id)
    media = media_dir()
    if not media.is_dir():
        raise RecordingMissing(_mount_advice(media))
    listed = doc.get("recordings")
    if listed is None:
        return sorted((media / str(doc["_id"])).glob("*.wav"))
    return [media / str(rel) for rel in listed]


def _resolve(what: str | os.PathLike[str] | tuple[str, str], media: Path) -> Path:
    if isinstance(what, tuple):
        if len(what) != 2:
            raise TypeError(
                "load_recording((experiment_id, name)) wants a pair like "
                f"('exp-001', 'ptt-0001.wav'), got {what!r}"
            )
        exp_id, name = (str(part) for part in what)
        path = media / exp_id / name
        return path if path.suffix else path.with_suffix(".wav")
    if not isinstance(what, str | os.PathLike):
        raise TypeError(
            "load_recording wants a path, a path relative to the media mount "
            f"('exp-001/ptt-0001.wav') or a pair (experiment_id, name), got {type(what).__name__}"
        )
    path = Path(what).expanduser()
    return path if path.is_absolute() else media / path


def _missing(path: Path, media: Path) -> RecordingMissing:
    if not media.is_dir():
        return RecordingMissing(f"Recording {path} does not exist. " + _mount_advice(media))
    try:
        rel = path.relative_to(media)
    except ValueError:
        return RecordingMissing(
            f"Recording {path} does not exist (it is outside the media mount {media}, "
            "TESTBED_MEDIA_DIR). Check the path."
        )
    exp_dir = media / rel.parts[0] if len(rel.parts) > 1 else media
    if not exp_dir.is_dir():
        return RecordingMissing(
            f"Recording {path} does not exist: the media mount {media} is present but has no "
            f"folder {rel.parts[0]!r}. Use testbed.data.recordings(experiment_id) to list "
            "an experiment's recordings."
        )
    present = sorted(p.name for p in exp_dir.glob("*.wav"))
    shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "") or "none"
    return RecordingMissing(
        f"Recording {path} does not exist. {exp_dir} holds {len(present)} recordings "
        f"({shown}). Use testbed.data.recordings(experiment_id) to list them."
    )


def load_recording(
    what: str | os.PathLike[str] | tuple[str, str],
) -> tuple[np.ndarray, int]:
    """Load a recording as ``(samples, rate)``: float32 samples in [-1, 1] and Hz.

    ``what`` is an absolute path, a path relative to the media mount
    (``"exp-001/ptt-0001.wav"``) or a pair ``("exp-001", "ptt-0001.wav")``.
    """
    import soundfile

    media = media_dir()
    path = _resolve(what, media)
    if not path.is_file():
        raise _missing(path, media)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise TestbedError(
            f"Cannot decode recording {path}: {exc}. The file is not a readable WAV; "
            "check it on the base station."
        ) from None
    return samples, int(rate)


def play(
    what: str | os.PathLike[str] | tuple[str, str] | np.ndarray,
    rate: int | None = None,
) -> Any:
    """An inline audio player (``IPython.display.Audio``) for a recording or samples."""
    from IPython.display import Audio

    if hasattr(what, "ndim"):
        if rate is None:
            raise TypeError("play(samples, rate): give the sample rate in Hz with raw samples")
        samples = what
    else:
        samples, rate = load_recording(what)  # type: ignore[arg-type]
    return Audio(data=samples, rate=rate)
