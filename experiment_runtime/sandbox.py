"""Run one program under limits, capture its output, and leave none of its processes behind.

How the program is contained (each layer where the machine allows it; `Execution.protections` says
which were in force, and `experiment_runtime.isolation.describe_missing` what a missing one leaves open):

- Namespaces (bubblewrap, see `experiment_runtime.isolation`): own user, PID, mount, IPC, UTS and
  network namespaces; the filesystem read-only except the work dir; private /tmp and /dev/shm; /root,
  /home, the node's siblings and the caller's hidden paths invisible; loopback only unless
  `Limits.network`. When the program's first process ends, its PID namespace and all in it end too.
- Control group (root, see `experiment_runtime.cgroups`): memory for the whole process tree, a process
  limit, a CPU share, and the deadline kill of the whole group, so nothing escapes by re-parenting.
  Without one, memory is RLIMIT_AS per process and the process limit RLIMIT_NPROC.
- Environment: scrubbed. The program sees only the variables passed in plus a minimal base (PATH,
  HOME = the work dir, USER/LOGNAME, LANG, PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE, thread-count
  variables sized to `Limits.cpus`, or else to the CPUs this runner may use) and the GPU placement variables in
  `PASSTHROUGH_VARIABLES`. Nothing else of the runner's environment is inherited, so API keys
  cannot leak into it.
- Identity: when the runner is root, the program runs as `Limits.sandbox_uid`/`sandbox_gid`
  with no supplementary groups (`run_node` leases a uid of its own per node). The work dir must then
  belong to that uid and every directory above it must be traversable by it: `prepare_workdir` does
  the first and checks the second. The interpreter and its libraries must be readable by that uid too.
  A runner that is not root runs the program as itself.
- Rlimits, set in the child before exec: RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_CORE = 0, and RLIMIT_AS
  (if `memory_bytes`) only when no control group bounds memory. The child also gets SIGKILL if the
  runner thread that started it dies.
- Deadline and disk quota, enforced by the parent while it waits: on the deadline the program's
  processes get SIGTERM, then SIGKILL after `kill_grace_seconds`; over the disk quota or out of inodes
  they get SIGKILL at once (waiting would let them write more).
- Cleanup: when the program ends, however it ends, every process it left behind is killed: the
  whole control group, and the processes found by `experiment_runtime.processes` (setsid() included).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import pwd
import resource
import secrets
import selectors
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from experiment_runtime import cgroups, isolation, processes, uids
from experiment_runtime.capture import BoundedCapture
from experiment_runtime.disk import Scratch, disk_usage, scratch
from experiment_runtime.isolation import Protections
from experiment_runtime.limits import Limits

KillReason = Literal["deadline", "disk_quota", "inode_quota"]

PASSTHROUGH_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
"""Runner variables the program inherits: they place it on its GPUs and hold no secrets."""

_PR_SET_PDEATHSIG = 1
_READ_CHUNK = 1 << 16
_MIN_DISK_POLL_SECONDS = 0.25
_MAX_DISK_POLL_SECONDS = 5.0
_DRAIN_AFTER_EXIT_SECONDS = 2.0
# A tmpfs within this many bytes of its size is full: the last write that fails is smaller than a page.
_DISK_FULL_SLACK = 64 * 1024
# bubblewrap's own two processes (the outer one and the namespace's init) count against the pids limit.
_WRAPPER_PROCESSES = 2
# bubblewrap exits 128 + N when the program was killed by signal N.
_SIGNAL_EXIT_BASE = 128

# Loaded once here: the child must not load libraries between fork and exec.
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    """The program could not be run at all (the runner's problem, not the program's)."""


@dataclass(frozen=True)
class Execution:
    """How one run of a program ended and what it printed."""

    command: list[str]
    """The argv that was run."""

    exit_code: int | None
    """Exit status when the program exited by itself; None when a signal ended it."""

    signal: int | None
    """Number of the signal that ended the program, or None."""

    timed_out: bool
    """True when the deadline passed and the program was killed for it."""

    killed_reason: KillReason | None
    """Why the sandbox killed the program: "deadline", "disk_quota", "inode_quota", or None when it did not."""

    duration_seconds: float
    """Wall-clock seconds from spawn to exit."""

    stdout: str
    """Captured stdout, bounded: head and tail, with a marker line where bytes were dropped."""

    stderr: str
    """Captured stderr, bounded the same way."""

    stdout_bytes: int
    """Total bytes the program wrote to stdout."""

    stderr_bytes: int
    """Total bytes the program wrote to stderr."""

    stdout_truncated: bool
    """True when stdout was larger than the capture bound."""

    stderr_truncated: bool
    """True when stderr was larger than the capture bound."""

    peak_disk_bytes: int
    """Largest disk use of the work dir seen while polling, and at exit."""

    max_rss_bytes: int
    """Peak resident set size of the program's main process or of its largest reaped descendant."""

    cpu_seconds: float
    """User plus system CPU time of the program and its reaped descendants."""

    uid: int
    """The uid the program ran as."""

    protections: Protections
    """What contained this run, and in words what did not."""

    oom_killed: bool = False
    """The kernel killed a process of the program's control group for exceeding its memory limit."""

    process_limit_hit: bool = False
    """A fork or clone of the program was refused by its control group's process limit."""

    inodes_left: int | None = None
    """Free inodes of the scratch space at exit, when it has an inode limit."""


