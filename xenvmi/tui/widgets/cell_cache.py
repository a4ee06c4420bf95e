"""CellCachedTable: a DataTable whose refresh re-renders only the cells whose text changed.

DataTable.update_cell invalidates every cached rendering (its caches are keyed by a count
of updates), so each refresh of a live table re-rendered every visible cell through Rich:
most of the TUI's idle CPU. This subclass draws a body line itself from per-cell
renderings it keeps, keyed by the cell's own text and style, and renders a cell again only
when that changes: with the Rich call and styles DataTable uses (public API: component
styles, cursor reactives, Column.get_render_width), or, for a one-line Text that fits,
directly as its padding and text. Each look of a line (zebra parity, cursor, focus,
scroll) and each shape of a cell is compared once with DataTable's and Rich's own output;
a difference (another Textual or Rich) turns the shortcut off for good. The header is
DataTable's, kept until its labels, widths or look change; the hovered row (while the
mouse is over the table) and what this does not cover (fixed rows or columns, row labels,
a non-row cursor, multi-line rows) are DataTable's as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.renderables.styled import Styled
from textual.strip import Strip
from textual.widgets import DataTable

log = logging.getLogger(__name__)


def cell_key(cell: Any) -> Any:
    """What a cell's look depends on; None if this table cannot tell (not a Text)."""
    if not isinstance(cell, Text):
        return None
    return (
        cell.plain,
        str(cell.style),
        cell.justify,
        cell.overflow,
        cell.no_wrap,
        tuple((s.start, s.end, str(s.style)) for s in cell.spans),
    )


@dataclass
class _Paint:
    fast: bool
    base: Style
    blank: Strip
    rows: tuple[Style, Style]  # even, odd
    cursor: tuple[Style, Style]  # the cursor's style, and what goes after a cell's own
    cursor_row: int
    hovered: int
    padding: int
    widths: list[int]
    width: int
    scroll_x: int
    first: int  # the row on line 0
    header: bool
    focus: bool
    theme: str


