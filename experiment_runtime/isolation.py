"""Namespaces for a node's program, with bubblewrap, and the record of which protections are in force.

bubblewrap (`bwrap`, Debian package `bubblewrap`) starts the program in new user, PID, mount, IPC,
UTS and network namespaces:

- filesystem: everything read-only; only the work dir writable; private /tmp and /dev/shm (folders
  of the node's scratch space, so they count in its quota); /root, /home, /run, the node's siblings
  and every path the caller hides are replaced by empty folders;
- processes: a PID namespace of its own, so other nodes, the runner and the host are invisible and
  cannot be signalled, traced or read through /proc; when the program's first process ends, the
  namespace and everything in it end too; `--die-with-parent` ties it to its executor;
- network: loopback only unless the caller allows the network.

A root executor runs bwrap as the node's own unprivileged uid (it needs user namespaces for that user);
bwrap then keeps that uid and drops every capability.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BWRAP = "bwrap"
HIDDEN_ALWAYS = ("/root", "/home", "/run", "/var/tmp", "/mnt", "/media")
"""Folders no node has business reading: private homes, key files, runtime sockets, others' scratch."""
_PRIVATE_TMP_BYTES = 64 * 1024 * 1024
"""Size of /tmp and of /dev/shm when the caller gives no scratch space to hold them."""
_GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/dri")


@dataclass(frozen=True)
class Protections:
    """Which protections one node's program ran under; `missing` says in words what was not in force."""

    namespaces: bool
    """Own user, PID, mount, IPC and UTS namespaces: siblings and the host invisible, files read-only."""

    network_isolated: bool
    """Own network namespace with loopback only (False when the spec allows the network, or no namespaces)."""

    cgroup: bool
    """Own control group: memory for the whole process tree, a process limit, a CPU share, one kill."""

    disk_scratch: bool
    """Work dir, /tmp and /dev/shm on a size- and inode-limited tmpfs: deleted-but-open files count."""

    own_uid: bool
    """A uid no other node has at the same time."""

    missing: tuple[str, ...] = field(default=())
    """One line per protection not in force, saying what that leaves open."""

    def to_json(self) -> dict[str, Any]:
        return {"namespaces": self.namespaces, "networkIsolated": self.network_isolated, "cgroup": self.cgroup,
                "diskScratch": self.disk_scratch, "ownUid": self.own_uid, "missing": list(self.missing)}


def describe_missing(*, namespaces: str | None, network: bool, cgroup: str | None, scratch: str | None,
                     own_uid: str | None) -> tuple[str, ...]:
    """The `missing` lines, from the reason each protection is unavailable (None when it is in force)."""
    lines = []
    if namespaces is not None:
        lines.append(f"no namespaces ({namespaces}): programs see the files the sandbox user may read, each "
                     "other's processes, and the network")
    elif network:
        lines.append("network allowed by the spec: programs reach the network and services on this host")
    if cgroup is not None:
        lines.append(f"{cgroup}: memory is limited per process (address space), not for the whole process tree; "
                     "the process limit counts every process of the user; no CPU share; the deadline kill finds "
                     "processes by session, group, uid and environment")
    if scratch is not None:
        lines.append(f"no tmpfs scratch ({scratch}): the disk quota is polled over the files visible in the work dir "
                     "(not deleted-but-open ones); no inode limit")
    if own_uid is not None:
        lines.append(f"no uid of its own ({own_uid})")
    return tuple(lines)


@functools.cache
def namespaces_unavailable(uid: int) -> str | None:
    """Why bwrap cannot start a program as `uid` here, or None when it can (tried once per uid)."""
    if shutil.which(BWRAP) is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    try:
        probe = subprocess.run(
            [BWRAP, *_base_args(network=False), "--", "/bin/true"],
            capture_output=True, timeout=30, cwd="/", user=uid if os.geteuid() == 0 and uid != 0 else None,
            group=uid if os.geteuid() == 0 and uid != 0 else None, extra_groups=[] if os.geteuid() == 0 else None,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"bwrap cannot start: {err}"
    if probe.returncode != 0:
        return "bwrap fails: " + probe.stderr.decode(errors="replace").strip()[:300]
    return None


def bwrap_command(command: list[str], cwd: Path, *, work_at: Path, tmp: Path | None, shm: Path | None,
                  read_only: tuple[Path, ...], hidden: tuple[Path, ...], network: bool,
                  binds: tuple[tuple[Path, Path], ...] = (), shm_bytes: int | None = None) -> list[str]:
    """The argv that runs `command` in new namespaces, with `cwd` writable and seen at `work_at`, and each
    `(source, target)` of `binds` read-only at its target (which must lie where bwrap can make a mount
    point: an existing folder, or under a hidden one such as /mnt). /dev/shm is a tmpfs of `shm_bytes`
    when given (memory, outside the disk quota), else the folder `shm`."""
    args = [BWRAP, *_base_args(network)]
    # First, so that a work dir or a needed path under /tmp is bound on top of the private /tmp.
    args += ["--bind", str(tmp), "/tmp"] if tmp is not None else ["--size", str(_PRIVATE_TMP_BYTES), "--tmpfs", "/tmp"]
    if shm_bytes is not None:
        args += ["--size", str(shm_bytes), "--tmpfs", "/dev/shm"]
    else:
        args += ["--bind", str(shm), "/dev/shm"] if shm is not None else ["--size", str(_PRIVATE_TMP_BYTES),
                                                                            "--tmpfs", "/dev/shm"]
    always = _existing_dirs([Path(p) for p in HIDDEN_ALWAYS])
    # What the program needs but a hidden folder holds (an interpreter under /root, say) comes back read-only.
    needed = [path for path in _needed(command) if any(path.is_relative_to(h) for h in always)]
    # The caller's after the needed paths, so that a run folder inside one of them stays hidden.
    caller = _existing_dirs([p.resolve() for p in hidden])
    args += [arg for path in always for arg in ("--tmpfs", str(path))]
    args += [arg for path in needed for arg in ("--ro-bind", str(path), str(path))]
    args += [arg for path in caller for arg in ("--tmpfs", str(path))]
    for device in _GPU_DEVICES + tuple(str(p) for p in Path("/dev").glob("nvidia[0-9]*")):
        if os.path.exists(device):
            args += ["--dev-bind", device, device]
    args += ["--bind", str(cwd), str(work_at)]
    for path in read_only:
        args += ["--ro-bind", str(path), str(path)]
    for source, target in binds:
        args += ["--ro-bind", str(source), str(target)]
    # Last: the empty folders over hidden paths and /dev would otherwise be writable, outside any quota.
    for path in [*always, *caller, Path("/dev")]:
        args += ["--remount-ro", str(path)]
    return [*args, "--chdir", str(work_at), "--", *command]


def _existing_dirs(paths: list[Path]) -> list[Path]:
    return [path for path in sorted(set(paths)) if path.is_dir() and not path.is_symlink()]


def _base_args(network: bool) -> list[str]:
    args = ["--die-with-parent", "--new-session", "--unshare-user", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "node",
            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    return args if network else [*args, "--unshare-net"]


def _needed(command: list[str]) -> list[Path]:
    """The interpreter's install: a program must reach them even under a hidden folder."""
    paths = {Path(sys.prefix), Path(sys.base_prefix)}
    if command and os.path.isabs(command[0]):
        paths.add(Path(os.path.realpath(command[0])).parent.parent)
    return sorted(p.resolve() for p in paths if p.exists())
