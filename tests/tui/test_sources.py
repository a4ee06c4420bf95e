"""The data layer without a UI: recordings, the codec, the live watch filter, and the
worker loops (what they post, that they stop, that failures become reasons)."""

from __future__ import annotations

import threading
import time

import pytest

from xenvmi.errors import GuestDataError, PermissionDenied, Unavailable
from xenvmi.model.host import Domain, WatchEvent
from xenvmi.tui import live, recorded, synthetic, workers
from xenvmi.tui import messages as m
from xenvmi.tui.codec import from_jsonable
from xenvmi.tui.recorded import RecordedSource
from xenvmi.tui.sources import children_of


def test_save_and_load_round_trip(tmp_path):
    rec = synthetic.lab()
    recorded.save(rec, tmp_path)
    back = recorded.load(tmp_path)
    assert back.frames == rec.frames and back.domains == rec.domains
    assert back.hypercalls == rec.hypercalls and back.host == rec.host
    assert back.guests["xvm-pvh1"] == rec.guests["xvm-pvh1"]
    assert back.plugins == rec.plugins and back.xenstore == rec.xenstore


def test_codec_rejects_malformed_fixtures():
    with pytest.raises(GuestDataError, match="Domain"):
        from_jsonable(Domain, {"domid": 1})  # required fields missing
    with pytest.raises(GuestDataError, match="expected an object"):
        from_jsonable(Domain, [1, 2])


def test_frames_advance_stick_or_loop():
    rec = synthetic.lab(frames=3)
    stuck = RecordedSource(rec).sampler(lambda: False)
    times = [stuck.sample()[1][0].time for _ in range(5)]
    assert times == [times[0], times[0] + 2, times[0] + 4, times[0] + 4, times[0] + 4]
    looping = RecordedSource(rec, loop=True).sampler(lambda: False)
    assert [looping.sample()[1][0].time for _ in range(4)][3] == times[0]


def test_unavailable_capabilities_raise_the_recorded_reason():
    rec = synthetic.lab()
    rec.unavailable = {"host": "host metrics need psutil", "guest": "permission:run as root"}
    src = RecordedSource(rec)
    with pytest.raises(Unavailable, match="psutil"):
        src.sampler(lambda: False).host()
    with pytest.raises(PermissionDenied, match="run as root"):
        src.guest("xvm-pvh1", lambda: False)


def test_children_of_flat_paths():
    paths = ["/a/b/c", "/a/b/d", "/a/e", "/ab/x"]
    assert children_of(paths, "/a") == ["b", "e"]
    assert children_of(paths, "/") == ["a", "ab"]


class FakeWatch:
    """Scripted events, one per next() call (None = that slice timed out)."""

    def __init__(self, events):
        self.events, self.stopped = list(events), False

    def next(self, timeout):
        return self.events.pop(0) if self.events else None

    def stop(self):
        self.stopped = True


class FakeStore:
    def __init__(self, events):
        self.watches, self.events, self.closed = [], events, False

    def watch(self, paths, skip_initial=False):
        assert skip_initial  # xenstored's event on setting the watch is not a change
        self.watches.append(FakeWatch(self.events))
        return self.watches[-1]

    def close(self):
        self.closed = True


def test_live_sampler_keeps_one_watch(monkeypatch):
    ev = lambda p: WatchEvent(p, "t", 0.0)  # noqa: E731
    store = FakeStore([None, None, ev("@releaseDomain")])
    opened = []
    monkeypatch.setattr(live.api, "open_xenstore", lambda: opened.append(1) or store)
    sampler = live.LiveSampler()
    assert not sampler.wait_change(0.5)  # quiet slices
    assert not sampler.wait_change(0.5)
    assert sampler.wait_change(0.5)  # a domain went away
    assert len(opened) == 1 and len(store.watches) == 1  # one watch for all three slices
    sampler.close()
    assert store.watches[0].stopped and store.closed


def test_lifeline_children_stop_with_parent_and_alone():
    app = workers.Lifeline()
    a, b = app.child(), app.child()
    a.stop()
    assert a.stopped and not b.stopped and not app.stopped
    app.stop()
    assert b.stopped
    t0 = time.monotonic()
    assert b.sleep(5) and time.monotonic() - t0 < 0.1


