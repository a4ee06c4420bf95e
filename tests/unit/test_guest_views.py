"""ps / lsmod / dmesg on a synthetic kernel: correct on sane memory, bounded on hostile."""

from __future__ import annotations

import time
import types

import pytest

drgn = pytest.importorskip("drgn")

from xenvmi.guest import linux, printk  # noqa: E402
from xenvmi.guest.bounded import Budget, c_string, walk_list  # noqa: E402
from xenvmi.guest.synthetic import BASE, MODULE, TASK, SyntheticKernel  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[False, True], ids=["6.x-names", "before-5.17-names"])
def k(request) -> SyntheticKernel:
    """A small kernel, with today's task_struct member names and with 5.10's (``state``,
    the kthread pointer in ``set_child_tid``)."""
    k = SyntheticKernel(before_5_17=request.param)
    k.t1 = k.add_task(1, b"init", start_ns=123_000_000)
    k.t2 = k.add_task(2, b"kthreadd")
    k.t3 = k.add_task(77, b"xvm-parent", parent=k.t1, uid=1000, state=0)
    k.t4 = k.add_task(78, b"xvm-child", parent=k.t3, state=0x402)
    return k


def ps(k: SyntheticKernel, budget: Budget | None = None):
    budget = budget or Budget()
    return linux.processes(k.kernel_program(), budget), budget


def test_ps_sane(k):
    rows, b = ps(k)
    assert [(p.pid, p.ppid, p.comm) for p in rows] == [
        (1, 0, "init"),
        (2, 0, "kthreadd"),
        (77, 1, "xvm-parent"),
        (78, 77, "xvm-child"),
    ]
    assert [p.state for p in rows] == ["S", "S", "R", "I"]
    assert rows[2].uid == 1000 and rows[0].start_time == pytest.approx(0.123)
    assert b.complete and not b.warnings


def test_ps_kthread_full_names(k):
    """ps shows kernel threads' names whole (Linux >= 6.0): comm is cut at 15 bytes."""
    long = k.add_task(11, b"rcu_tasks_kthread", parent=k.t2)
    k.set_kthread_name(long, b"rcu_tasks_kthread")
    liar = k.add_task(12, b"rcu_tasks_rude_kthread", parent=k.t2)
    k.set_kthread_name(liar, b"something-else-entirely")  # must extend comm, or is ignored
    wild = k.add_task(13, b"kworker/u2:1-events", parent=k.t2)
    k.put(wild + TASK["worker_private"], "Q", 0xDEAD_BEEF)  # not a kernel pointer
    rows, b = ps(k)
    names = {p.pid: p.comm for p in rows}
    assert names[11] == "rcu_tasks_kthread"
    assert names[12] == "rcu_tasks_rude_" and names[13] == "kworker/u2:1-ev"
    assert b.complete


def test_ps_workqueue_workers_show_their_workqueue(k):
    """ps shows a kworker as comm-desc (+desc while busy), from kthread->data (struct worker)."""
    idle = k.add_task(21, b"kworker/0:0H", parent=k.t2)
    k.set_wq_worker(idle, b"events_highpri")
    busy = k.add_task(22, b"kworker/u2:1", parent=k.t2)
    k.set_wq_worker(busy, b"eval_map_wq", busy=True)
    fresh = k.add_task(23, b"kworker/0:2", parent=k.t2)
    k.set_wq_worker(fresh, b"")  # never ran a work item: plain comm
    wild = k.add_task(24, b"kworker/1:1", parent=k.t2)
    k.set_wq_worker(wild, b"x")
    k.put(k.read_q(wild + TASK["worker_private"]) + 8, "Q", 0x4141_4141)  # bad worker ptr
    rescuer = k.add_task(25, b"mm_percpu_wq", parent=k.t2)
    k.set_wq_worker(rescuer, b"mm_percpu_wq", rescuer=True)  # not rescuing: no pool
    rows, b = ps(k)
    names = {p.pid: p.comm for p in rows}
    assert names[25] == "mm_percpu_wq"
    assert names[21] == "kworker/0:0H-events_highpri"
    assert names[22] == "kworker/u2:1+eval_map_wq"
    assert names[23] == "kworker/0:2" and names[24] == "kworker/1:1"
    assert b.complete


