"""plugins/netdev.py and plugins/files.py on a synthetic kernel: right on sane memory,
bounded and partial (never hung, never crashed) on hostile memory.

The kernel here extends xenvmi.guest.synthetic with the structs the two plugins read
(net, net_device, files_struct, fdtable, file, path, mount, dentry, qstr with the
kernel's anonymous union), at simplified offsets: the plugins only use member names.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("drgn")

from xenvmi import guests, plugins
from xenvmi.backends.memory import BytesMemory
from xenvmi.guest.bounded import Budget
from xenvmi.guest.btf_writer import BtfWriter
from xenvmi.guest.synthetic import TASK_SIZE, SyntheticKernel
from xenvmi.plugins import loader, requirements

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)
FILES_OFF = 88  # task_struct.files, after the synthetic task's last member
NET = {"list": 0, "dev_base_head": 16, "ns": 32}
DEV = {
    "name": 0,
    "dev_list": 16,
    "flags": 32,
    "ifindex": 36,
    "mtu": 40,
    "addr_len": 44,
    "operstate": 45,
    "dev_addr": 48,
}
DENTRY = {"d_parent": 0, "d_name": 8, "d_inode": 24, "d_op": 32, "d_sb": 40}
MOUNT = {"mnt_parent": 0, "mnt_mountpoint": 8, "mnt": 16}


def _btf() -> bytes:
    w = BtfWriter()
    ulong = w.int("long unsigned int", 8)
    int_ = w.int("int", 4, signed=True)
    uint = w.int("unsigned int", 4)
    char = w.int("char", 1, signed=True, char=True)
    uchar = w.int("unsigned char", 1)
    u32 = w.typedef("u32", uint)
    u64 = w.typedef("u64", w.int("long long unsigned int", 8))
    loff = w.typedef("loff_t", w.int("long long int", 8, signed=True))
    pid_t = w.typedef("pid_t", int_)
    lh = w.struct("list_head", 16)
    w.set_members(lh, [("next", w.ptr(lh), 0), ("prev", w.ptr(lh), 64)])
    kuid = w.typedef("kuid_t", w.struct(None, 4, [("val", uint, 0)]))
    cred = w.struct("cred", 16, [("uid", kuid, 32), ("euid", kuid, 64)])
    mm = w.struct("mm_struct", 8, [("pgd", w.ptr(ulong), 0)])
    # files
    fst = w.struct("file_system_type", 8, [("name", w.ptr(w.const(char)), 0)])
    sb = w.struct("super_block", 8, [("s_type", w.ptr(fst), 0)])
    inode = w.struct("inode", 16, [("i_ino", ulong, 0), ("i_sb", w.ptr(sb), 64)])
    dentry = w.struct("dentry", 64)
    dops = w.struct(
        "dentry_operations",
        8,
        [("d_dname", w.ptr(w.func_proto(w.ptr(char), [("d", w.ptr(dentry))])), 0)],
    )
    hl = w.struct(None, 8, [("hash", u32, 0), ("len", u32, 32)])
    qstr = w.struct(
        "qstr",
        16,
        [
            (None, w.union(None, 8, [(None, hl, 0), ("hash_len", u64, 0)]), 0),
            ("name", w.ptr(w.const(uchar)), 64),
        ],
    )
    w.set_members(
        dentry,
        [
            ("d_parent", w.ptr(dentry), 0),
            ("d_name", qstr, 64),
            ("d_inode", w.ptr(inode), 192),
            ("d_op", w.ptr(w.const(dops)), 256),
            ("d_sb", w.ptr(sb), 320),
            ("d_iname", w.array(uchar, 16, int_), 384),
        ],
    )
    vfsmount = w.struct(
        "vfsmount",
        24,
        [("mnt_root", w.ptr(dentry), 0), ("mnt_sb", w.ptr(sb), 64), ("mnt_flags", int_, 128)],
    )
    mount = w.struct("mount", 48)
    w.set_members(
        mount,
        [
            ("mnt_parent", w.ptr(mount), 0),
            ("mnt_mountpoint", w.ptr(dentry), 64),
            ("mnt", vfsmount, 128),
        ],
    )
    path = w.struct("path", 16, [("mnt", w.ptr(vfsmount), 0), ("dentry", w.ptr(dentry), 64)])
    file = w.struct(
        "file",
        32,
        [("f_path", path, 0), ("f_mode", uint, 128), ("f_flags", uint, 160), ("f_pos", loff, 192)],
    )
    fdt = w.struct(
        "fdtable",
        32,
        [
            ("max_fds", uint, 0),
            ("fd", w.ptr(w.ptr(file)), 64),
            ("close_on_exec", w.ptr(ulong), 128),
            ("open_fds", w.ptr(ulong), 192),
        ],
    )
    files = w.struct("files_struct", 8, [("fdt", w.ptr(fdt), 0)])
    task = w.struct("task_struct", TASK_SIZE)
    w.set_members(
        task,
        [
            ("__state", uint, 0),
            ("exit_state", int_, 32),
            ("tasks", lh, 64),
            ("pid", pid_t, 192),
            ("tgid", pid_t, 224),
            ("comm", w.array(char, 16, int_), 256),
            ("real_parent", w.ptr(task), 384),
            ("cred", w.ptr(w.const(cred)), 448),
            ("mm", w.ptr(mm), 512),
            ("start_time", u64, 576),
            ("start_boottime", u64, 640),
            ("files", w.ptr(files), 8 * FILES_OFF),
        ],
    )
    # network
    ns = w.struct("ns_common", 8, [("inum", uint, 0)])
    w.struct("net", 48, [("list", lh, 0), ("dev_base_head", lh, 128), ("ns", ns, 256)])
    w.struct(
        "net_device",
        64,
        [
            ("name", w.array(char, 16, int_), 0),
            ("dev_list", lh, 128),
            ("flags", uint, 256),
            ("ifindex", int_, 288),
            ("mtu", uint, 320),
            ("addr_len", uchar, 352),
            ("operstate", uchar, 360),
            ("dev_addr", w.ptr(w.const(uchar)), 384),
        ],
    )
    return w.build()


class PluginKernel(SyntheticKernel):
    """SyntheticKernel plus network namespaces, devices, mounts, dentries and fd tables."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.btf = _btf()
        self.netns = self.alloc(16, "net_namespace_list")
        self.set_list_empty(self.netns)
        self.init_net = self.add_net(4026531840, symbol="init_net")

    def string(self, text: bytes) -> int:
        addr = self.alloc(len(text) + 1)
        self.put_bytes(addr, text + b"\0")
        return addr

    # -- network ---------------------------------------------------------------------------
    def add_net(self, inum: int, symbol: str | None = None) -> int:
        net = self.alloc(48, symbol)
        self.set_list_empty(net + NET["dev_base_head"])
        self.put(net + NET["ns"], "I", inum)
        self.list_append(self.netns, net + NET["list"])
        return net

    def add_dev(
        self,
        net: int,
        name: bytes,
        ifindex: int,
        mtu: int = 1500,
        flags: int = 0x1003,
        mac: bytes = b"\x00\x16\x3e\x01\x02\x03",
        operstate: int = 6,
    ) -> int:
        dev = self.alloc(64)
        self.put_bytes(dev, name[:16].ljust(16, b"\0"))
        self.put(dev + DEV["flags"], "IiIBB", flags, ifindex, mtu, len(mac), operstate)
        self.put(dev + DEV["dev_addr"], "Q", self.string(mac) if mac else 0)
        self.list_append(net + NET["dev_base_head"], dev + DEV["dev_list"])
        return dev

    # -- files -----------------------------------------------------------------------------
    def fstype(self, name: bytes) -> int:
        fst = self.alloc(8)
        self.put(fst, "Q", self.string(name))
        sb = self.alloc(8)
        self.put(sb, "Q", fst)
        return sb

    def dentry(self, name: bytes, parent: int | None, sb: int, ino: int = 0, d_op: int = 0) -> int:
        d = self.alloc(64)
        inode = self.alloc(16)
        self.put(inode, "QQ", ino, sb)
        self.put(d, "QIIQQQQ", parent or d, 0, len(name), self.string(name), inode, d_op, sb)
        return d

    def mount(self, root: int, parent: int | None = None, mountpoint: int = 0) -> int:
        m = self.alloc(48)
        self.put(m, "QQQ", parent or m, mountpoint, root)
        return m + MOUNT["mnt"]  # the struct vfsmount inside

    def file(self, vfsmount: int, dentry: int, mode: int = 3, pos: int = 0) -> int:
        f = self.alloc(32)
        self.put(f, "QQIIq", vfsmount, dentry, mode, 0, pos)
        return f

    def fd_table(self, task: int, files: dict[int, int], max_fds: int = 64) -> dict:
        fdarr = self.alloc(8 * 64)
        bitmap = self.alloc(8)
        word = 0
        for fd, f in files.items():
            self.put(fdarr + 8 * fd, "Q", f)
            word |= 1 << fd
        self.put(bitmap, "Q", word)
        fdt = self.alloc(32)
        self.put(fdt, "I4xQQQ", max_fds, fdarr, 0, bitmap)
        fs = self.alloc(8)
        self.put(fs, "Q", fdt)
        self.put(task + FILES_OFF, "Q", fs)
        return {"fdt": fdt, "fd": fdarr, "bitmap": bitmap}


