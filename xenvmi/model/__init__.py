"""The data every front end shows: frozen dataclasses, no I/O, no dependencies.

- ``host``: what Xen and xenstore say about the host and its domains (``xenvmi list``,
  ``top``, ``xs``, the TUI's domain table), and the one rule that picks a domain by id or
  name;
- ``guest``: what is read inside a guest (processes, modules, log records, kernel facts,
  vCPU registers) and the ``GuestView`` that carries them with their warnings;
- ``hypercall``: one traced privcmd call of dom0.

A row's JSON is its fields (``render.to_jsonable``): add fields, do not rename them.
"""