def test_ps_loop_terminates_with_partial_result(k):
    k.put(k.t3 + TASK["tasks"], "Q", k.t2 + TASK["tasks"])  # t3 -> t2 -> t3 -> ...
    rows, b = ps(k)
    assert [p.pid for p in rows] == [1, 2, 77]
    assert not b.complete and any("loops back" in w for w in b.warnings)


def test_ps_self_loop(k):
    k.put(k.t1 + TASK["tasks"], "Q", k.t1 + TASK["tasks"])
    rows, b = ps(k)
    assert [p.pid for p in rows] == [1] and not b.complete


@pytest.mark.parametrize(
    "pointer, why",
    [
        (0x4141_4141_4141_4141, "not a kernel address"),  # non-canonical
        (0x0000_7FFF_DEAD_0000, "not a kernel address"),  # user space
        (0xFFFF_8880_7777_0000, "unreadable"),  # kernel, but not mapped
        (0xFFFF_8880_0100_0003, "not a kernel address"),  # misaligned
        (0, "not a kernel address"),
    ],
)
def test_ps_corrupt_next_pointer(k, pointer, why):
    k.put(k.t2 + TASK["tasks"], "Q", pointer)
    rows, b = ps(k)
    assert [p.pid for p in rows] == [1, 2]
    assert not b.complete and any(why in w for w in b.warnings)


def test_ps_garbage_fields(k):
    k.put_bytes(k.t3 + TASK["comm"], b"\x1b[31m\xff\xfe\x07evil\n!!")  # no NUL, 16 bytes
    k.put(k.t3 + TASK["real_parent"], "Q", 0xDEAD)  # wild parent pointer
    k.put(k.t3 + TASK["cred"], "Q", 0xFFFF_8880_7777_0000)  # unmapped cred
    k.put(k.t4 + TASK["__state"], "I", 0xFFFFFFFF)
    rows, b = ps(k)
    by_pid = {p.pid: p for p in rows}
    assert set(by_pid) == {1, 2, 78}  # 77's cred faults: skipped with a warning
    assert by_pid[78].state in "RSDTtXZPI?"
    assert any("77" in w or "unreadable" in w for w in b.warnings)
    k.put(k.t3 + TASK["cred"], "Q", k.root_cred)
    rows, b = ps(k)
    evil = {p.pid: p for p in rows}[77]
    assert evil.ppid == -1 and evil.comm.isprintable()  # 16 bytes, every one kept, escaped
    assert evil.comm == "\\x1b[31m\\xff\\xfe\\x07evil\\x0a!!"
    assert any("real_parent" in w for w in b.warnings)


def test_ps_duplicate_pid(k):
    k.add_task(2, b"impostor")
    rows, b = ps(k)
    assert [p.pid for p in rows].count(2) == 1
    assert any("twice" in w for w in b.warnings)