def shipped(name: str):
    entry = loader._load_file((ROOT / "plugins" / f"{name}.py").resolve())
    assert entry.cls is not None, entry.info.error
    return sys.modules[entry.cls.__module__]


@pytest.fixture
def k() -> PluginKernel:
    """A guest like the lab's: lo and dummy0, pid 1 with fds on /dev/console."""
    k = PluginKernel()
    k.lo = k.add_dev(k.init_net, b"lo", 1, mtu=65536, flags=0x8, mac=b"\0" * 6, operstate=0)
    k.add_dev(k.init_net, b"dummy0", 2, flags=0x82, mac=b"\x5a\x11\x22\x33\x44\x55", operstate=2)
    rootfs = k.fstype(b"rootfs")
    k.root = k.dentry(b"/", None, rootfs)
    k.dev = k.dentry(b"dev", k.root, rootfs)
    k.console = k.dentry(b"console", k.dev, rootfs)
    k.rootmnt = k.mount(k.root)
    devtmpfs = k.fstype(b"devtmpfs")
    k.devroot = k.dentry(b"/", None, devtmpfs)
    k.devmnt = k.mount(k.devroot, parent=k.rootmnt - MOUNT["mnt"], mountpoint=k.dev)
    null = k.dentry(b"null", k.devroot, devtmpfs)
    pipefs = k.fstype(b"pipefs")
    dops = k.alloc(8)
    k.put(dops, "Q", 0xFFFF_FFFF_8100_1000)
    pipe = k.dentry(b"", None, pipefs, ino=4242, d_op=dops)
    k.init = k.add_task(1, b"init")
    con = k.file(k.rootmnt, k.console)
    k.tables = k.fd_table(
        k.init,
        {0: con, 1: con, 2: con, 3: k.file(k.devmnt, null, 1, 7), 10: k.file(k.rootmnt, pipe, 2)},
    )
    k.sh = k.add_task(42, b"sh", parent=k.init)
    k.fd_table(k.sh, {0: con})
    k.add_task(2, b"kthreadd")  # files == NULL
    return k


