"""Polling with a deadline, for tests that wait on a station (a server starting, a
record landing in the audit trail, an alert firing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(what: str, check: Callable[[], T], timeout: float, every: float = 1.0) -> T:
    """Call ``check()`` every ``every`` seconds until it returns something truthy, and
    return that; after ``timeout`` seconds raise ``AssertionError`` naming ``what`` and
    the last value ``check()`` returned."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() + every > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(every)


def parameterised_notebook(code: str) -> dict:
    """A notebook (nbformat 4.5 JSON as a dict) with papermill's ``parameters`` cell
    ``experiment_id = None`` and one code cell ``code``: what run-notebook runs."""

    def cell(cid: str, source: str, tags: list[str]) -> dict:
        meta = {"tags": tags} if tags else {}
        return {
            "id": cid,
            "cell_type": "code",
            "metadata": meta,
            "source": source,
            "outputs": [],
            "execution_count": None,
        }

    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": [cell("p", "experiment_id = None", ["parameters"]), cell("r", code, [])],
    }
