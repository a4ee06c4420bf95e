"""files: open files of a Linux guest's processes (fd, mode, position, path), from memory.

Why: `ls -l /proc/PID/fd` in a guest you cannot (or should not) log into: which log a
daemon writes, what a suspicious process holds open. This is drgn's ``for_each_file`` and
``d_path`` rewritten with bounds, because guest memory is hostile: ``max_fds`` is capped,
the open-fd bitmap is read in one bounded read, every pointer is checked, and the dentry
and mount walks stop at a depth, on a loop and at the deadline.

Options: ``pid=N`` (default 1) or ``pid=all`` (every process).
"""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.plugins import Context, Plugin

# drgn is imported inside the functions: without it this plugin is listed as unavailable.

MAX_TASKS, MAX_FDS, MAX_DEPTH, NAME_MAX = 65_536, 65_536, 256, 255
FMODE_READ, FMODE_WRITE = 0x1, 0x2
#: Pseudo filesystems whose dentries have d_dname: how the kernel names their files.
PSEUDO = {"pipefs": "pipe:[{ino}]", "sockfs": "socket:[{ino}]", "anon_inodefs": "anon_inode:{name}"}


@dataclass(frozen=True)
class OpenFile:
    pid: int
    comm: str
    fd: int
    mode: str  # r, w, rw or -
    pos: int
    path: str


def mode_text(f_mode: int) -> str:
    mode = ("r" if f_mode & FMODE_READ else "") + ("w" if f_mode & FMODE_WRITE else "")
    return mode or "-"


def _string(prog, ptr: int, limit: int) -> str:
    from xenvmi.guest.bounded import c_string, is_kernel_pointer

    if not is_kernel_pointer(ptr, align=1):
        return "?"
    return c_string(prog.read(ptr, limit), limit)


def _dentry_name(prog, dentry) -> str:
    qstr = dentry.d_name
    return _string(prog, qstr.name.value_(), min(qstr.len.value_(), NAME_MAX)) or "?"


def _pseudo_name(prog, dentry) -> str | None:
    """The name of a pipe/socket/anon-inode file (dentries with a d_dname method)."""
    from drgn import Object

    from xenvmi.guest.bounded import is_kernel_pointer

    ops = dentry.d_op.value_()
    if not ops or not is_kernel_pointer(ops):
        return None
    if not Object(prog, "struct dentry_operations", address=ops).d_dname.value_():
        return None
    fstype = _string(prog, dentry.d_sb.s_type.name.value_(), 32)
    inode = dentry.d_inode.value_()
    ino = (
        Object(prog, "struct inode", address=inode).i_ino.value_()
        if is_kernel_pointer(inode)
        else "?"
    )
    return PSEUDO.get(fstype, fstype + ":[{ino}]").format(ino=ino, name=_dentry_name(prog, dentry))


def d_path(prog, path, budget) -> str:
    """drgn's d_path (dentry names up to the mount root, then the mount point in the
    parent mount, until the root mount) with a depth limit and loop detection."""
    from drgn import Object, container_of

    from xenvmi.guest.bounded import is_kernel_pointer

    vfsmnt, dentry = path.mnt.value_(), path.dentry.value_()
    if not (is_kernel_pointer(vfsmnt) and is_kernel_pointer(dentry)):
        return "?"
    pseudo = _pseudo_name(prog, Object(prog, "struct dentry", address=dentry))
    if pseudo is not None:
        return pseudo
    mnt = container_of(Object(prog, "struct vfsmount *", vfsmnt), "struct mount", "mnt")
    parts: list[str] = []
    seen: set[tuple[int, int]] = set()
    while True:
        here = (dentry, mnt.value_())
        if here in seen or len(seen) >= MAX_DEPTH or budget.expired():
            budget.warn(
                f"path of dentry {path.dentry.value_():#x}: cut after {len(seen)} "
                "steps (loop, too deep or deadline)"
            )
            return "?/" + "/".join(reversed(parts))
        seen.add(here)
        if dentry == mnt.mnt.mnt_root.value_():
            parent = mnt.mnt_parent.value_()
            if parent == mnt.value_():
                break  # the root mount
            dentry = mnt.mnt_mountpoint.value_()
            if not (is_kernel_pointer(parent) and is_kernel_pointer(dentry)):
                return "?/" + "/".join(reversed(parts))
            mnt = Object(prog, "struct mount *", parent)
            continue
        d = Object(prog, "struct dentry", address=dentry)
        up = d.d_parent.value_()
        if up == dentry:
            break  # a filesystem root that is no mount's root (detached)
        parts.append(_dentry_name(prog, d))
        if not is_kernel_pointer(up):
            return "?/" + "/".join(reversed(parts))
        dentry = up
    return "/" + "/".join(reversed(parts))