def execute(command: list[str], cwd: Path, env: dict[str, str], limits: Limits, *, space: Scratch | None = None,
            work_at: Path | None = None, read_only: tuple[Path, ...] = (), hidden: tuple[Path, ...] = (),
            binds: tuple[tuple[Path, Path], ...] = ()) -> Execution:
    """Runs `command` in `cwd` with `env` (plus the minimal base) under `limits`; blocks until done.

    `space` is the node's scratch (its work dir `cwd`, /tmp and /dev/shm under one quota); without it
    /tmp and /dev/shm are small private tmpfs and the quota is polled over `cwd`. Inside the namespaces
    the work dir appears at `work_at` (default: `cwd`), the files `read_only` at their own paths, and
    the folders `hidden` empty, and each `(source, target)` of `binds` read-only at its target.

    Raises SandboxError when the program cannot be started (missing executable, work dir not
    prepared for the sandbox user). Everything the program itself does wrong is in the Execution.
    """
    if not command:
        raise SandboxError("empty command")
    uid, gid, drop = _identity(limits)
    if drop:
        _check_workdir(cwd, uid, gid)
    if os.path.isabs(command[0]) and not os.access(command[0], os.X_OK):
        # Checked here: inside the namespaces the failure would look like the program's.
        raise SandboxError(f"cannot start {command[0]!r} as uid {uid}: no such executable")
    token = secrets.token_hex(16)
    full_env = _base_environment(work_at or cwd, command[0], uid, limits.cpus) | env | {processes.TOKEN_VARIABLE: token}
    nproc = processes.count_user_tasks(uid) + limits.max_processes + _WRAPPER_PROCESSES

    ns_reason = isolation.namespaces_unavailable(uid) if limits.isolate else "switched off (Limits.isolate)"
    group, group_reason = _cgroup(limits, token)
    argv = command
    if ns_reason is None:
        argv = isolation.bwrap_command(
            command, cwd, work_at=work_at or cwd, tmp=space.tmp if space else None,
            shm=space.shm if space else None, read_only=read_only, hidden=hidden, network=limits.network,
            binds=binds, shm_bytes=limits.shm_bytes)
    elif any(source != target for source, target in binds):
        _remove(group)
        raise SandboxError(f"cannot show {binds[0][0]} at {binds[0][1]}: no namespaces ({ns_reason})")
    protections = Protections(
        namespaces=ns_reason is None, network_isolated=ns_reason is None and not limits.network,
        cgroup=group is not None, disk_scratch=space is not None and space.tmpfs, own_uid=limits.own_uid,
        missing=isolation.describe_missing(
            namespaces=ns_reason, network=limits.network, cgroup=group_reason,
            scratch=None if space is not None and space.tmpfs else (
                space.unavailable_reason if space else "no scratch space given: /tmp and /dev/shm are 64 MiB each"),
            own_uid=None if limits.own_uid else (
                "nodes share the sandbox uid" if drop else "nodes run as the runner's uid")))
    started = time.monotonic()
    executor = os.getpid()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _enter_child(limits, nproc, group, (uid, gid) if drop else None, executor),
        )
    except PermissionError as err:
        _remove(group)
        raise SandboxError(
            f"cannot start {command[0]!r} as uid {uid}: {err.strerror}; the sandbox user must be able to reach and "
            "read the interpreter and its libraries (one under a private home such as /root is not), so install it "
            "where others may read it or pass another interpreter"
        ) from err
    except (OSError, subprocess.SubprocessError) as err:
        _remove(group)
        raise SandboxError(f"cannot start {command[0]!r} as uid {uid} in {cwd}: {err}") from err
    try:
        return _Supervisor(proc, command, cwd, limits, token, uid, started, group, space, protections,
                           wrapped=ns_reason is None).run()
    finally:
        _remove(group)


