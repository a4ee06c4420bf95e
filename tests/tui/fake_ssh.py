#!/usr/bin/env python3
"""A stand-in for ``ssh`` in the ``xenvmi tui --host`` tests: the real xenvmi CLI (its
parsing, its JSON) runs here, on a recording instead of Xen.

``fake_ssh.py [-T] [-o OPT]... -- HOST COMMAND`` checks the argv the way the TUI must build
it (BatchMode on, '--' before the host), then runs COMMAND (``xenvmi top ...`` etc.) with
xenvmi.api's samplers, xenstore reads and the plugin runner answered from the recording
in $FAKE_SSH_RECORDING. $FAKE_SSH_DOWN / $FAKE_SSH_HANG name hosts (comma-separated) that
refuse the connection (ssh's exit 255) or never answer, $FAKE_SSH_FAIL xenvmi commands
that fail there (exit 5), $FAKE_SSH_FAIL_ONCE commands that fail the first time (a marker
beside the log); each call is logged to
$FAKE_SSH_LOG as one line "PID HOST COMMAND".
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def split_argv(argv: list[str]) -> tuple[str, list[str], str]:
    """(host, -o options, command) from ssh's argv; exit 64 on anything unexpected."""
    opts: list[str] = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "-o":
            opts.append(argv[i + 1])
            i += 2
        elif argv[i] == "-T":
            i += 1
        else:
            sys.exit(f"fake ssh: unexpected argument {argv[i]!r} before '--'")
    if len(argv) - i != 3:
        sys.exit(f"fake ssh: expected '-- HOST COMMAND', got {argv[i:]!r}")
    if "BatchMode=yes" not in opts:
        sys.exit("fake ssh: BatchMode=yes missing")
    return argv[i + 1], opts, argv[i + 2]


def patch_xenvmi(recording_dir: str) -> None:
    """Point the API the CLI commands call at a RecordedSource."""
    from xenvmi import api, plugins
    from xenvmi.errors import NotFoundError
    from xenvmi.model.host import XsNode, XsTree
    from xenvmi.plugins import PluginResult
    from xenvmi.tui.recorded import RecordedSource, load
    from xenvmi.tui.sources import children_of

    src = RecordedSource(load(recording_dir), loop=True)
    sampler = src.sampler(lambda: False)

    class DomainSampler:
        def sample(self):
            return sampler.sample()

        def close(self):
            pass

    class HostSampler:
        def __init__(self, *a, **kw):
            pass

        def sample(self):
            return sampler.host()

    def xs_walk(path: str, max_depth: int = 16, max_nodes: int = 10000) -> XsTree:
        store = src.rec.xenstore
        nodes = [XsNode(path, store.get(path), len(children_of(list(store), path)), 0)]
        level, depth = [path], 0
        while level and depth < max_depth and len(nodes) < max_nodes:
            depth += 1
            nxt = []
            for p in level:
                for name in children_of(list(store), p):
                    child = p.rstrip("/") + "/" + name
                    kids = len(children_of(list(store), child))
                    nodes.append(XsNode(child, store.get(child), kids, depth))
                    nxt.append(child)
            level = nxt
        return XsTree(path, tuple(nodes[:max_nodes]))

    def xs_read(path: str) -> str:
        if path not in src.rec.xenstore:
            raise NotFoundError(f"xenstore: no node {path}")
        return src.rec.xenstore[path]

    views = {"ps": "processes", "lsmod": "modules", "dmesg": "kernel_log", "regs": "registers"}

    def run(name, domain, **kw):
        domid = str(domain)
        guest = src.guest(domid, lambda: False)
        view = getattr(guest, views[name])()
        return PluginResult(name, domain, view.rows, view.warnings, None, view.complete)

    api.DomainSampler = DomainSampler  # type: ignore[misc,assignment]
    api.HostSampler = HostSampler  # type: ignore[misc,assignment]
    api.list_domains = lambda hypervisor=True: sampler.domains()
    api.xs_walk = xs_walk
    api.xs_read = xs_read
    plugins.run = run


def main() -> int:
    host, _opts, command = split_argv(sys.argv[1:])
    log = os.environ.get("FAKE_SSH_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {host} {command}\n")
    if host in os.environ.get("FAKE_SSH_DOWN", "").split(","):
        print(f"ssh: connect to host {host} port 22: Connection refused", file=sys.stderr)
        return 255
    if host in os.environ.get("FAKE_SSH_HANG", "").split(","):
        while True:
            time.sleep(60)
    argv = shlex.split(command)
    once = Path(f"{log}.failed-{argv[1] if argv[1:2] else ''}")
    if argv[1:2] and argv[1] in os.environ.get("FAKE_SSH_FAIL_ONCE", "").split(","):
        if not once.exists():
            once.touch()
            print(f"xenvmi: error: {argv[1]}: no xenstored here", file=sys.stderr)
            return 5
    if argv[1:2] and argv[1] in os.environ.get("FAKE_SSH_FAIL", "").split(","):
        print(f"xenvmi: error: {argv[1]}: no xenstored here", file=sys.stderr)
        return 5
    if argv[:1] != ["xenvmi"]:
        print(f"bash: {argv[0]}: command not found", file=sys.stderr)
        return 127
    patch_xenvmi(os.environ["FAKE_SSH_RECORDING"])
    from xenvmi import cli

    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