class RunsOutBudget(Budget):
    """A deadline that passes after ``checks`` looks at the clock, whatever the machine's
    speed (a 50 ms one stopped being reached once the view got faster)."""

    def __init__(self, checks: int) -> None:
        super().__init__(60)
        self.checks = checks

    def expired(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_ps_deadline():
    k = SyntheticKernel(size=4 << 20)
    for pid in range(1, 3000):
        k.add_task(pid, b"t%d" % pid)
    budget = RunsOutBudget(1000)
    t = time.monotonic()
    rows, b = ps(k, budget)
    assert time.monotonic() - t < 5
    assert 0 < len(rows) < 2999 and not b.complete
    assert any("deadline" in w for w in b.warnings)


def test_walk_list_max_count(k):
    prog = k.program()
    b = Budget()
    got = list(
        walk_list(
            prog["init_task"].tasks, "struct task_struct", "tasks", b, max_count=2, what="tasks"
        )
    )
    assert len(got) == 2 and any("more than 2" in w for w in b.warnings)


def test_c_string():
    assert c_string(b"abc\x00def", 16) == "abc"
    assert c_string(b"\x00", 16) == ""
    assert c_string(b"a" * 100, 16) == "a" * 16
    assert c_string(b"\x1b[0m\xff", 16) == "\\x1b[0m\\xff"  # escaped, nothing dropped
    assert c_string("a\u202eb\tc".encode(), 16) == "a\\u202eb\\x09c"


# -- modules -------------------------------------------------------------------------------


def test_lsmod(k):
    k.add_module(b"dummy", size=0x3000)
    k.add_module(b"xen_netfront", refs=2, state=1)
    rows = linux.modules(k.kernel_program(), Budget())
    assert [(m.name, m.refcount, m.state) for m in rows] == [
        ("dummy", 0, "live"),
        ("xen_netfront", 2, "coming"),
    ]
    assert rows[0].size == 0x3000


def test_lsmod_on_6_4_module_memory():
    """6.4 replaced core_layout/init_layout with mem[]: sizes and base from there (Debian
    13's 6.12 made lsmod fail with a traceback before)."""
    k = SyntheticKernel(module_mem=True)
    k.add_module(b"dummy", size=0x3000)
    rows = linux.modules(k.kernel_program(), Budget())
    assert [(m.name, m.size, m.address) for m in rows] == [("dummy", 0x3000, 0xFFFF_FFFF_C000_0000)]


def test_lsmod_loop_and_garbage(k):
    a = k.add_module(b"a" * 80)  # no NUL within the 56-byte name
    k.add_module(b"b")
    k.put(a + MODULE["list"], "Q", a + MODULE["list"])
    b = Budget()
    rows = linux.modules(k.kernel_program(), b)
    assert [m.name for m in rows] == ["a" * 56]
    assert not b.complete


# -- RAM map (for dumps) -------------------------------------------------------------------

IOMEM = [
    (0x1000, 0x9FFFF, b"System RAM"),
    (0xA0000, 0xBFFFF, b"Video RAM area"),
    (0x100000, 0x7FFFFFF, b"System RAM"),
    (0x8000000, 0x80FFFFF, b"System RAM"),
    (0xFEE00000, 0xFEE00FFF, b"Local APIC"),
]


def test_ram_ranges_from_iomem(k):
    k.set_iomem(IOMEM)
    b = Budget()
    assert linux.ram_ranges(k.kernel_program(), b) == [(0x1000, 0xA0000), (0x100000, 0x8100000)]
    assert b.complete and not b.warnings


def test_ram_ranges_cycle_and_inverted_entry(k):
    addrs = k.set_iomem(IOMEM[:3] + [(0x9000000, 0x8000000, b"System RAM")])
    k.put(addrs[-1] + 48, "Q", addrs[0])  # the last entry's sibling loops to the first
    b = Budget()
    assert linux.ram_ranges(k.kernel_program(), b) == [(0x1000, 0xA0000), (0x100000, 0x8000000)]
    assert any("inverted" in w for w in b.warnings)
    assert any("cyclic" in w for w in b.warnings) and not b.complete


def test_ram_ranges_wild_pointer_and_no_iomem(k):
    addrs = k.set_iomem(IOMEM[:1] + IOMEM[2:3])
    k.put(addrs[0] + 48, "Q", 0x4141_4141_4141_4141)
    b = Budget()
    assert linux.ram_ranges(k.kernel_program(), b) == [(0x1000, 0xA0000)]
    assert not b.complete
    with pytest.raises(linux.GuestDataError, match="iomem_resource"):
        linux.ram_ranges(SyntheticKernel().kernel_program(), Budget())


# -- kernel log ----------------------------------------------------------------------------

RECORDS = [(1_000_000 * i, b"message %d" % i) for i in range(10)]


def dmesg(k: SyntheticKernel, budget: Budget | None = None):
    budget = budget or Budget()
    return printk.kernel_log(k.kernel_program(), budget), budget


def test_dmesg_sane(k):
    k.set_log(RECORDS + [(99, b"xenvmi-lab: guest xvm-pvh1 is up")])
    rows, b = dmesg(k)
    assert [r.text for r in rows][-1] == "xenvmi-lab: guest xvm-pvh1 is up"
    assert [r.seq for r in rows] == list(range(11)) and b.complete
    assert rows[3].timestamp == pytest.approx(0.003) and rows[3].level == 6


def test_dmesg_wrapped_ring(k):
    recs = [(i, b"x" * 40 + b"%d" % i) for i in range(40)]
    k.set_log(recs, count_bits=4, size_bits=9)  # 16 slots, 512-byte text ring
    rows, b = dmesg(k)
    # Only the newest records still own their text (older blocks were overwritten).
    assert [r.text for r in rows] == [t.decode() for _, t in recs[-len(rows) :]]
    assert [r.seq for r in rows] == list(range(40 - len(rows), 40)) and len(rows) >= 8


def test_dmesg_bogus_head_index(k):
    ring = k.set_log(RECORDS)
    k.put(ring["rb"] + 24, "q", (1 << 61) + 5)  # head_id far away from tail
    rows, b = dmesg(k)
    assert len(rows) <= 16 and not b.complete
    assert any("not reached" in w for w in b.warnings)


@pytest.mark.parametrize(
    "offset, fmt, value, why",
    [
        (0, "I", 60, "implausible ring sizes"),  # count_bits
        (40, "I", 63, "implausible ring sizes"),  # text size_bits
        (8, "Q", 0x1234, "not a kernel address"),  # descs pointer
        (48, "Q", 0xFFFF_8880_7777_0000, "unreadable"),  # text ring unmapped
    ],
)
def test_dmesg_hostile_ring_header(k, offset, fmt, value, why):
    ring = k.set_log(RECORDS)
    k.put(ring["rb"] + offset, fmt, value)
    rows, b = dmesg(k)
    assert rows == [] and any(why in w for w in b.warnings)


def test_dmesg_bad_text_positions(k):
    ring = k.set_log(RECORDS)
    k.put(ring["descs"] + 24 * 2 + 8, "QQ", 5000, 100)  # begin after next, other wrap
    k.put(ring["infos"] + 32 * 3 + 16, "H", 0xFFFF)  # text_len beyond the block
    k.put_bytes(ring["data"] + 8, b"\x1b]0;\x07\xff")  # control characters in text
    rows, b = dmesg(k)
    assert 2 not in [r.seq for r in rows]
    assert rows[0].text.isprintable()
    assert {r.seq: r.text for r in rows}[3] == "message 3"
    assert any("impossible text position" in w for w in b.warnings)


def test_dmesg_no_prb(k):
    k.put(k.prb, "Q", 0)
    rows, b = dmesg(k)
    assert rows == [] and not b.complete


def test_state_char():
    assert linux.state_char(0, 0) == "R"
    assert linux.state_char(1, 0) == "S"
    assert linux.state_char(2, 0) == "D"
    assert linux.state_char(0, 0x20) == "Z"
    assert linux.state_char(0x402, 0) == "I"
    assert linux.state_char(0x1000, 0) == "S"
    assert linux.state_char(0x40, 0) == "P"


# -- kernel log before 5.10 (log_buf) --------------------------------------------------


def legacy(described: str, **kw) -> SyntheticKernel:
    """A kernel whose log is Linux 3.5-5.9's log_buf, its record described by the kernel's
    types ("btf") or only by VMCOREINFO ("vmcoreinfo")."""
    return SyntheticKernel(legacy_log=described, **kw)


def legacy_dmesg(k: SyntheticKernel, budget: Budget | None = None):
    budget = budget or Budget()
    kp = k.kernel_program()
    if k.legacy_log == "vmcoreinfo":
        kp.vmcoreinfo = types.SimpleNamespace(fields=k.legacy_vmcoreinfo())
    return printk.kernel_log(kp, budget), budget


@pytest.mark.parametrize("described", ["btf", "vmcoreinfo"])
def test_legacy_dmesg_sane(described):
    k = legacy(described)
    k.set_legacy_log(RECORDS + [(99, b"xenvmi-lab: guest xvm-pvh1 is up")], level=4, facility=3)
    rows, b = legacy_dmesg(k)
    assert [r.text for r in rows] == [t.decode() for _, t in RECORDS] + [
        "xenvmi-lab: guest xvm-pvh1 is up"
    ]
    assert [r.seq for r in rows] == list(range(11)) and b.complete, b.warnings
    assert rows[3].timestamp == pytest.approx(0.003)
    assert {(r.level, r.facility) for r in rows} == {(4, 3)}
    assert {r.caller for r in rows} == ({"C1"} if described == "btf" else {None})


@pytest.mark.parametrize("described", ["btf", "vmcoreinfo"])
def test_legacy_dmesg_wrapped(described):
    """More records than fit: the oldest made room, the reader follows the zero-length
    marker back to the buffer's start, and seq numbers continue from log_first_seq."""
    recs = [(i, b"line %03d " % i + b"x" * (i % 7) * 5) for i in range(60)]
    k = legacy(described)
    log = k.set_legacy_log(recs, buf_len=1024)
    assert log["log_first_seq"] > 0 and log["log_next_idx"] < log["log_first_idx"]
    rows, b = legacy_dmesg(k)
    first = log["log_first_seq"]
    assert [r.seq for r in rows] == list(range(first, 60)) and b.complete, b.warnings
    assert [r.text for r in rows] == [t.decode() for _, t in recs[first:]]


@pytest.mark.parametrize(
    "what, value",
    [
        ("log_first_idx", 7),  # not a record boundary: lengths lead nowhere
        ("log_next_idx", 4000),  # beyond the buffer
        ("log_buf_len", 1 << 40),  # implausible size
        ("log_buf", 0x1234),  # not a kernel address
    ],
)
def test_legacy_dmesg_hostile_indexes(what, value):
    k = legacy("btf")
    log = k.set_legacy_log(RECORDS)
    k.put(log[f"&{what}"], "Q", value)
    t0 = time.monotonic()
    rows, b = legacy_dmesg(k)
    assert time.monotonic() - t0 < 5 and not b.complete and b.warnings
    assert len(rows) <= len(RECORDS)


def test_legacy_dmesg_log_buf_aligned_to_four():
    """Found on Ubuntu 20.04's 5.4 captured under QEMU (tests/lab_host/test_x86_guest.py):
    __log_buf is aligned to LOG_ALIGN, 4 where unaligned access is cheap (x86), and a
    pointer check that wanted 8 refused the real buffer ("implausible log_buf")."""
    k = legacy("btf")
    log = k.set_legacy_log(RECORDS)
    moved = k.alloc(1024 + 4) + 4
    assert moved % 8 == 4
    k.put_bytes(moved, bytes(k.mem[log["buf"] - BASE : log["buf"] - BASE + 1024]))
    k.put(log["&log_buf"], "Q", moved)
    rows, b = legacy_dmesg(k)
    assert [r.text for r in rows] == [t.decode() for _, t in RECORDS] and b.complete, b.warnings


def test_legacy_dmesg_looping_lengths():
    """A record whose length sends the walk back where it was cannot loop: every
    record is visited at most once per buffer pass."""
    k = legacy("vmcoreinfo")
    log = k.set_legacy_log(RECORDS)
    k.put(log["buf"] + 8, "H", 0)  # the first record claims the end-marker
    k.put(log["&log_next_idx"], "Q", 512)  # and the end is somewhere never reached
    rows, b = legacy_dmesg(k)
    assert rows == [] and not b.complete


def test_legacy_dmesg_undescribed():
    k = legacy("vmcoreinfo")
    k.set_legacy_log(RECORDS)
    b = Budget()
    rows = printk.kernel_log(k.kernel_program(), b)  # no VMCOREINFO given
    assert rows == [] and any("log_buf" in w for w in b.warnings)