def probe(limits: Limits) -> Protections:
    """The protections a node's program gets here under `limits` (as `run_node` runs it), tried for real."""
    root = os.geteuid() == 0
    drop = root and limits.drop_privileges
    uid = uids.FIRST_UID if drop else os.getuid()
    ns_reason = isolation.namespaces_unavailable(uid) if limits.isolate else "switched off (Limits.isolate)"
    if not limits.use_cgroup:
        group_reason: str | None = "no cgroup (switched off: Limits.use_cgroup)"
    else:
        group_reason = cgroups.unavailable_reason() if root else "no cgroup (the runner is not root)"
    with tempfile.TemporaryDirectory(prefix="ks-probe-") as folder:
        with scratch(Path(folder) / "s", 1 << 20, 64, uid, uid) as space:
            scratch_reason = space.unavailable_reason
    return Protections(
        namespaces=ns_reason is None, network_isolated=ns_reason is None and not limits.network,
        cgroup=group_reason is None, disk_scratch=scratch_reason is None, own_uid=drop,
        missing=isolation.describe_missing(namespaces=ns_reason, network=limits.network, cgroup=group_reason,
                                           scratch=scratch_reason,
                                           own_uid=None if drop else "the runner is not root: nodes run as its uid"))


def _cgroup(limits: Limits, token: str) -> tuple[cgroups.NodeCgroup | None, str | None]:
    if not limits.use_cgroup:
        return None, "no cgroup (switched off: Limits.use_cgroup)"
    if os.geteuid() != 0:
        return None, "no cgroup (the runner is not root)"
    try:
        group = cgroups.create(f"node-{token[:16]}", limits.memory_bytes, limits.max_processes + _WRAPPER_PROCESSES,
                               limits.cpus)
    except OSError as err:
        return None, f"no cgroup ({err.strerror or err}: {err.filename or cgroups.ROOT})"
    return group, None


def _remove(group: cgroups.NodeCgroup | None) -> None:
    if group is not None:
        group.remove()


def prepare_workdir(path: Path, limits: Limits) -> None:
    """Makes `path` usable as the program's work dir: owned and writable by the user it runs as.

    As root: chowns the tree to the sandbox uid/gid (links themselves, never their targets) and
    checks that the sandbox user can reach `path`. Not root: the program runs as the runner, who
    already owns what it created; nothing to do.
    """
    uid, gid, drop = _identity(limits)
    if not drop:
        return
    for current, dirnames, filenames in os.walk(path):
        os.lchown(current, uid, gid)
        os.chmod(current, os.stat(current).st_mode | stat.S_IRWXU)
        for name in dirnames + filenames:
            entry = os.path.join(current, name)
            os.lchown(entry, uid, gid)
            st = os.lstat(entry)
            # A template from a read-only mount arrives as 0444; the program may rewrite its files.
            if stat.S_ISREG(st.st_mode):
                os.chmod(entry, st.st_mode | stat.S_IRUSR | stat.S_IWUSR)
    _check_workdir(path, uid, gid)