def task_files(prog, task, budget):
    """(fd, ``struct file *``) of every open fd of ``task``, like drgn's for_each_file."""
    from drgn import Object

    from xenvmi.guest.bounded import is_kernel_pointer

    files = task.files.value_()
    if files == 0:
        return
    fdt_ptr = (
        Object(prog, "struct files_struct", address=files).fdt.value_()
        if is_kernel_pointer(files)
        else 0
    )
    if not is_kernel_pointer(fdt_ptr):
        budget.warn(f"pid {task.tgid.value_()}: bad files pointer")
        return
    fdt = Object(prog, "struct fdtable", address=fdt_ptr).read_()
    max_fds, fds, bitmap = (fdt.max_fds.value_(), fdt.fd.value_(), fdt.open_fds.value_())
    if max_fds > MAX_FDS:
        budget.warn(
            f"pid {task.tgid.value_()}: max_fds {max_fds}; only the first {MAX_FDS} fds are read"
        )
        max_fds = MAX_FDS
    if not (is_kernel_pointer(fds) and is_kernel_pointer(bitmap)):
        budget.warn(f"pid {task.tgid.value_()}: bad fd table pointers")
        return
    words = prog.read(bitmap, (max_fds + 63) // 64 * 8)
    for fd in range(max_fds):
        if not words[fd // 8] >> (fd % 8) & 1:
            continue
        if budget.expired():
            budget.warn(f"pid {task.tgid.value_()}: stopped at the deadline at fd {fd}")
            return
        file = prog.read_u64(fds + 8 * fd)
        if file == 0:
            continue  # reserved by alloc_fd, not installed yet
        if not is_kernel_pointer(file):
            budget.warn(f"pid {task.tgid.value_()} fd {fd}: bad file pointer {file:#x}")
            continue
        yield fd, Object(prog, "struct file *", file)


def _task_rows(prog, task, budget) -> list[OpenFile]:
    from xenvmi.guest.bounded import DeadlineExceeded, c_string
    from xenvmi.guest.linux import ENTRY_ERRORS

    pid, comm = task.tgid.value_(), c_string(task.comm.string_(), 16)
    rows = []
    for fd, file in task_files(prog, task, budget):
        try:
            f = file[0].read_()
            rows.append(
                OpenFile(
                    pid,
                    comm,
                    fd,
                    mode_text(f.f_mode.value_()),
                    f.f_pos.value_(),
                    d_path(prog, f.f_path, budget),
                )
            )
        except DeadlineExceeded:
            raise
        except ENTRY_ERRORS as e:
            budget.warn(f"pid {pid} fd {fd}: unreadable file ({e})")
    return rows


def file_rows(prog, budget, pid: int | None) -> list[OpenFile]:
    """Open files of process ``pid`` (None: of every process)."""
    from xenvmi.guest.bounded import DeadlineExceeded, walk_list
    from xenvmi.guest.linux import ENTRY_ERRORS

    out: list[OpenFile] = []
    found = False
    try:
        for task in walk_list(
            prog["init_task"].tasks,
            "struct task_struct",
            "tasks",
            budget,
            max_count=MAX_TASKS,
            what="task list",
        ):
            try:
                if pid is not None and task.tgid.value_() != pid:
                    continue
                found = True
                out += _task_rows(prog, task, budget)
            except DeadlineExceeded:
                raise
            except ENTRY_ERRORS as e:
                budget.warn(f"task at {task.value_():#x}: files unreadable ({e})")
            if pid is not None:
                break
    except DeadlineExceeded:
        budget.warn(f"stopped at the deadline after {len(out)} files")
    if pid is not None and not found and budget.complete:
        from xenvmi.errors import NotFoundError

        raise NotFoundError(f"no process with pid {pid} in the guest")
    return out


def _pid(text: str) -> int | None:
    return None if text == "all" else int(text)


_pid.__name__ = "pid (a number or 'all')"


class Files(Plugin):
    name = "files"
    version = "1.0"
    description = "Open files of a Linux guest's process (fd, mode, path), from its memory."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = OpenFile
    options = {"pid": "process id, or 'all' (default 1)"}

    def run(self, ctx: Context):
        pid = ctx.option("pid", 1, _pid)
        return file_rows(ctx.kernel().prog, ctx.budget, pid)
