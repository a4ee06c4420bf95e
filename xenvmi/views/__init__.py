"""xenvmi's built-in views: one module each, each a Plugin written as a third-party one is.

A view's class is its only definition: its row dataclass, options, columns and text
rendering make the command (``xenvmi ps``), its JSON (docs/views.md), ``xenvmi run ps``,
``xenvmi.plugins.run("ps", ...)`` and the TUI's pane. Adding a view adds one module here;
the plugin loader finds it (``xenvmi.plugins.loader.builtin_views``). A guest view also
offers ``collect(guest, timeout, ...)``, the call its ``run`` makes, so a caller holding an
open guest (the TUI's worker) reads the same rows without a second definition.

Modules here import only dataclasses and the plugin API at import time (the CLI imports
them all to build its commands); whatever reads Xen or a guest is imported inside ``run``.
"""
