"""The processes the harness starts, and the folders they write: no worker outlives its parent, one writer per
folder, and an interrupted command stops cleanly.

- :class:`WorkerPool`: a process pool (run workers, evaluation workers, ingest readers) whose workers die with
  the process that started them: on Linux ``PR_SET_PDEATHSIG`` (the kernel kills the worker the moment its
  parent dies, even a ``kill -9``), and everywhere a thread that ends the worker when its pipe to the parent
  closes. A worker ignores ``SIGINT`` (a ``Ctrl-C`` in a terminal reaches the whole process group: the parent
  decides, and :meth:`WorkerPool.kill` stops the workers at once).
- :class:`FolderLock`: one writer per folder (a run folder, an ECG store): a lock file holding the owner's pid and
  host, held with ``flock`` while the owner lives. A second writer is refused in one line naming the owner (or,
  asked to, waits for it); a lock left by a process that has died is taken over with a note.
- :func:`stop_on_signals`: ``SIGINT`` and ``SIGTERM`` raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the
  main thread, so a command unwinds, keeps what is finished and says how to resume; a second signal ends the
  process at once with ``128 + signal``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from .errors import StenceBenchError

#: prctl(2) option: the signal a process gets when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


# -- workers ----------------------------------------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Make this (forked or spawned) process end when ``parent_pid``, its parent, ends. Call it first in a worker.

    On Linux the kernel sends ``SIGKILL`` the moment the parent dies; the parent may have died between the fork
    and this call, so that is checked after. Everywhere, a daemon thread waits on the pipe multiprocessing keeps
    to the parent and ends the process when it closes. ``SIGINT`` is ignored (the parent handles ``Ctrl-C``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:  # pragma: no cover - never fails on Linux
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        sentinel = parent.sentinel

        def watch() -> None:
            multiprocessing.connection.wait([sentinel])
            os._exit(1)  # the pipe to the parent closed: the parent is gone

        threading.Thread(target=watch, name="stence-bench-parent-watch", daemon=True).start()


def _start_worker(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


class WorkerPool(ProcessPoolExecutor):
    """A ``ProcessPoolExecutor`` whose workers die with this process (:func:`die_with_parent`) and that
    :meth:`kill` stops at once. ``start``: the multiprocessing start method (``fork`` shares the parent's memory
    copy-on-write; ``spawn`` where fork is unsafe)."""

    def __init__(self, workers: int, *, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = (), start: str = "fork"):
        super().__init__(max_workers=workers, mp_context=multiprocessing.get_context(start),
                         initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))

    def worker_pids(self) -> list[int]:
        """The pids of the live workers."""
        return [p.pid for p in list((self._processes or {}).values()) if p.is_alive() and p.pid is not None]

    def kill(self) -> None:
        """Stop every worker now (``SIGKILL``) and cancel what is queued; work in flight is lost, so whatever a
        worker writes must be written whole or not at all (a temporary name, then a rename)."""
        processes = [p for p in list((self._processes or {}).values()) if p.is_alive()]
        self.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(ProcessLookupError, OSError):
                process.kill()
        for process in processes:
            process.join(timeout=10)


# -- one writer per folder --------------------------------------------------------------------------------------


class LockedError(StenceBenchError):
    """A folder another live process is writing."""


def _proc_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where /proc is absent; a pid
    reused by a newer process has another start time. A zombie (dead, not yet reaped) counts as absent: ``""``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return "" if fields[0] in ("Z", "X") else fields[19]


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the process a lock file names still runs: True, False, or None (on another host: unknown)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        pid = int(owner["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        pass
    start = _proc_start(pid)
    if start == "":
        return False
    return start is None or owner.get("proc_start") in (None, start)


def describe_owner(owner: dict[str, Any]) -> str:
    """``pid 123 on host h (stence-bench run ..., since 2026-01-02T03:04:05)``."""
    text = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    extra = [str(owner[k]) for k in ("command",) if owner.get(k)]
    if owner.get("since"):
        extra.append(f"since {owner['since']}")
    return text + (f" ({', '.join(extra)})" if extra else "")


class FolderLock:
    """The lock of a folder that one process writes at a time: ``path`` (a file in it) holds the owner's pid,
    host, start time and command, and is ``flock``-ed while the owner lives (the kernel releases it when the
    owner and every process that inherited it end, however they end).

    ``acquire`` refuses a live owner with :class:`LockedError` (one line naming the pid), or with ``wait_s``
    waits that long for it first; a lock file whose owner has died is taken over, and ``echo`` gets a note.
    ``release`` (or leaving the ``with`` block) removes the file."""

    def __init__(self, path: Path, *, what: str, command: str = "", wait_s: float = 0.0,
                 echo: Callable[[str], None] | None = None):
        self.path, self.what, self.command, self.wait_s, self.echo = Path(path), what, command, wait_s, echo
        self._fd: int | None = None
        self.taken_over: dict[str, Any] | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        deadline, said = time.monotonic() + self.wait_s, False
        while True:
            owner = self._try()
            if owner is None:
                return
            alive = owner_alive(owner)
            if time.monotonic() >= deadline:
                hint = "; wait for it to finish or stop it" if alive is not False else ""
                if alive is None:
                    hint = (f"; from here it cannot be told whether that process still runs: if it has ended, delete "
                            f"{self.path}")
                raise LockedError(f"{self.path.parent}: {self.what} is in use by {describe_owner(owner)}{hint}")
            if not said and self.echo:
                self.echo(f"{self.path.parent}: waiting for {describe_owner(owner)}, which is writing {self.what}")
                said = True
            time.sleep(0.2)

    def _try(self) -> dict[str, Any] | None:
        """Take the lock, or return the owner holding it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self._read(fd, settle=True)
                os.close(fd)
                return owner
            except OSError:  # a file system without flock: the pid and host in the file decide alone
                pass
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed while we opened it: try again on the new file
                os.close(fd)
                return self._try()
            owner = self._read(fd)
            if owner and owner_alive(owner) is not False:  # alive, or on another host (cannot be told)
                os.close(fd)
                return owner
            me = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
                  "command": self.command, "since": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd = fd
        if owner:
            self.taken_over = owner
            if self.echo:
                self.echo(f"{self.path.parent}: taking over the lock of {describe_owner(owner)}, which is no longer "
                          "running")
        return None

    @staticmethod
    def _read(fd: int, settle: bool = False) -> dict[str, Any]:
        """The owner a lock file names ({} when empty or unreadable); ``settle``: a new owner may not have
        written it yet, so an empty file is read again a few times."""
        for _ in range(20 if settle else 1):
            raw = os.pread(fd, 4096, 0)
            if raw.strip():
                try:
                    owner = json.loads(raw)
                    return owner if isinstance(owner, dict) else {}
                except ValueError:
                    return {}
            time.sleep(0.01)
        return {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # still flock-ed by us: nobody took it meanwhile
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


# -- interruption -----------------------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """``SIGINT`` or ``SIGTERM`` arrived; ``exit_code`` is the shell's ``128 + signal`` (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for a plain ``KeyboardInterrupt``, ``128 + signal`` for :class:`Interrupted`."""
    return interrupt.exit_code if isinstance(interrupt, Interrupted) else 128 + signal.SIGINT


@contextlib.contextmanager
def stop_on_signals(on_second: Callable[[], None] | None = None) -> Iterator[None]:
    """Within the block, ``SIGINT`` and ``SIGTERM`` raise :class:`Interrupted` in the main thread; a second one
    (the user pressing ``Ctrl-C`` again while the first is being handled) ends the process at once, with
    ``128 + signal``, after ``on_second`` (quick clean-up: workers die with the process anyway)."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if seen:
            if on_second is not None:
                with contextlib.suppress(Exception):
                    on_second()
            os._exit(128 + signum)
        seen.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