# -- netdev --------------------------------------------------------------------------------


def test_netdev_rows(k):
    rows = shipped("netdev").netdev_rows(k.program(), b := Budget())
    assert [(r.name, r.ifindex, r.mtu, r.up, r.flags, r.operstate) for r in rows] == [
        ("lo", 1, 65536, False, "LOOPBACK", "unknown"),
        ("dummy0", 2, 1500, False, "BROADCAST,NOARP", "down"),
    ]
    assert rows[0].mac == "00:00:00:00:00:00" and rows[1].mac == "5a:11:22:33:44:55"
    assert {r.netns for r in rows} == {4026531840} and b.complete and not b.warnings


def test_netdev_namespaces_and_hostile_devices(k):
    other = k.add_net(4026532000)
    k.add_dev(other, b"eth0", 2, flags=0x1043)
    wild = k.add_dev(other, b"x" * 16, 3)  # no NUL in the name
    k.put(wild + DEV["dev_addr"], "Q", 0x4141)  # MAC pointer into nowhere
    rows = shipped("netdev").netdev_rows(k.program(), b := Budget())
    by_name = {r.name: r for r in rows}
    assert by_name["eth0"].netns == 4026532000 and by_name["eth0"].up
    assert by_name["eth0"].flags == "UP,BROADCAST,MULTICAST"
    assert by_name["x" * 16].mac is None and b.complete


def test_netdev_loop_is_cut(k):
    k.put(k.lo + DEV["dev_list"], "Q", k.lo + DEV["dev_list"])  # lo -> lo -> ...
    rows = shipped("netdev").netdev_rows(k.program(), b := Budget())
    assert [r.name for r in rows] == ["lo"] and not b.complete
    assert any("loops back" in w for w in b.warnings)


def test_netdev_without_namespace_list(k):
    del k.symbols["net_namespace_list"]
    rows = shipped("netdev").netdev_rows(k.program(), b := Budget())
    assert [r.name for r in rows] == ["lo", "dummy0"]
    assert any("only the initial namespace" in w for w in b.warnings)


def test_flag_names():
    nd = shipped("netdev")
    assert nd.flag_names(0x1043) == "UP,BROADCAST,MULTICAST"  # RUNNING (0x40) is derived
    assert nd.flag_names(0) == ""


# -- files ---------------------------------------------------------------------------------


def test_files_of_pid_1(k):
    rows = shipped("files").file_rows(k.program(), b := Budget(), 1)
    assert [(r.fd, r.mode, r.path) for r in rows] == [
        (0, "rw", "/dev/console"),
        (1, "rw", "/dev/console"),
        (2, "rw", "/dev/console"),
        (3, "r", "/dev/null"),
        (10, "w", "pipe:[4242]"),
    ]
    assert rows[3].pos == 7 and {r.comm for r in rows} == {"init"} and b.complete


