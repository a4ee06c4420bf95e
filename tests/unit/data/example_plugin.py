"""rootprocs: user processes running as root in a Linux guest, read from its memory."""

from __future__ import annotations

from dataclasses import dataclass

from xenvmi.plugins import Context, Plugin


@dataclass(frozen=True)
class RootProcess:
    pid: int
    comm: str


class RootProcs(Plugin):
    name = "rootprocs"
    version = "1.0"
    api_version = 1
    description = "User processes running as root in a Linux guest."
    requires = ("linux-guest", "root")
    needs_domain = True
    row = RootProcess
    options = {"limit": "look at N processes at most (default 10000)"}

    def run(self, ctx: Context):
        import drgn  # imported here: without drgn the plugin is listed as unavailable

        from xenvmi.guest.bounded import c_string, walk_list

        prog = ctx.kernel().prog  # the guest's kernel; every read obeys ctx's deadline
        limit = ctx.option("limit", 10000, int)
        # Bounded: stops at `limit`, a loop, a wild pointer or the deadline (and says so).
        for task in walk_list(
            prog["init_task"].tasks,
            "struct task_struct",
            "tasks",
            ctx.budget,
            max_count=limit,
            what="task list",
        ):
            try:
                if task.mm.value_() == 0:
                    continue  # a kernel thread
                if task.cred.euid.val.value_() == 0:
                    yield RootProcess(task.pid.value_(), c_string(task.comm.string_(), 16))
            except drgn.FaultError as e:  # guest memory is hostile: skip, warn, go on
                ctx.warn(f"task at {task.value_():#x} unreadable: {e}")
