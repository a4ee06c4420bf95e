"""netdev: a Linux guest's network interfaces, read from its memory (no agent).

Why: `ip link` inside a guest you cannot log into, or whose userland you do not trust.
The walk is drgn's ``for_each_net`` + ``for_each_netdev`` (net_namespace_list, then each
namespace's dev_base_head), done with xenvmi's bounded list walk instead: guest memory
is hostile, so every list stops at a count, a loop, a wild pointer or the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.plugins import Context, Plugin

# drgn is imported inside the functions: without it this plugin is listed as unavailable
# ("drgn: pip install drgn"), not as broken.

MAX_NAMESPACES, MAX_DEVICES, MAX_ADDR_LEN = 1024, 16384, 32
#: include/uapi/linux/if.h (IFF_RUNNING is derived by the kernel, not stored in flags).
IFF = (
    (0x1, "UP"),
    (0x2, "BROADCAST"),
    (0x4, "DEBUG"),
    (0x8, "LOOPBACK"),
    (0x10, "POINTOPOINT"),
    (0x80, "NOARP"),
    (0x100, "PROMISC"),
    (0x200, "ALLMULTI"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1000, "MULTICAST"),
    (0x8000, "DYNAMIC"),
)
#: enum if_oper_state (RFC 2863).
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


@dataclass(frozen=True)
class NetDevice:
    netns: int | None  # inode number of the namespace (as /proc/PID/ns/net shows it)
    ifindex: int
    name: str
    mtu: int
    mac: str | None
    up: bool
    operstate: str
    flags: str  # "UP,LOOPBACK", as `ip link` names them


def flag_names(flags: int) -> str:
    return ",".join(name for bit, name in IFF if flags & bit)


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _device(prog, dev, netns: int | None) -> NetDevice:
    from xenvmi.guest.bounded import c_string, is_kernel_pointer

    d = dev[0].read_()
    flags = d.flags.value_()
    mac = None
    length, ptr = d.addr_len.value_(), d.dev_addr.value_()
    if 0 < length <= MAX_ADDR_LEN and is_kernel_pointer(ptr, align=1):
        mac = mac_text(prog.read(ptr, length))
    state = d.operstate.value_()
    return NetDevice(
        netns=netns,
        ifindex=d.ifindex.value_(),
        name=c_string(d.name.string_(), 16),
        mtu=d.mtu.value_(),
        mac=mac,
        up=bool(flags & 0x1),
        operstate=OPERSTATES[state] if state < len(OPERSTATES) else f"?{state}",
        flags=flag_names(flags),
    )


def namespaces(prog, budget) -> list:
    """Every ``struct net *`` on net_namespace_list; just init_net if the list is missing."""
    from xenvmi.guest.bounded import walk_list

    try:
        head = prog["net_namespace_list"]
    except LookupError:
        budget.warn(
            "net_namespace_list not found: only the initial namespace is listed", partial=False
        )
        return [prog["init_net"].address_of_()]
    return list(
        walk_list(
            head,
            "struct net",
            "list",
            budget,
            max_count=MAX_NAMESPACES,
            what="network namespace list",
        )
    )


def netdev_rows(prog, budget) -> list[NetDevice]:
    """Every interface of every namespace; unreadable ones become warnings."""
    from xenvmi.guest.bounded import DeadlineExceeded, walk_list
    from xenvmi.guest.linux import ENTRY_ERRORS

    out: list[NetDevice] = []
    try:
        for net in namespaces(prog, budget):
            try:
                inum = net.ns.inum.value_()
            except ENTRY_ERRORS:
                inum = None
            for dev in walk_list(
                net.dev_base_head,
                "struct net_device",
                "dev_list",
                budget,
                max_count=MAX_DEVICES,
                what=f"devices of netns {inum}",
            ):
                try:
                    out.append(_device(prog, dev, inum))
                except DeadlineExceeded:
                    raise
                except ENTRY_ERRORS as e:
                    budget.warn(f"net_device at {dev.value_():#x} unreadable: {e}")
    except DeadlineExceeded:
        budget.warn(f"stopped at the deadline after {len(out)} interfaces")
    return out


class NetDev(Plugin):
    name = "netdev"
    version = "1.0"
    description = "A Linux guest's network interfaces: name, index, MTU, MAC, up/down."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = NetDevice

    def run(self, ctx: Context):
        return netdev_rows(ctx.kernel().prog, ctx.budget)