class CellCachedTable(DataTable):
    """A DataTable (cursor_type "row", one-line rows) that keeps each cell's rendering."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._cells_cache: dict[tuple[int, int], tuple[tuple, list[Segment]]] = {}
        self._header_cache: dict[tuple, Strip] = {}
        self._checked: set[tuple] = set()
        self._paint: _Paint | None = None  # while render_lines runs
        self.fast_lines = True  # False once a line differed from DataTable's own
        self.fast_cells = True  # False once a directly built cell differed from Rich's
        self._shapes: set[tuple] = set()

    def _fast_applies(self) -> bool:
        return (
            self.fast_lines
            and self.cursor_type == "row"
            and not self.fixed_rows
            and not self.fixed_columns
            and not (self.show_row_labels and any(r.label for r in self.rows.values()))
            and self.header_height == 1
            and all(row.height == 1 for row in self.rows.values())
        )

    def _state(self) -> _Paint:
        """What every line of a paint depends on, read once (reactives and component
        styles are slow to read; DataTable reads them again for every line)."""
        base = self.rich_style
        component = self.get_component_rich_style("datatable--cursor")
        post = Style.null()
        if self.cursor_foreground_priority == "css":
            post += Style.from_color(color=component.color)
        if self.cursor_background_priority == "css":
            post += Style.from_color(bgcolor=component.bgcolor)
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        return _Paint(
            fast=self._fast_applies(),
            base=base,
            blank=Strip.blank(width, base),
            rows=(
                self.get_component_styles("datatable--even-row").rich_style
                if self.zebra_stripes
                else base,
                self.get_component_styles("datatable--odd-row").rich_style
                if self.zebra_stripes
                else base,
            ),
            cursor=(component, post),
            cursor_row=self.cursor_row if self.show_cursor else -2,
            hovered=self.hover_coordinate.row if self.mouse_hover else -2,
            padding=self.cell_padding,
            widths=[c.get_render_width(self) for c in self.columns.values()],
            width=width,
            scroll_x=scroll_x,
            first=scroll_y - (1 if self.show_header else 0),
            header=self.show_header,
            focus=self.has_focus,
            theme=self.app.theme,
        )

    def render_lines(self, crop: Region) -> list[Strip]:
        self._paint = self._state()
        try:
            return super().render_lines(crop)
        finally:
            self._paint = None

    def render_line(self, y: int) -> Strip:
        paint = self._paint or self._state()
        if not (paint.fast and self.fast_lines):
            return super().render_line(y)
        if paint.header and y == 0:
            return self._header_line(paint)
        index = y + paint.first
        if index >= self.row_count:  # below the last row: DataTable's blank line
            return paint.blank
        if index < 0 or index == paint.hovered:  # hover looks: DataTable's own
            return super().render_line(y)
        row = self.get_row_at(index)
        strip = self._body_line(index, row, paint) if len(row) == len(paint.widths) else None
        if strip is None:
            return super().render_line(y)
        look = (index % 2, index == paint.cursor_row, paint.focus, paint.scroll_x, paint.width)
        if look not in self._checked:
            theirs = super().render_line(y)
            if theirs != strip:
                self.fast_lines = False
                log.warning("DataTable draws differently here: per-cell cache off")
                return theirs
            self._checked.add(look)
        return strip

    def _header_line(self, paint: _Paint) -> Strip:
        """DataTable's header line, rendered again only when what it shows changes."""
        key = (
            tuple((c.label.plain, str(c.label.style)) for c in self.columns.values()),
            tuple(paint.widths),
            paint.scroll_x,
            paint.width,
            paint.hovered == -1,
            paint.base,
            paint.focus,
            paint.theme,
        )
        strip = self._header_cache.get(key)
        if strip is None:
            strip = super().render_line(0)
            self._header_cache = {key: strip}
        return strip

    def _body_line(self, index: int, row: list[Any], paint: _Paint) -> Strip | None:
        row_style = paint.rows[index % 2]
        cursor = index == paint.cursor_row
        component, post = paint.cursor if cursor else (Style(), Style.null())
        look = (row_style, component, post, paint.padding, paint.theme)  # _render_one: [3]
        segments: list[Segment] = []
        for column_index, (cell, width) in enumerate(zip(row, paint.widths)):
            what = cell_key(cell)
            if what is None:
                return None
            key = (what, width, look)
            kept = self._cells_cache.get((index, column_index))
            if kept is None or kept[0] != key:
                pre = row_style + Style.from_meta({"row": index, "column": column_index})
                kept = key, self._render_one(cell, width, pre + component, post, look)
                self._cells_cache[(index, column_index)] = kept
            segments.extend(kept[1])
        extend = (
            row_style
            + component
            + Style.from_meta({"row": index, "column": 0, "out_of_bounds": True})
        )
        segments.append(Segment(" " * max(0, paint.width - sum(paint.widths)), extend))
        return (
            Strip(segments)
            .crop(paint.scroll_x, paint.scroll_x + paint.width)
            .adjust_cell_length(paint.width, paint.base)
            .simplify()
        )

    def _render_one(
        self, cell: Text, width: int, pre: Style, post: Style, look: tuple
    ) -> list[Segment]:
        """One cell as DataTable renders it (_render_cell). A one-line Text that fits is
        built directly (Rich's layout of it is a few spaces and one run of text); the
        first cell of each shape is also rendered through Rich and compared, and any
        difference sends every cell through Rich from then on."""
        pad = look[3]
        fast = self._direct(cell, width, pad, pre, post) if self.fast_cells else None
        shape = (
            cell.justify,
            cell_len(cell.plain) < width - 2 * pad,
            str(cell.style),
            look,
        )
        if fast is not None and shape in self._shapes:
            return fast
        options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
        lines = self.app.console.render_lines(
            Styled(Padding(cell, (0, pad)), pre_style=pre, post_style=post),
            options,
        )
        slow = list(lines[0])
        if fast is not None:
            if fast == slow:
                self._shapes.add(shape)
            else:
                self.fast_cells = False
                log.warning("Rich lays out a cell differently here: direct cells off")
        return slow

    def _direct(
        self, cell: Text, width: int, pad: int, pre: Style, post: Style
    ) -> list[Segment] | None:
        """A cell's segments without Rich's layout, or None where that is not simple: the
        padding, the text (right-justified: after its spaces, in its style), the rest."""
        text = cell.plain
        fill = width - 2 * pad - cell_len(text)
        if (
            cell.spans
            or not text
            or "\n" in text
            or pad < 1
            or fill < 0
            or cell.justify not in (None, "default", "left", "right")
        ):
            return None
        blank = pre + post
        style = pre + self.app.console.get_style(cell.style) + post
        padding = Segment(" " * pad, blank)
        if cell.justify == "right":
            return [padding, Segment(" " * fill + text, style), padding]
        body = [Segment(text, style)]
        if fill:
            body.append(Segment(" " * fill, blank))
        return [padding, *body, padding]
