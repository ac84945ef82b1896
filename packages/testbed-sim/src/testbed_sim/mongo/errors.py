"""Command errors, answered to the client as ``{ok: 0, errmsg, code, codeName}``.

pymongo raises ``OperationFailure`` for them with the same ``code``.
"""

from __future__ import annotations

# MongoDB error codes (src/mongo/base/error_codes.yml).
INTERNAL_ERROR = 1
BAD_VALUE = 2
UNAUTHORIZED = 13
TYPE_MISMATCH = 14
AUTHENTICATION_FAILED = 18
ILLEGAL_OPERATION = 20
NAMESPACE_NOT_FOUND = 26
CURSOR_NOT_FOUND = 43
COMMAND_NOT_FOUND = 59
INVALID_NAMESPACE = 73
MECHANISM_UNAVAILABLE = 334


class CommandError(Exception):
    """Answered to the client as ``{ok: 0, errmsg, code, codeName}``."""

    def __init__(self, code: int, errmsg: str, code_name: str = "") -> None:
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name