def test_guarded_turns_errors_into_reasons():
    posted = []
    assert workers.guarded("host", posted.append, lambda: 1 / 0) is None
    assert (
        workers.guarded(
            "host", posted.append, lambda: (_ for _ in ()).throw(Unavailable("install x"))
        )
        is None
    )
    assert [(p.topic, p.reason) for p in posted] == [
        ("host", "unexpected ZeroDivisionError: division by zero"),
        ("host", "install x"),
    ]


def _run_loop(loop, seconds: float = 0.4):
    """Run ``loop(life, post)`` in a thread for ``seconds``, stop it: (posted, stop time)."""
    posted, life = [], workers.Lifeline()
    t = threading.Thread(target=loop, args=(life, posted.append))
    t.start()
    time.sleep(seconds)
    t0 = time.monotonic()
    life.stop()
    t.join(5)
    assert not t.is_alive()
    return posted, time.monotonic() - t0


def test_sampler_loop_posts_samples_and_identities_only_when_domids_change():
    rec = synthetic.lab(frames=3)
    rec.frames[2] = rec.frames[2][:-1]  # xvm-pv leaves in the third frame
    src = RecordedSource(rec)
    posted, stop_time = _run_loop(
        lambda life, post: workers.sampler_loop(src, life, post, lambda: 0.1), seconds=0.6
    )
    samples = [p for p in posted if isinstance(p, m.SamplesUpdated)]
    assert len(samples) >= 3
    assert [p.domains is not None for p in samples[:3]] == [True, False, True]
    assert len(samples[2].domains) == 4
    assert any(isinstance(p, m.HostUpdated) for p in posted)
    assert stop_time < 0.3


def _guest(domain: str, views: list[str]):
    import queue

    requests = queue.Queue()
    for view in views:
        requests.put(view)
    src = RecordedSource(synthetic.lab())
    posted, _ = _run_loop(lambda life, post: workers.guest_loop(src, domain, life, requests, post))
    return posted


def test_guest_loop_serves_the_requested_views():
    posted = _guest("2", ["processes", "kernel_log"])
    assert {p.view: len(p.rows) for p in posted} == {"processes": 11, "kernel_log": 6}


def test_guest_loop_reports_a_failing_view_and_goes_on():
    posted = _guest("4", ["modules", "registers"])  # xvm-pv: no memory views
    failed = [p for p in posted if isinstance(p, m.SourceFailed)]
    assert [(p.topic, p.key) for p in failed] == [("guest", "modules")]
    assert "PV guest" in failed[0].reason
    assert [p.view for p in posted if isinstance(p, m.GuestViewLoaded)] == ["registers"]


def test_guest_loop_open_failure_is_for_every_view():
    posted = _guest("0", ["processes"])
    assert [(p.topic, p.key) for p in posted] == [("guest", None)]
    assert "dom0 itself" in posted[0].reason


def test_a_plugin_dropped_in_a_folder_reaches_the_tui_and_a_broken_one_stays_apart(
    monkeypatch, tmp_path
):
    """The TUI's Plugins tab lists what xenvmi.plugins.discover() finds: a file copied
    into a $XENVMI_PLUGIN_PATH folder appears with no other change, and a file that
    raises on import is listed as unavailable with its error while the rest stay usable."""
    import shutil
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "unit" / "data" / "example_plugin.py"
    shutil.copy(example, tmp_path / "my_example.py")
    (tmp_path / "broken.py").write_text("raise RuntimeError('deliberately broken')\n")
    monkeypatch.setenv("XENVMI_PLUGIN_PATH", str(tmp_path))
    entries = {e.name: e for e in live.LiveSource().plugins()}
    from xenvmi.plugins import loader

    dropped = [e for e in loader.discover_entries() if e.info.source.endswith("my_example.py")]
    assert len(dropped) == 1 and dropped[0].info.name in entries
    assert {"ps", "lsmod", "dmesg", "files"} <= set(entries)
    broken = [e for e in loader.discover_entries() if "broken" in e.info.source]
    assert broken and not broken[0].info.available
    assert "deliberately broken" in (broken[0].info.error or broken[0].info.why_not)
    assert not entries[broken[0].info.name].available  # the TUI lists it as such
