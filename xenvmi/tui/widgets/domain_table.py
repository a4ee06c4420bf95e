"""DomainTable: xentop's rows, sorted and filtered, updated in place between refreshes."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text

from xenvmi.model.host import Domain, DomainSample
from xenvmi.tui.format import (
    BY_KEY,
    COLUMN_KEYS,
    COLUMNS,
    HOST_COLUMN,
    host_index,
    matches,
    row_cells,
    sorted_samples,
)
from xenvmi.tui.widgets.cell_cache import CellCachedTable


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style
    return a == b


class DomainTable(CellCachedTable):
    """Rows keyed by domid. When the visible rows and their order are unchanged only the
    changed cells are rewritten (cheap with 1000 domains); otherwise the rows are rebuilt
    and the cursor stays on the same domain. With ``hosts`` (``--host``) a Host column
    comes first and the keys are fleet keys (format.HOST_STRIDE)."""

    def __init__(self, hosts: list[str] | None = None, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.hosts = hosts
        self.column_keys = (("host",) if hosts is not None else ()) + COLUMN_KEYS
        self.sort_key, self.reverse, self.filter = "domid", False, ""
        self.samples: dict[int, DomainSample] = {}
        self.domains: dict[int, Domain] = {}
        self._order: list[str] = []
        self._cells: dict[str, list[Any]] = {}

    def on_mount(self) -> None:
        for c in ((HOST_COLUMN,) if self.hosts is not None else ()) + COLUMNS:
            self.add_column(c.label, key=c.key)

    @property
    def selected(self) -> DomainSample | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self.samples.get(int(self._order[self.cursor_row]))

    def host_of(self, key: int) -> str:
        """The host a row's key names ("" on one host)."""
        if self.hosts is None or not 0 <= host_index(key) < len(self.hosts):
            return ""
        return self.hosts[host_index(key)]

    @property
    def visible_names(self) -> list[str]:
        return [self.samples[int(k)].name for k in self._order]

    def set_data(self, samples: list[DomainSample], domains: dict[int, Domain]) -> None:
        self.samples = {s.domid: s for s in samples}
        self.domains = domains
        self.render_rows()

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if reverse is None:  # choosing the current column again flips the order
            reverse = (
                not self.reverse
                if key == self.sort_key
                else key not in ("domid", "name", "type", "state")
            )
        self.sort_key, self.reverse = key, reverse
        self.render_rows()

    def set_filter(self, text: str) -> None:
        self.filter = text
        self.render_rows()

    def render_rows(self) -> None:
        rows = [
            s
            for s in sorted_samples(
                list(self.samples.values()), self.domains, self.sort_key, self.reverse
            )
            if matches(s, self.filter, self.host_of(s.domid))
        ]
        order = [str(s.domid) for s in rows]
        cells = {str(s.domid): row_cells(s, self.domains.get(s.domid), self.hosts) for s in rows}
        if order == self._order:
            for key in order:
                for col, new, old in zip(self.column_keys, cells[key], self._cells[key]):
                    if not _same(new, old):
                        self.update_cell(key, col, new)
            self._widen(cells)
        else:
            selected = (
                self._order[self.cursor_row]
                if self._order and 0 <= self.cursor_row < len(self._order)
                else None
            )
            self.clear()
            for key in order:
                self.add_row(*cells[key], key=key)
            self._order = order
            if selected in order:
                self.move_cursor(row=order.index(selected), animate=False)
        self._cells = cells
        self._mark_sorted()

    def _widen(self, cells: dict[str, list[Any]]) -> None:
        """Grow columns whose new text is wider. (update_cell(update_width=True) would
        re-measure the whole column for every cell: minutes with 1000 domains.)"""
        grown = False
        for i, column in enumerate(self.columns.values()):
            width = max((cell_len(row[i].plain) for row in cells.values()), default=0)
            if width > column.content_width:
                column.content_width = width
                grown = True
        if grown:
            self._require_update_dimensions = True
            self.refresh()

    def _mark_sorted(self) -> None:
        """▲/▼ after the sorted column's label (the column widens if it must)."""
        changed = False
        for key, column in self.columns.items():
            if key.value is None:  # not one of ours: on_mount keys every column it adds
                continue
            label = BY_KEY[key.value].label
            mark = ("▼" if self.reverse else "▲") if key.value == self.sort_key else ""
            if column.label.plain != label + mark:
                column.label = Text(label + mark)
                column.content_width = max(column.content_width, cell_len(label + mark))
                changed = True
        if changed:
            self._require_update_dimensions = True
            self._update_count += 1  # the header's cached cells have the old labels
            self.refresh()
