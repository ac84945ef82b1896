"""Jinja2 filter ``dpkg_lacks_any``: whether apt has work to do for a package list.

The roles look their packages up with ``dpkg-query --show
--showformat='${db:Status-Abbrev}\\n' <names>`` (about 0.1 s) and run
``ansible.builtin.apt`` (about 1.2 s even with nothing to do) only when this filter
says dpkg lacks one::

    - name: Look for the packages in dpkg's database
      ansible.builtin.command:
        argv: "{{ ['dpkg-query', '--show', '--showformat=${db:Status-Abbrev}\\n'] + names }}"
      register: __dpkg
      changed_when: false
      failed_when: false
      check_mode: false

    - name: Install the packages
      ansible.builtin.apt: {name: "{{ names }}", state: present}
      when: __dpkg | dpkg_lacks_any

ansible.cfg (and Molecule's config) point ``filter_plugins`` here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: dpkg's abbreviated status of an installed package: desired install (i) or hold (h),
#: status installed (i), no error flag.
INSTALLED = re.compile(r"^[ih]i\s*$")


class DpkgLacksAnyError(ValueError):
    """The value is not a registered ``dpkg-query`` result."""


def dpkg_lacks_any(result: Mapping[str, Any]) -> bool:
    """True unless ``dpkg-query`` (a registered ``command`` result) found every package
    installed or held.

    True when the query failed (``rc`` not 0: a name dpkg does not know, among them a
    pinned ``pkg=1.2*``, so apt runs and applies the pin), when any line is not
    ``ii ``/``hi `` (removed, half-installed, config-files only) or when the query
    printed nothing. Raises :class:`DpkgLacksAnyError` naming what is missing when
    ``result`` is no such result (a task that was skipped, a typo in the variable).
    """
    if not isinstance(result, Mapping) or "rc" not in result:
        keys = sorted(result) if isinstance(result, Mapping) else type(result).__name__
        raise DpkgLacksAnyError(
            "dpkg_lacks_any wants the registered result of the dpkg-query command task "
            f"(with rc and stdout_lines), got {keys}; register the task and do not skip it"
        )
    if result["rc"] != 0:
        return True
    lines = result.get("stdout_lines")
    if lines is None:
        lines = str(result.get("stdout", "")).splitlines()
    return not lines or any(not INSTALLED.match(line) for line in lines)


class FilterModule:
    """The project's filters."""

    def filters(self) -> dict[str, Any]:
        return {"dpkg_lacks_any": dpkg_lacks_any}
