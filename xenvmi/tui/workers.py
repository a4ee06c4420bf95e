"""The loops the TUI's thread workers run: call a DataSource, post messages, never render.

Each loop owns the handles it opens (created, used and closed in its own thread), sleeps
only on events the app sets when quitting, and turns every failure into a SourceFailed
message carrying the error's one-line reason: a missing capability becomes a panel,
never a traceback. The loops take ``post`` (a thread-safe post_message) so they do not
depend on any widget.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from textual.message import Message

from xenvmi.errors import XenvmiError
from xenvmi.tui import messages as m
from xenvmi.tui.sources import XS_MAX_CHILDREN, DataSource, Stopped

log = logging.getLogger(__name__)
T = TypeVar("T")
Post = Callable[[Message], object]

#: Longest single wait on a live xenstore watch: bounds how long quitting can take.
WATCH_SLICE = 0.5
#: Hypercall events are sent to the UI in batches, this often (s): a busy dom0 makes
#: thousands per second, one message each would swamp the UI thread.
HYPERCALL_BATCH_SECONDS = 0.25


class Lifeline:
    """A stop flag with children: quitting the app stops every screen's workers, closing
    a screen stops only its own. ``sleep`` wakes early on stop or ``poke``."""

    def __init__(self, parent: Lifeline | None = None) -> None:
        self.parent = parent
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._children: list[Lifeline] = []
        if parent is not None:
            parent._children.append(self)

    def child(self) -> Lifeline:
        return Lifeline(self)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set() or (self.parent is not None and self.parent.stopped)

    def should_stop(self) -> bool:
        return self.stopped

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for c in self._children:
            c.stop()
        if self.parent is not None and self in self.parent._children:
            self.parent._children.remove(self)

    def poke(self) -> None:
        """Wake a sleeping loop now (the refresh key)."""
        self._wake.set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if poked or stopped (the flag is consumed)."""
        woke = self._wake.wait(seconds)
        self._wake.clear()
        return woke or self.stopped


def guarded(topic: str, post: Post, func: Callable[..., T], *args, key=None) -> T | None:
    """``func(*args)``, or None after posting why it failed. Stopped passes through."""
    try:
        return func(*args)
    except Stopped:
        raise
    except XenvmiError as exc:
        post(m.SourceFailed(topic, str(exc), key))
    except Exception as exc:  # a library bug must show as a panel, not kill the UI
        log.exception("%s failed", topic)
        post(m.SourceFailed(topic, f"unexpected {type(exc).__name__}: {exc}", key))
    return None


def sampler_loop(
    source: DataSource, life: Lifeline, post: Post, interval: Callable[[], float]
) -> None:
    """Sample domains and dom0 every ``interval()`` s, at once when a domain comes or
    goes (xenstore watch) or when poked; identities are re-read when the domids change."""
    sampler = source.sampler(life.should_stop)
    known: set[int] | None = None
    watching = True
    try:
        while not life.stopped:
            t0 = time.perf_counter()
            got = guarded("domains", post, sampler.sample)
            if got is not None:
                node, samples = got
                ids = {s.domid for s in samples}
                domains = None
                # a sampler whose identities arrive apart from its samples (--host) says
                # when they moved, as a new domid would
                if ids != known or getattr(sampler, "identities_changed", bool)():
                    domains = guarded("domains", post, sampler.domains)
                    known = ids if domains is not None else None
                update = m.SamplesUpdated(node, samples, domains, time.perf_counter() - t0)
            else:
                update = None
            # dom0's facts before either is posted: the UI handles both in one frame
            # and repaints once per refresh, not once for the table and again for them
            host = guarded("host", post, sampler.host)
            if update is not None:
                post(update)
            if host is not None:
                post(m.HostUpdated(host))
            deadline = time.monotonic() + interval()
            while not life.stopped and (left := deadline - time.monotonic()) > 0:
                if watching:
                    try:
                        if sampler.wait_change(min(left, WATCH_SLICE)):
                            break
                    except XenvmiError:
                        watching = False  # no watch: the periodic sample still runs
                    if life.sleep(0):
                        break
                elif life.sleep(left):
                    break
    except Stopped:
        pass
    finally:
        sampler.close()


GUEST_VIEWS = ("registers", "processes", "modules", "kernel_log")


def guest_loop(
    source: DataSource, domain: str, life: Lifeline, requests: queue.Queue, post: Post
) -> None:
    """The one thread that opens, uses and closes this guest (LibVMI is not thread-safe).
    ``requests`` carries view names; None (or stopping) closes the guest. A failure to
    open is posted with key None (every view), a failing view with its name."""
    try:
        handle = guarded("guest", post, source.guest, domain, life.should_stop)
        if handle is None:
            return
        try:
            while not life.stopped:
                try:
                    view = requests.get(timeout=WATCH_SLICE)
                except queue.Empty:
                    continue
                if view is None:
                    break
                got = guarded("guest", post, getattr(handle, view), key=view)
                if got is not None:
                    post(m.GuestViewLoaded(domain, view, got.rows, got.warnings, got.complete))
        finally:
            handle.close()
    except Stopped:
        pass


def xs_subtree_loop(source: DataSource, path: str, life: Lifeline, post: Post) -> None:
    """Walk ``path`` (bounded), then again after each change a watch reports."""
    try:
        xs = guarded("xenstore", post, source.xenstore, life.should_stop, key=path)
        if xs is None:
            return
        try:
            changed: list[str] = []
            while not life.stopped:
                tree = guarded("xenstore", post, xs.walk, path, key=path)
                if tree is None:
                    return
                post(m.XsSubtree(tree, changed))
                changed = []
                while not life.stopped and not changed:
                    try:
                        changed = xs.wait(path, WATCH_SLICE)
                    except XenvmiError:  # no watch: walk again only when poked
                        changed = ["(refresh)"] if life.sleep(3600 * 24) else []
                        continue
                    if life.sleep(0):
                        changed = changed or ["(refresh)"]
        finally:
            xs.close()
    except Stopped:
        pass


def xs_children(source: DataSource, path: str, post: Post) -> None:
    """One node's children with their values, for the browser's lazy tree."""

    def load():
        xs = source.xenstore(lambda: False)
        try:
            names = sorted(
                xs.list(path), key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n)
            )
            out = []
            for name in names[:XS_MAX_CHILDREN]:
                child = path.rstrip("/") + "/" + name
                out.append((name, xs.read(child), bool(xs.list(child))))
            return out, len(names) > XS_MAX_CHILDREN
        finally:
            xs.close()

    got = guarded("xenstore", post, load, key=path)
    if got is not None:
        post(m.XsChildren(path, *got))


def hypercall_loop(source: DataSource, life: Lifeline, post: Post) -> None:
    """Trace dom0's privcmd calls, posting a batch every HYPERCALL_BATCH_SECONDS."""
    try:
        feed = guarded("hypercalls", post, source.hypercalls, life.should_stop)
        if feed is None:
            return
        try:
            while not life.stopped:
                events = guarded("hypercalls", post, feed.poll, HYPERCALL_BATCH_SECONDS)
                if events is None:
                    return
                if events:
                    post(m.HypercallBatch(events))
        finally:
            feed.close()
    except Stopped:
        pass


def list_plugins(source: DataSource, post: Post) -> None:
    got = guarded("plugins", post, source.plugins)
    if got is not None:
        post(m.PluginsListed(got))


def run_plugin(source: DataSource, name: str, domain: str | None, post: Post) -> None:
    got = guarded("plugins", post, source.run_plugin, name, domain, key=name)
    if got is not None:
        post(m.PluginFinished(name, got))
