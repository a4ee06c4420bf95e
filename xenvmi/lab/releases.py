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

The CPU architecture is a second dimension beside the release (`for_arch`): an arm64 dom0
is the same release with its packages' architecture swapped by more edits of the same
script, no LibVMI (PyPI has no aarch64 wheel) and drgn built once from its sdist (PyPI has
no aarch64 wheel of it either: xenvmi.lab.wheels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    #: Debian's name of dom0's CPU architecture (debootstrap --arch, the -amd64/-arm64
    #: package suffixes)
    arch: str = "amd64"
    #: dom0 requirements with no wheel for this platform, built once from their sdist on
    #: the host and cached there (xenvmi.lab.wheels); kept in the requirements
    built: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The release as lab commands and a running lab's state name it."""
        return self.suite if self.arch == "amd64" else f"{self.suite}-{self.arch}"

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
ARCHES = ("amd64", "arm64")
#: The releases an arm64 lab is made for (their edits below assume the default's script).
ARM64_SUITES = ("bookworm",)


def for_arch(release: Release, arch: str) -> Release:
    """The release built for ``arch``: amd64 is the release itself (its digest unchanged)."""
    if arch == "amd64":
        return release
    if arch != "arm64":
        raise UsageError(f"unknown lab architecture {arch!r}: choose one of {', '.join(ARCHES)}")
    if release.suite not in ARM64_SUITES:
        raise UsageError(
            f"no arm64 lab for Debian {release.suite}: choose one of {', '.join(ARM64_SUITES)}"
        )
    return replace(
        release,
        arch="arm64",
        without=(*release.without, "libvmi"),
        built=("drgn",),
        edits=(
            *release.edits,
            (f"xen-hypervisor-{release.xen}-amd64", f"xen-hypervisor-{release.xen}-arm64"),
            # No HVM on Arm: every guest is PVH-like, so there is no device model to install.
            ("libxen-dev qemu-system-xen", "libxen-dev"),
            # GLib is there only for LibVMI's library, which has no aarch64 build.
            (
                "linux-image-amd64 linux-headers-amd64 libglib2.0-0 ",
                "linux-image-arm64 linux-headers-arm64 ",
            ),
            ('-e "$SRC[dom0,test]"', f'-r "$WHEELS/{REQUIREMENTS}" -e "$SRC[test]"'),
        ),
    )


def get(suite: str | None, arch: str = "amd64") -> Release:
    if suite is None:
        return for_arch(DEFAULT, arch)
    try:
        release = RELEASES[suite]
    except KeyError:
        raise UsageError(
            f"unknown lab release {suite!r}: choose one of {', '.join(RELEASES)}"
        ) from None
    return for_arch(release, arch)