def test_files_of_every_process(k):
    rows = shipped("files").file_rows(k.program(), Budget(), None)
    assert [(r.pid, r.fd) for r in rows][-1] == (42, 0) and len(rows) == 6


def test_files_unknown_pid(k):
    from xenvmi.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no process with pid 999"):
        shipped("files").file_rows(k.program(), Budget(), 999)


def test_files_dentry_loop_terminates(k):
    k.put(k.dev + DENTRY["d_parent"], "Q", k.console)  # console -> dev -> console -> ...
    rows = shipped("files").file_rows(k.program(), b := Budget(), 1)
    assert [r.path for r in rows][:4] == ["?/dev/console"] * 3 + ["?/console/dev/null"]
    assert any("cut after" in w for w in b.warnings)


def test_files_mount_loop_terminates(k):
    parent = k.rootmnt - MOUNT["mnt"]
    k.put(parent + MOUNT["mnt_parent"], "Q", k.devmnt - MOUNT["mnt"])  # two mounts in a ring
    k.put(parent + MOUNT["mnt_mountpoint"], "Q", k.devroot)
    rows = shipped("files").file_rows(k.program(), b := Budget(), 1)
    assert len(rows) == 5 and rows[0].path.startswith("?/") and rows[0].path.endswith("/console")
    assert any("cut after" in w for w in b.warnings)


def test_files_hostile_fd_table(k):
    k.put(k.tables["fdt"], "I", 0x7FFF_FFFF)  # max_fds beyond any real table
    k.put(k.tables["fd"] + 8 * 1, "Q", 0x1234)  # a wild file pointer at fd 1
    rows = shipped("files").file_rows(k.program(), b := Budget(), 1)
    # Past the real table the bitmap and fd array are other memory: whatever it holds is
    # read (at most 65536 fds), checked pointer by pointer, never trusted further.
    assert [r.fd for r in rows][:4] == [0, 2, 3, 10] and max(r.fd for r in rows) < 65536
    assert any("max_fds" in w for w in b.warnings)
    assert any("fd 1: bad file pointer" in w for w in b.warnings)


def test_files_unreadable_file_is_a_warning(k):
    k.put(k.tables["fd"] + 8 * 2, "Q", 0xFFFF_8880_7777_0000)  # kernel-looking, unmapped
    rows = shipped("files").file_rows(k.program(), b := Budget(), 1)
    assert 2 not in [r.fd for r in rows] and any("fd 2" in w for w in b.warnings)


def test_files_deadline():
    k = PluginKernel(size=4 << 20)
    for pid in range(1, 2000):
        k.add_task(pid, b"t")
    # An already-spent budget: 2000 tasks without files walk in ~20 ms on a fast machine,
    # so a 20 ms budget made this test pass or fail by chance.
    rows = shipped("files").file_rows(k.program(), b := Budget(0), None)
    assert rows == [] and not b.complete and any("deadline" in w for w in b.warnings)


def test_mode_text():
    assert [shipped("files").mode_text(m) for m in (0, 1, 2, 3)] == ["-", "r", "w", "rw"]


# -- through the plugin API (ctx.kernel()) -------------------------------------------------


@pytest.fixture
def live(k, monkeypatch):
    for name in requirements.CHECKS:
        monkeypatch.setitem(requirements.CHECKS, name, lambda: None)
    monkeypatch.delenv(loader.ENV_PATH, raising=False)
    kp = k.kernel_program()
    monkeypatch.setattr(guests, "open_memory", lambda d: BytesMemory(bytearray(4096), name=str(d)))
    monkeypatch.setattr(guests.Guest, "kernel_program", lambda self: kp)
    return kp


def test_run_netdev_and_files(live):
    res = plugins.run("netdev", "g")
    assert res.error is None and res.complete and [r.name for r in res.rows] == ["lo", "dummy0"]
    res = plugins.run("files", "g", options={"pid": "42"})
    assert [(r.pid, r.path) for r in res.rows] == [(42, "/dev/console")]
    assert live.budget.seconds == 120  # guest reads obey the run's deadline
    res = plugins.run("files", "g", options={"pid": "x"})
    assert res.exit_code == 2 and "valid pid" in res.error
    res = plugins.run("files", "g", options={"pid": "7"})
    assert res.exit_code == 3


def test_guest_plugins_without_drgn_are_unavailable_not_broken(monkeypatch):
    monkeypatch.setitem(requirements.CHECKS, "drgn", lambda: "drgn: pip install drgn")
    infos = {i.name: i for i in plugins.discover()}
    for name in ("netdev", "files"):
        assert infos[name].error is None and "drgn: pip install drgn" in infos[name].why_not
