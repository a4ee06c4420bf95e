"""Install a Debian package without letting it start its daemon, now or at boot.

Debian's ``prometheus`` starts ``prometheus.service`` from its postinst, listening on
``:9090`` on every address; the lab's test runs its own instance on loopback and needs
only the binary. Two of Debian's own mechanisms keep the packaged service down:

- a systemd mask (``/etc/systemd/system/UNIT`` -> ``/dev/null``, what ``systemctl mask``
  writes; made as a file so it works whether or not systemd runs, e.g. in a container).
  The postinst's ``deb-systemd-helper unmask`` removes only masks it made itself, so
  this one stays, and a masked unit neither starts from the postinst nor at boot;
- a ``policy-rc.d`` that denies the start (exit 101) for the install's duration, which
  ``invoke-rc.d`` (the sysvinit script's start) and ``deb-systemd-invoke`` both ask. An
  existing policy-rc.d is the administrator's and is left in place.

After the install the sysvinit links are disabled (``update-rc.d NAME disable``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

#: Host packages whose daemon must not run: Debian package -> its systemd unit.
HELD = {"prometheus": "prometheus.service"}
POLICY_MARK = "# xenvmi lab deps: held while installing"


def mask(unit: str, root: Path = Path("/")) -> bool:
    """Mask ``unit`` as ``systemctl mask`` does; False if something else is there
    (an administrator's own unit file: theirs to decide, left alone)."""
    link = root / "etc/systemd/system" / unit
    if link.is_symlink() and os.readlink(link) == "/dev/null":
        return True
    if link.exists() or link.is_symlink():
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/dev/null")
    return True


def policy_script(services: list[str]) -> str:
    """A policy-rc.d denying every action on ``services`` (as invoke-rc.d names them,
    ``prometheus``, and as deb-systemd-invoke does, ``prometheus.service``)."""
    names = sorted({n for s in services for n in (s, s.removesuffix(".service"))})
    return (
        f'#!/bin/sh\n{POLICY_MARK}\ncase "$1" in\n  {"|".join(names)}) exit 101 ;;\nesac\nexit 0\n'
    )


@contextlib.contextmanager
def held(packages: list[str], root: Path = Path("/"), log=print) -> Iterator[list[str]]:
    """Around an ``apt-get install`` of ``packages``: mask the daemons of those in
    HELD and deny their start while the postinsts run; yields the packages held."""
    hold = [p for p in packages if p in HELD]
    if not hold:
        yield []
        return
    for pkg in hold:
        if not mask(HELD[pkg], root):
            log(f"host packages: {HELD[pkg]} has a unit file of its own in /etc: not masked")
    policy = root / "usr/sbin/policy-rc.d"
    ours = not (policy.exists() or policy.is_symlink())
    if ours:
        policy.parent.mkdir(parents=True, exist_ok=True)
        policy.write_text(policy_script([HELD[p] for p in hold]))
        policy.chmod(0o755)
    try:
        yield hold
    finally:
        if ours and policy.is_file() and POLICY_MARK in policy.read_text():
            policy.unlink()
    if root == Path("/"):
        for pkg in hold:
            if Path("/etc/init.d", pkg).exists():
                subprocess.run(["update-rc.d", pkg, "disable"], capture_output=True)
    log(f"host packages: {', '.join(hold)} installed with the service masked and not started")