def _base_environment(cwd: Path, executable: str, uid: int, cpus: float | None = None) -> dict[str, str]:
    """The variables every program gets before the caller's own."""
    # The node's CPU share when it has one (a 1-CPU node ran 3x slower with a thread per host CPU).
    threads = str(min(_cpu_budget(), max(1, math.ceil(cpus))) if cpus else _cpu_budget())
    # The program's own interpreter comes first, so a `python` it starts is the same one.
    interpreter_dir = os.path.dirname(executable) if os.path.isabs(executable) else os.path.dirname(sys.executable)
    env = {
        "PATH": os.pathsep.join([interpreter_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(cwd),
        # getpass.getuser() reads these first; without them it raises for a uid that has no passwd
        # entry (torch.compile calls it for its cache dir).
        "USER": _user_name(uid),
        "LOGNAME": _user_name(uid),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # Keeps __pycache__ out of the work dir, which is uploaded and counted against the quota.
        "PYTHONDONTWRITEBYTECODE": "1",
        # Math libraries start one thread per host CPU otherwise: oversubscribed in a pod with a CPU
        # limit, and every thread counts against RLIMIT_NPROC.
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
    }
    for name in PASSTHROUGH_VARIABLES:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def _identity(limits: Limits) -> tuple[int, int, bool]:
    if os.geteuid() == 0 and limits.drop_privileges:
        return limits.sandbox_uid, limits.sandbox_gid, True
    return os.getuid(), os.getgid(), False


def _check_workdir(path: Path, uid: int, gid: int) -> None:
    resolved = path.resolve()
    try:
        owner = resolved.stat().st_uid
    except OSError as err:
        raise SandboxError(f"{path}: work dir is not usable: {err}") from err
    if owner != uid:
        raise SandboxError(f"{path}: work dir belongs to uid {owner}, not the sandbox uid {uid}; call prepare_workdir")
    for parent in resolved.parents:
        st = parent.stat()
        # The sandbox user has no supplementary groups: only its own gid's group bits apply.
        if st.st_uid == uid:
            search = stat.S_IXUSR
        else:
            search = stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & search:
            raise SandboxError(
                f"{parent}: mode {stat.S_IMODE(st.st_mode):04o} does not let the sandbox uid {uid} reach "
                f"the work dir {path}; put work dirs under a directory others may traverse (o+x)"
            )


def _enter_child(limits: Limits, nproc: int, group: cgroups.NodeCgroup | None,
                 identity: tuple[int, int] | None, executor: int) -> None:
    """Runs in the child between fork and exec: joins the cgroup (as root), drops to the sandbox user,
    sets the rlimits. Everything the program starts is then born in the group and under the limits."""
    if group is not None:
        pid = str(os.getpid()).encode()
        for path in group.procs_files:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, pid)
            os.close(fd)
    if identity is not None:
        uid, gid = identity
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_FSIZE, limits.max_file_bytes)
    _set_limit(resource.RLIMIT_NPROC, nproc)
    # Address space is a poor proxy for memory (CUDA maps GiBs at import): only where no cgroup bounds memory.
    if limits.memory_bytes is not None and group is None:
        _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
    # After the uid change, which clears the parent-death signal. An executor killed before this line sends
    # no signal: then the child must not go on as an orphan.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != executor:
        os._exit(1)


