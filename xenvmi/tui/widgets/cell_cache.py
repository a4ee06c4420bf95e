"""CellCachedTable: a DataTable whose refresh re-renders only the cells whose text changed.

DataTable.update_cell invalidates every cached rendering (its caches are keyed by a count
of updates), so each refresh of a live table re-rendered every visible cell through Rich:
most of the TUI's idle CPU. This subclass renders a body line itself from per-cell
renderings it keeps, keyed by the cell's own text and style, and renders a cell again only
when that changes. A cell is rendered with the very Rich call and styles DataTable uses
(public API: component styles, cursor reactives, Column.get_render_width), and the first
line of each look (zebra parity, cursor, focus) is compared with DataTable's own rendering:
if another Textual draws differently, the table falls back to DataTable's path for good
(stale or wrong cells are never shown). The header, the hovered row and any layout this
does not cover (fixed rows or columns, row labels, a non-row cursor, multi-line rows) are
rendered by DataTable as before (the hovered row only while the mouse is over the table).
"""

from __future__ import annotations

import logging
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


class CellCachedTable(DataTable):
    """A DataTable (cursor_type "row", one-line rows) that keeps each cell's rendering."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._cells_cache: dict[tuple[int, int], tuple[tuple, list[Segment]]] = {}
        self._header_cache: dict[tuple, Strip] = {}
        self._checked: set[tuple] = set()
        self._blank = Strip.blank(0)
        self._base = Style.null()
        self._row_styles = (Style.null(), Style.null())
        self._cursor_styles = (Style(), Style.null())
        self.fast_lines = True  # False once a line differed from DataTable's own
        self.fast_cells = True  # False once a directly built cell differed from Rich's
        self._shapes: set[tuple] = set()

    def _fast_applies(self) -> bool:
        return (
            self.fast_lines
            and self.cursor_type == "row"
            and not self.fixed_rows
            and not self.fixed_columns
            and not self.show_row_labels_in_use
            and self.header_height == 1
        )

    @property
    def _tall(self) -> bool:
        """Any row taller than one line? (Rows are added with height 1 unless asked.)"""
        return any(row.height != 1 for row in self.rows.values())

    @property
    def show_row_labels_in_use(self) -> bool:
        return self.show_row_labels and any(row.label for row in self.rows.values())

    def _hovered(self, index: int) -> bool:
        """Might row ``index`` (-1: the header) show the hover style? DataTable shows it
        only after the mouse moved over the table, and forgets it when the mouse leaves."""
        return self.mouse_hover and self.hover_coordinate.row == index

    def render_lines(self, crop: Region) -> list[Strip]:
        """The styles every line of this paint uses, looked up once (DataTable looks them
        up again for each line, blank ones too)."""
        self._base = self.rich_style
        self._blank = Strip.blank(self.size.width, self._base)
        self._row_styles = (
            self.get_component_styles("datatable--even-row").rich_style,
            self.get_component_styles("datatable--odd-row").rich_style,
        )
        component = self.get_component_rich_style("datatable--cursor")
        post = Style.null()
        if self.cursor_foreground_priority == "css":
            post += Style.from_color(color=component.color)
        if self.cursor_background_priority == "css":
            post += Style.from_color(bgcolor=component.bgcolor)
        self._cursor_styles = component, post
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        if not self._fast_applies():
            return super().render_line(y)
        scroll_x, scroll_y = self.scroll_offset
        if self.show_header and y == 0:
            return self._header_line(scroll_x)
        index = y - (1 if self.show_header else 0) + scroll_y
        if index >= self.row_count:  # below the last row: DataTable's blank line
            return self._blank
        if index < 0 or self._hovered(index):
            return super().render_line(y)
        row = self.get_row_at(index)
        if len(row) != len(self.columns) or self._tall:
            return super().render_line(y)
        strip = self._body_line(index, row, scroll_x)
        if strip is None:
            return super().render_line(y)
        look = (index % 2, index == self.cursor_row, self.has_focus, scroll_x, self.size.width)
        if look not in self._checked:
            theirs = super().render_line(y)
            if theirs != strip:
                self.fast_lines = False
                log.warning("DataTable draws differently here: per-cell cache off")
                return theirs
            self._checked.add(look)
        return strip

    def _header_line(self, scroll_x: int) -> Strip:
        """DataTable's header line, rendered again only when what it shows changes."""
        key = (
            tuple((c.label.plain, str(c.label.style)) for c in self.columns.values()),
            tuple(c.get_render_width(self) for c in self.columns.values()),
            scroll_x,
            self.size.width,
            self._hovered(-1),
            self.rich_style,
            self.has_focus,
            self.app.theme,
        )
        strip = self._header_cache.get(key)
        if strip is None:
            strip = super().render_line(0)
            self._header_cache = {key: strip}
        return strip

    def _body_line(self, index: int, row: list[Any], scroll_x: int) -> Strip | None:
        base = self._base
        row_style = self._row_styles[index % 2] if self.zebra_stripes else base
        cursor = index == self.cursor_row and self.show_cursor
        component, post = self._cursor_styles if cursor else (Style(), Style.null())
        look = (row_style, component, post, self.cell_padding, self.app.theme)
        segments: list[Segment] = []
        total = 0
        for column_index, (cell, column) in enumerate(zip(row, self.columns.values())):
            what = cell_key(cell)
            if what is None:
                return None
            width = column.get_render_width(self)
            total += width
            key = (what, width, look)
            kept = self._cells_cache.get((index, column_index))
            if kept is None or kept[0] != key:
                kept = (
                    key,
                    self._render_one(cell, index, column_index, width, row_style, component, post),
                )
                self._cells_cache[(index, column_index)] = kept
            segments.extend(kept[1])
        extend = (
            row_style
            + component
            + Style.from_meta({"row": index, "column": 0, "out_of_bounds": True})
        )
        width = self.size.width
        segments.append(Segment(" " * max(0, width - total), extend))
        return (
            Strip(segments)
            .crop(scroll_x, scroll_x + width)
            .adjust_cell_length(width, base)
            .simplify()
        )

    def _render_one(
        self,
        cell: Text,
        index: int,
        column_index: int,
        width: int,
        row_style: Style,
        component: Style,
        post: Style,
    ) -> list[Segment]:
        """One cell as DataTable renders it (_render_cell). A one-line Text that fits is
        built directly (Rich's layout of it is a few spaces and one run of text); the
        first cell of each shape is also rendered through Rich and compared, and any
        difference sends every cell through Rich from then on."""
        pre = row_style + Style.from_meta({"row": index, "column": column_index}) + component
        fast = self._direct(cell, width, pre, post) if self.fast_cells else None
        shape = (
            cell.justify,
            cell_len(cell.plain) < width - 2 * self.cell_padding,
            str(cell.style),
            row_style,
            component,
            post,
        )
        if fast is not None and shape in self._shapes:
            return fast
        options = self.app.console_options.update_dimensions(width, 1).update(no_wrap=True)
        lines = self.app.console.render_lines(
            Styled(Padding(cell, (0, self.cell_padding)), pre_style=pre, post_style=post),
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

    def _direct(self, cell: Text, width: int, pre: Style, post: Style) -> list[Segment] | None:
        """A cell's segments without Rich's layout, or None where that is not simple: the
        padding, the text (right-justified: after its spaces, in its style), the rest."""
        pad, text = self.cell_padding, cell.plain
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
