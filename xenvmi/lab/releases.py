"""The Debian releases a lab dom0 can be built from, and what differs between them.

Debian 12 (bookworm) is the default lab: Xen 4.17, Python 3.11, LibVMI from PyPI's cp311
wheel. Debian 13 (trixie) runs Xen 4.20 and Python 3.13, for which PyPI has no LibVMI
wheel (and Debian no package), so its dom0 has none: xenvmi picks its native memory
backend there by itself.

There is one provisioning script (data/provision.sh, also Vagrant's). Another release's
differences are a few exact edits of it, applied when its image is built: the edited text is
what runs in the chroot and what that release's image digest is made of, so the default
release's script and digest stay byte for byte what they were. An edit whose text is no
longer in the script is an error, never a silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.errors import LabError, UsageError

#: Where provision.sh finds the requirements of dom0's offline pip install when a release
#: cannot use setup.cfg's ``dom0`` extra as it is (written into the wheels directory).
REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True)
class Release:
    suite: str  # Debian's codename: debootstrap's suite
    debian: str
    xen: str  # the Xen packages' version (xen-hypervisor-X-amd64, /boot/xen-X-amd64.gz)
    python: str  # dom0's python3: the wheels downloaded on the host are for it
    #: dom0 requirements left out (no wheel for this Python), by project name
    without: tuple[str, ...] = ()
    #: (old, new) exact edits of provision.sh, each of which must match once
    edits: tuple[tuple[str, str], ...] = ()

    def render(self, script: str) -> str:
        for old, new in self.edits:
            if script.count(old) != 1:
                raise LabError(
                    f"provision.sh no longer has {old!r} exactly once: "
                    f"update the {self.suite} edits in xenvmi/lab/releases.py"
                )
            script = script.replace(old, new)
        return script

    def keeps(self, requirement: str) -> bool:
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        return name.strip().lower() not in self.without


BOOKWORM = Release("bookworm", "12", "4.17", "3.11")
TRIXIE = Release(
    "trixie",
    "13",
    "4.20",
    "3.13",
    without=("libvmi",),
    edits=(
        (
            "xen-hypervisor-4.17-amd64 xen-utils-4.17",
            "xen-hypervisor-4.20-amd64 xen-utils-4.20",
        ),
        # GLib is there only for LibVMI's library (and is libglib2.0-0t64 since trixie).
        (" libglib2.0-0 ", " "),
        # The dom0 extra names libvmi, which has no cp313 wheel: its other members come
        # from the requirements the image build wrote next to the wheels.
        ('-e "$SRC[dom0,test]"', f'-r "$WHEELS/{REQUIREMENTS}" -e "$SRC[test]"'),
    ),
)
RELEASES = {r.suite: r for r in (BOOKWORM, TRIXIE)}
DEFAULT = BOOKWORM


def get(suite: str | None) -> Release:
    if suite is None:
        return DEFAULT
    try:
        return RELEASES[suite]
    except KeyError:
        raise UsageError(
            f"unknown lab release {suite!r}: choose one of {', '.join(RELEASES)}"
        ) from None
