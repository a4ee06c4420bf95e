"""The xenvmi theme: every colour is one of xterm's 256, so a 256-colour terminal shows
exactly these (no approximation muddying the states), on a dark grey background."""

from __future__ import annotations

from textual.theme import Theme

XENVMI_THEME = Theme(
    name="xenvmi",
    primary="#5f87af",  # xterm 67
    secondary="#5f8787",  # xterm 66
    accent="#d7af5f",  # xterm 179
    warning="#d7af00",  # xterm 178
    error="#d75f5f",  # xterm 167
    success="#87af5f",  # xterm 107
    foreground="#d0d0d0",  # xterm 252
    background="#1c1c1c",  # xterm 234
    surface="#262626",  # xterm 235
    panel="#303030",  # xterm 236
    dark=True,
)
