"""`xenvmi lab ...`: build, boot and use a real Xen host under QEMU (no KVM needed): Xen 4.17
on Debian 12 by default, Xen 4.20 on Debian 13 with ``--release trixie``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from xenvmi.commands import add_command, usage
from xenvmi.errors import LabError, UsageError
from xenvmi.lab import releases, remote  # image and vm are imported where used: they are heavy
from xenvmi.lab.paths import DEFAULT_PORT, LabPaths

DOM0_PY = remote.REMOTE_PY

EXAMPLES = """  xenvmi lab up                     build (first time ~5 min) and boot; start the guests
  xenvmi lab up --release trixie    the same on Debian 13 (Xen 4.20, Python 3.13)
  xenvmi lab up --arch arm64        an arm64 Xen host (Cortex-A57, emulated)
  xenvmi lab exec -- xl list        run a command in dom0 (exit code passed through)
  xenvmi lab exec -- xenvmi list    run the synced working tree's xenvmi in dom0
  xenvmi lab check --runs 100       prove the emulated machine computes correctly
  xenvmi lab ssh                    a root shell in dom0
  xenvmi lab down                   stop the VM (the cached image stays)
"""  # noqa: E501  (help text: the examples' columns are what --help prints)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _state(paths: LabPaths):
    from xenvmi.lab import vm

    state = vm.running(paths)
    if state is None:
        raise LabError("the lab is not running: start it with `xenvmi lab up`")
    return state


def cmd_deps(args) -> int:
    """Install the host packages the lab needs (Debian/Ubuntu, as root)."""
    from xenvmi.lab import image

    image.install_host_packages(log=_log)
    return 0


def cmd_build(args) -> int:
    from xenvmi.lab import image

    release = releases.get(args.release, args.arch)
    built = image.build(LabPaths.default(), log=_log, release=release)
    print(built)
    return 0


def cmd_up(args) -> int:
    from xenvmi.lab import image, vm

    paths = LabPaths.default()
    release = releases.get(args.release, args.arch)
    t0 = time.monotonic()
    state = vm.running(paths)
    if state and args.rebuild:
        vm.stop(paths)
        state = None
    if state and state.release != release.name:
        raise LabError(
            f"the lab running in {paths.root} is Debian {state.release}: "
            "`xenvmi lab down` first, or set XENVMI_LAB_DIR for a second lab"
        )
    if args.rebuild:
        image.ensure_key(paths)
        image._remove_tree(paths.image(image.recipe_digest(paths, release)))
    if state is None:
        img = image.build(paths, log=_log, release=release)
        _log(
            f"[{time.monotonic() - t0:5.0f}s] booting Xen {release.xen} ({release.name}) "
            f"under QEMU (ssh on 127.0.0.1:{args.port})"
        )
        started = time.monotonic()  # QEMU's -daemonize returns once it is set up: seconds
        state = vm.boot(paths, img, args.port, args.memory, release=release.name, arch=release.arch)
        vm.wait_ssh(paths, state, args.boot_timeout, log=_log)
        took = time.monotonic() - started
        _log(f"[{time.monotonic() - t0:5.0f}s] dom0 answers ssh ({took:.0f}s after QEMU start)")
    else:
        _log(f"lab already running (pid {state.pid}, port {state.port})")
    if remote.source_root():
        sent = remote.sync(paths, state.port)
        _log(f"[{time.monotonic() - t0:5.0f}s] synced the working tree ({sent // 1024} KiB)")
    # the other releases' kernels are amd64 kernels: an arm64 lab's guests run dom0's own
    if not args.no_guests and not args.no_kernels and release.arch == "amd64":
        _push_kernels(paths, state.port)
        _log(f"[{time.monotonic() - t0:5.0f}s] guest kernels of other releases in dom0")
    if not args.no_guests:
        _log(f"[{time.monotonic() - t0:5.0f}s] starting the lab guests")
        # dom0 judges each guest's boot by its progress; no clock here can know better
        res = remote.run(
            paths,
            state.port,
            f"{DOM0_PY} -m xenvmi.lab.dom0 start",
            timeout=None,
            check=False,
            capture=False,
        )
        if res.returncode != 0:
            raise LabError("not every lab guest came up (see above); `xenvmi lab log` shows Xen's")
    if args.check_runs:
        _log(f"[{time.monotonic() - t0:5.0f}s] integrity check ({args.check_runs} runs)")
        res = remote.run(
            paths,
            state.port,
            f"{DOM0_PY} -m xenvmi.lab.integrity --runs {args.check_runs}",
            timeout=60 * args.check_runs + 300,
            check=False,
            capture=False,
        )
        if res.returncode != 0:
            raise LabError("the lab failed its integrity check: its results cannot be trusted")
    _log(f"[{time.monotonic() - t0:5.0f}s] lab ready: `xenvmi lab exec -- xl list`")
    return 0


def _push_kernels(paths: LabPaths, port: int) -> None:
    """Fetch the other releases' guest kernels (once per host) and copy them to dom0 when
    dom0's copy differs; dom0's `start` then remakes the guest payload around them."""
    from xenvmi.lab import kernels

    blob, digest = kernels.bundle(kernels.fetch(paths, log=_log))
    where = kernels.REMOTE_DIR
    have = remote.run(paths, port, f"cat {where}/.digest 2>/dev/null || true").stdout
    if have.decode(errors="replace").strip() == digest:
        return
    remote.run(
        paths,
        port,
        f"rm -rf {where} && mkdir -p {where} && tar -xf - -C {where} "
        f"&& echo {digest} > {where}/.digest",
        stdin=blob,
        timeout=600,
    )


def cmd_down(args) -> int:
    from xenvmi.lab import vm

    was = vm.stop(LabPaths.default())
    print("lab stopped" if was else "lab was not running")
    return 0


def cmd_status(args) -> int:
    from xenvmi.lab import vm

    paths = LabPaths.default()
    state = vm.running(paths)
    info: dict = {"running": state is not None, "lab_dir": str(paths.root)}
    if state:
        info.update(
            pid=state.pid,
            port=state.port,
            image=state.image,
            release=state.release,
            uptime_s=round(time.time() - state.started),
        )
        info["ssh"] = remote.reachable(paths, state.port)
        if info["ssh"]:
            res = remote.run(
                paths,
                state.port,
                f"{DOM0_PY} -m xenvmi.lab.dom0 status --json",
                check=False,
                timeout=120,
            )
            try:
                info["guests"] = json.loads(res.stdout or b"[]")
            except ValueError:
                info["guests_error"] = (res.stderr or b"").decode(errors="replace").strip()[-200:]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if state else 1
    if not state:
        print(f"lab not running (lab dir {paths.root})")
        return 1
    print(
        f"lab running: pid {state.pid}, ssh 127.0.0.1:{state.port}, "
        f"image {state.image} ({state.release}), "
        f"up {info['uptime_s']}s, ssh {'ok' if info['ssh'] else 'NOT reachable'}"
    )
    for g in info.get("guests", []):
        print(
            f"  {g['name']:10} {g['type']:4} domid={g['domid']} "
            f"{'up' if g['up'] else 'DOWN'} processes={g['processes']} "
            f"modules={','.join(g['modules'])}"
        )
    return 0


def cmd_exec(args) -> int:
    paths = LabPaths.default()
    state = _state(paths)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("lab exec needs a command: xenvmi lab exec -- CMD [ARGS...]")
    if not args.no_sync and remote.source_root():
        remote.sync(paths, state.port)
    line = shlex.join(command)
    prefix = f"cd {remote.REMOTE_SRC} && export PATH=/opt/xenvmi/venv/bin:$PATH &&"
    argv = remote.ssh_argv(
        paths, state.port, [f"{prefix} {line}"], tty=sys.stdin.isatty() and sys.stdout.isatty()
    )
    try:
        return subprocess.run(argv, timeout=args.timeout).returncode
    except subprocess.TimeoutExpired:
        raise LabError(f"lab exec timed out after {args.timeout}s: {line}") from None


def cmd_ssh(args) -> int:
    paths = LabPaths.default()
    state = _state(paths)
    os.execvp("ssh", remote.ssh_argv(paths, state.port, tty=True))


def cmd_tui(args) -> int:
    paths = LabPaths.default()
    state = _state(paths)
    if remote.source_root():
        remote.sync(paths, state.port)
    os.execvp("ssh", remote.ssh_argv(paths, state.port, ["/usr/local/bin/xenvmi", "tui"], tty=True))


def cmd_sync(args) -> int:
    paths = LabPaths.default()
    sent = remote.sync(paths, _state(paths).port)
    print(f"synced {sent // 1024} KiB to dom0:{remote.REMOTE_SRC}")
    return 0


def cmd_check(args) -> int:
    paths = LabPaths.default()
    state = _state(paths)
    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    flags = " --json" if args.json else ""
    res = remote.run(
        paths,
        state.port,
        f"{DOM0_PY} -m xenvmi.lab.integrity --runs {args.runs}{flags}",
        timeout=60 * args.runs + 300,
        check=False,
        capture=False,
    )
    return res.returncode


def cmd_log(args) -> int:
    from xenvmi.lab import vm

    print(vm.serial_tail(LabPaths.default(), args.lines))
    return 0


def _positive(text: str) -> int:
    """A whole number >= 0 (the name is older than the rule)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def _release_option(p) -> None:
    p.add_argument(
        "--release",
        choices=sorted(releases.RELEASES),
        default=releases.DEFAULT.suite,
        help=f"dom0's Debian release (default {releases.DEFAULT.suite}; "
        + ", ".join(f"{r.suite} = Xen {r.xen}" for r in releases.RELEASES.values())
        + ")",
    )