def _set_limit(which: int, value: int) -> None:
    # An unprivileged process cannot raise its hard limit, so never ask for more than it already has.
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _cpu_budget() -> int:
    """CPUs this runner may use: its affinity, capped by a cgroup v2 CPU quota when there is one."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


class _Supervisor:
    """Waits for one started program while draining its output and enforcing deadline and quota.

    The program is reaped only after its leftover processes are killed: until then its pid, which
    is also the id of its session and process group, cannot be reused by an unrelated process.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        command: list[str],
        cwd: Path,
        limits: Limits,
        token: str,
        uid: int,
        started: float,
        group: cgroups.NodeCgroup | None,
        space: Scratch | None,
        protections: Protections,
        wrapped: bool,
    ) -> None:
        self.group = group
        self.space = space
        self.protections = protections
        self.wrapped = wrapped
        self.inodes_left: int | None = None
        self.proc = proc
        self.command = command
        self.cwd = cwd
        self.limits = limits
        self.token = token
        self.uid = uid
        self.started = started
        self.ended: float | None = None
        self.selector = selectors.DefaultSelector()
        self.captures: dict[int, BoundedCapture] = {}
        self.killed_reason: KillReason | None = None
        self.peak_disk = 0

    def run(self) -> Execution:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stdout = BoundedCapture(self.limits.max_output_bytes)
        stderr = BoundedCapture(self.limits.max_output_bytes)
        for stream, capture in ((self.proc.stdout, stdout), (self.proc.stderr, stderr)):
            self.captures[stream.fileno()] = capture
            self.selector.register(stream.fileno(), selectors.EVENT_READ)
        pidfd = -1
        try:
            # Readable when the program exits, so one select() waits for output and exit together.
            pidfd = os.pidfd_open(self.proc.pid)
            self.selector.register(pidfd, selectors.EVENT_READ)
            self._wait(pidfd)
        finally:
            # Also reached when the runner itself fails (e.g. KeyboardInterrupt): leave nothing behind.
            self._kill()
            _, status, rusage = os.wait4(self.proc.pid, 0)
            # Tell Popen the child is reaped, so it never waits on a pid that may since be reused.
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            ended = self.ended if self.ended is not None else time.monotonic()
            self._drain_remaining()
            self.selector.close()
            if pidfd >= 0:
                os.close(pidfd)
            self.proc.stdout.close()
            self.proc.stderr.close()
        self._poll_disk()
        return self._execution(status, rusage, ended - self.started, stdout, stderr)

    def _wait(self, pidfd: int) -> None:
        """Returns when the program has exited (it is then a zombie, not yet reaped)."""
        deadline_at = self.started + self.limits.deadline_seconds
        kill_at = math.inf
        next_disk_at = self.started + _MIN_DISK_POLL_SECONDS
        while True:
            timeout = max(0.0, min(deadline_at, kill_at, next_disk_at) - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.fd == pidfd:
                    self.ended = time.monotonic()
                    return
                self._read(key.fd)
            now = time.monotonic()
            if now >= deadline_at:
                self.killed_reason = "deadline"
                self._signal(signal.SIGTERM)
                deadline_at = math.inf
                kill_at = now + self.limits.kill_grace_seconds
            if now >= kill_at:
                self._kill()
                kill_at = math.inf
            if now >= next_disk_at:
                walk_started = time.monotonic()
                over = self._poll_disk()
                walk_seconds = time.monotonic() - walk_started
                if over is not None and self.killed_reason is None:
                    # SIGKILL at once: a grace period would only let it write more.
                    self.killed_reason = over
                    deadline_at = kill_at = math.inf
                    self._kill()
                # A tree of many files is slow to walk: poll it less often than a small one.
                interval = min(_MAX_DISK_POLL_SECONDS, max(_MIN_DISK_POLL_SECONDS, 20 * walk_seconds))
                next_disk_at = time.monotonic() + interval

    def _poll_disk(self) -> KillReason | None:
        """Updates the peak disk use; says which quota the program has used up, if one."""
        if self.space is None:
            usage, inodes_left = disk_usage(self.cwd), None
        else:
            usage, inodes_left = self.space.usage()
        self.peak_disk = max(self.peak_disk, usage)
        self.inodes_left = inodes_left
        # A tmpfs refuses the write that would exceed it: full is as far as a program gets.
        full = self.limits.max_disk_bytes - (_DISK_FULL_SLACK if self.space is not None and self.space.tmpfs else 0)
        if usage > full:
            return "disk_quota"
        if inodes_left == 0:
            return "inode_quota"
        return None

    def _signal(self, sig: signal.Signals) -> None:
        """Sends `sig` to the program's processes, not to bubblewrap, which would end them all at once."""
        if self.group is not None:
            for pid in self.group.pids() - {self.proc.pid}:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
        exclude = {self.proc.pid} if self.wrapped else set()
        processes.signal_sandbox(self.proc.pid, self.token, self.uid, sig, exclude=exclude)

    def _kill(self) -> None:
        if self.group is not None:
            self.group.kill()
        processes.kill_sandbox(self.proc.pid, self.token, self.uid)

    def _read(self, fd: int) -> None:
        data = os.read(fd, _READ_CHUNK)
        if data:
            self.captures[fd].feed(data)
        else:
            self.selector.unregister(fd)

    def _drain_remaining(self) -> None:
        """Reads what is left in the pipes; bounded, in case something escaped and holds them open."""
        give_up_at = time.monotonic() + _DRAIN_AFTER_EXIT_SECONDS
        while any(key.fd in self.captures for key in self.selector.get_map().values()):
            timeout = give_up_at - time.monotonic()
            if timeout <= 0:
                return
            for key, _ in self.selector.select(timeout):
                if key.fd in self.captures:
                    self._read(key.fd)

    def _execution(
        self,
        status: int,
        rusage: resource.struct_rusage,
        duration: float,
        stdout: BoundedCapture,
        stderr: BoundedCapture,
    ) -> Execution:
        code = os.waitstatus_to_exitcode(status)
        if self.wrapped and _SIGNAL_EXIT_BASE < code <= _SIGNAL_EXIT_BASE + signal.SIGRTMAX:
            code = -(code - _SIGNAL_EXIT_BASE)
        return Execution(
            command=list(self.command),
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            timed_out=self.killed_reason == "deadline",
            killed_reason=self.killed_reason,
            duration_seconds=duration,
            stdout=stdout.text(),
            stderr=stderr.text(),
            stdout_bytes=stdout.total_bytes,
            stderr_bytes=stderr.total_bytes,
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            peak_disk_bytes=self.peak_disk,
            # Linux reports ru_maxrss in KiB.
            max_rss_bytes=rusage.ru_maxrss * 1024,
            cpu_seconds=rusage.ru_utime + rusage.ru_stime,
            uid=self.uid,
            protections=self.protections,
            oom_killed=self.group is not None and self.group.oom_killed(),
            process_limit_hit=self.group is not None and self.group.pids_exhausted(),
            inodes_left=self.inodes_left,
        )
