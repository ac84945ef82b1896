"""The one canonical form of a testbed identifier, wherever it enters the hub.

The header nginx forwards and the allowed/admin/blocked lists of the inventory both
go through :func:`normalize_identity` before :func:`testbed_hub.auth.identity_to_username`
maps them to a hub user name. Pure functions, no JupyterHub import: the settings
validator (``testbed_hub.config``) uses :data:`IDENTITY_CASES` on the control node.
"""

from __future__ import annotations

import unicodedata

#: ``jupyterhub_identity_case``: ``fold`` (identifiers differing only in letter case
#: are one hub user) or ``keep`` (the testbed's identifiers are case-sensitive).
IDENTITY_CASES = ("fold", "keep")


def repair_header_text(value: str) -> str:
    """Undo tornado's Latin-1 reading of a header that carried UTF-8 bytes.

    HTTP header values are bytes; tornado turns them into ``str`` as Latin-1, so
    ``josé`` sent as UTF-8 (what auth proxies send) arrives as ``josÃ©``. A value
    whose Latin-1 bytes are valid UTF-8 is decoded as UTF-8; anything else (plain
    ASCII, a real Latin-1 value, a value that is already proper text) is kept.
    Only for header text: an inventory entry is already text and is never re-decoded.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value  # not a Latin-1 reading of bytes: already text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value


def normalize_identity(raw: str, *, fold_case: bool, header: bool = False) -> str:
    """The one canonical form of a testbed identifier (header or inventory).

    1. header text only: UTF-8 bytes read as Latin-1 are decoded as UTF-8
       (:func:`repair_header_text`);
    2. surrounding white space is stripped;
    3. with ``fold_case``: letters lower-cased (Unicode default case conversion, as
       RFC 8265's UsernameCaseMapped profile; ``str.lower``, not ``casefold``, which
       would also merge ``straße`` and ``strasse``, two different accounts);
    4. Unicode NFC: canonically equivalent spellings (``é`` precomposed or ``e`` +
       combining accent) become one. NFC, not NFKC: compatibility folding would merge
       identifiers that look different (``ℌ`` and ``H``, ``①`` and ``1``), which
       a login service may well treat as different accounts.

    Raises ``ValueError`` for a value that is empty after stripping.
    """
    if not isinstance(raw, str):
        raise ValueError("identity must be a non-empty string")
    value = repair_header_text(raw) if header else raw
    value = value.strip()
    if fold_case:
        value = value.lower()
    value = unicodedata.normalize("NFC", value)
    if not value:
        raise ValueError("identity must be a non-empty string")
    return value