def _arch_option(p) -> None:
    p.add_argument(
        "--arch",
        choices=releases.ARCHES,
        default="amd64",
        help="dom0's CPU architecture (default amd64; arm64: Xen on an emulated Cortex-A57, "
        "Debian " + ", ".join(releases.ARM64_SUITES) + " only)",
    )


def register(sub) -> None:
    lab = add_command(sub, "lab", "a real Xen host in a QEMU VM, for testing and demos", EXAMPLES)
    lsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", parser_class=type(lab))
    lab.set_defaults(func=usage(lab))

    p = add_command(
        lsub,
        "up",
        "build the image if needed, boot it, start and check the guests",
        "  xenvmi lab up\n  xenvmi lab up --port 2223 --check-runs 100\n"
        "  XENVMI_LAB_DIR=~/.cache/xenvmi/lab2 xenvmi lab up --release trixie --port 2223\n"
        "  XENVMI_LAB_DIR=~/.cache/xenvmi/lab-arm64 xenvmi lab up --arch arm64 --port 2224\n",
    )
    _release_option(p)
    _arch_option(p)
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="loopback port for ssh (2222)")
    p.add_argument("--memory", type=_positive, default=6144, help="VM memory in MiB (6144)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the image from scratch")
    p.add_argument("--no-guests", action="store_true", help="do not start the lab guests")
    p.add_argument(
        "--no-kernels",
        action="store_true",
        help="only the guests of dom0's own kernel (no Debian 11/13 kernels)",
    )
    p.add_argument(
        "--check-runs",
        type=_positive,
        default=10,
        help="integrity-check runs after boot, 0 to skip (10)",
    )
    p.add_argument(
        "--boot-timeout",
        type=_seconds,
        default=3600.0,
        help="last-resort limit on dom0's boot in seconds (3600); a boot whose "
        "console stops advancing fails long before",
    )
    p.set_defaults(func=cmd_up)

    add_command(
        lsub, "deps", "apt-get install what the host needs (QEMU, debootstrap, ...)"
    ).set_defaults(func=cmd_deps)
    p = add_command(lsub, "build", "build (or reuse) the dom0 disk image only")
    _release_option(p)
    _arch_option(p)
    p.set_defaults(func=cmd_build)
    add_command(lsub, "down", "stop the lab VM").set_defaults(func=cmd_down)
    p = add_command(lsub, "status", "is the lab running, and are its guests up")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = add_command(
        lsub,
        "exec",
        "run a command in dom0, in the synced tree /opt/xenvmi/src",
        "  xenvmi lab exec -- xl list\n  xenvmi lab exec -- pytest -m xen tests/lab\n",
    )
    p.add_argument("--no-sync", action="store_true", help="do not sync the working tree first")
    p.add_argument("--timeout", type=_seconds, default=None, help="seconds before giving up")
    p.add_argument("command", nargs="...", help="the command, after --")
    p.set_defaults(func=cmd_exec)
    add_command(lsub, "ssh", "an interactive root shell in dom0").set_defaults(func=cmd_ssh)
    add_command(lsub, "tui", "run `xenvmi tui` in dom0 in this terminal").set_defaults(func=cmd_tui)
    add_command(lsub, "sync", "copy the working tree to dom0's editable install").set_defaults(
        func=cmd_sync
    )
    p = add_command(
        lsub,
        "check",
        "integrity self-test: repeat xz -T2 decoding in dom0",
        "  xenvmi lab check --runs 100\n",
    )
    p.add_argument("--runs", type=_positive, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
    p = add_command(lsub, "log", "the tail of the serial console (Xen and dom0 kernel)")
    p.add_argument("--lines", type=_positive, default=40)
    p.set_defaults(func=cmd_log)
