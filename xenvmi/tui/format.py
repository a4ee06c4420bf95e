"""Cell text for the TUI: units, states and the domains table's columns (pure functions).

Everything a guest or domain controls (names, command lines, log text, xenstore values)
becomes a rich ``Text``, never markup: a domain named "[red]x" must print as itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from xenvmi.model.host import Domain, DomainSample


def kib(value: int | None) -> str:
    """KiB as xentop-like short units: 512K, 192M, 1.5G."""
    if value is None:
        return "-"
    if value < 1024:
        return f"{value}K"
    if value < 1024 * 1024:
        return f"{value / 1024:.0f}M"
    return f"{value / 1024 / 1024:.1f}G"


def nbytes(value: int | None) -> str:
    return "-" if value is None else kib(value // 1024)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def state_text(s: DomainSample) -> Text:
    """xentop's letters, coloured by the most telling flag."""
    flags = s.flags
    style = (
        "bold red"
        if flags & {"crashed", "dying"}
        else "yellow"
        if "paused" in flags
        else "green"
        if "running" in flags
        else ""
    )
    return Text(s.state, style=style)


def xenbus_style(state: str | None) -> str:
    return {"connected": "green", "closed": "red", "closing": "yellow", None: "dim"}.get(
        state, "yellow"
    )


@dataclass(frozen=True)
class Column:
    """One column of the domains table: header, cell text, and the value it sorts by."""

    key: str
    label: str
    cell: Callable[[DomainSample, Domain | None], Any]
    sort: Callable[[DomainSample, Domain | None], Any]
    numeric: bool = True


#: ``xenvmi tui --host``: a domain's key is host index * HOST_STRIDE + its domid (domids
#: are below 0x7ff0), PLACEHOLDER the domid of the row standing for a host without data.
HOST_STRIDE = 1 << 16
PLACEHOLDER = HOST_STRIDE - 1


def host_index(key: int) -> int:
    return key // HOST_STRIDE


def local_domid(key: int) -> int:
    """The domid on its own host (on one host, the domid itself)."""
    return key % HOST_STRIDE


def _domid_text(key: int) -> Text:
    domid = local_domid(key)
    return _right("-" if domid == PLACEHOLDER else str(domid))


def _right(text: str) -> Text:
    return Text(text, justify="right")


COLUMNS: tuple[Column, ...] = (
    Column("domid", "ID", lambda s, d: _domid_text(s.domid), lambda s, d: s.domid),
    Column("name", "Name", lambda s, d: Text(s.name[:24]), lambda s, d: s.name.lower(), False),
    Column(
        "type",
        "Type",
        lambda s, d: Text(d.type if d else "?"),
        lambda s, d: d.type if d else "",
        False,
    ),
    Column("state", "State", lambda s, d: state_text(s), lambda s, d: s.state, False),
    Column(
        "cpu", "CPU%", lambda s, d: _right(pct(s.cpu_percent)), lambda s, d: s.cpu_percent or 0.0
    ),
    Column("mem", "Mem", lambda s, d: _right(kib(s.memory_kib)), lambda s, d: s.memory_kib),
    Column(
        "mem_pct", "Mem%", lambda s, d: _right(pct(s.memory_percent)), lambda s, d: s.memory_percent
    ),
    Column("vcpus", "vCPU", lambda s, d: _right(str(s.vcpus)), lambda s, d: s.vcpus),
    Column(
        "nettx", "NetTX", lambda s, d: _right(nbytes(s.net_tx_bytes)), lambda s, d: s.net_tx_bytes
    ),
    Column(
        "netrx", "NetRX", lambda s, d: _right(nbytes(s.net_rx_bytes)), lambda s, d: s.net_rx_bytes
    ),
    Column(
        "vbd_rd",
        "VbdRD",
        lambda s, d: _right("-" if s.vbd_rd is None else str(s.vbd_rd)),
        lambda s, d: s.vbd_rd or 0,
    ),
    Column(
        "vbd_wr",
        "VbdWR",
        lambda s, d: _right("-" if s.vbd_wr is None else str(s.vbd_wr)),
        lambda s, d: s.vbd_wr or 0,
    ),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
#: Shown first with --host; its cell is the host's name (DomainTable.hosts), its order the
#: order the hosts were given in.
HOST_COLUMN = Column(
    "host", "Host", lambda s, d: Text(str(host_index(s.domid))), lambda s, d: host_index(s.domid)
)
BY_KEY = {c.key: c for c in (HOST_COLUMN, *COLUMNS)}


def row_cells(s: DomainSample, d: Domain | None, hosts: list[str] | None = None) -> list[Any]:
    cells = [c.cell(s, d) for c in COLUMNS]
    if hosts is not None:
        i = host_index(s.domid)
        cells.insert(0, Text(hosts[i][:24] if i < len(hosts) else "?"))
    return cells


def sorted_samples(
    samples: list[DomainSample], domains: dict[int, Domain], key: str, reverse: bool
) -> list[DomainSample]:
    col = BY_KEY[key]
    return sorted(
        samples, key=lambda s: (col.sort(s, domains.get(s.domid)), s.domid), reverse=reverse
    )


def matches(s: DomainSample, text: str, host: str = "") -> bool:
    """The filter: a case-insensitive substring of the name or the host, or the exact
    domid."""
    text = text.strip().lower()
    return (
        not text
        or text in s.name.lower()
        or text == str(local_domid(s.domid))
        or (bool(host) and text in host.lower())
    )
