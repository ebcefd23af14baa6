"""One writer per run: a lock file that names its holder.

A lock is a small JSON file, ``{"host", "pid", "started", "command"}``, written under a
temporary name and hard-linked into place (the link fails if the lock exists, so of two
processes that try at once exactly one gets it), and held for the holder's lifetime under an
``fcntl.flock``. Another process asking for it is refused
with :class:`WorkdirLocked` (a ``ValueError`` naming the holder), unless the lock is *stale*:
left by a process of this host that no longer runs (its pid is gone, or nothing holds the
``flock`` any more — the kernel drops it when a process dies, even by SIGKILL). A stale lock is
taken over with one warning line. A lock from another host is never judged stale (its pid means
nothing here): it must be removed by hand once that host's process is known to be gone.

Used by the trainer (``<workdir>/workdir.lock``, for the whole run) and by
``experiments.grid`` (``<workdir>.lock``, while it runs a trainer in that workdir), and read by
``experiments.tables`` to tell a running run from one whose process died.

Multi-host runs: only process 0 takes the lock; its record also names the run's coordinator
address (``"coordinator"``, ``"process_id": 0``). Every other process waits (up to
:data:`PEER_WAIT_S`) until the workdir's lock is held by a live process 0 of the run with the
same coordinator address, and refuses to start otherwise (:class:`PeerLockMissing`).
``docs/guide/run_safety.md`` says what this does and does not guarantee.

This module imports nothing heavy, so a lock can be checked before JAX starts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time

try:
  import fcntl
except ImportError:  # pragma: no cover (not POSIX)
  fcntl = None

from absl import logging


class WorkdirLocked(ValueError):
  """Another live process holds the lock."""


class PeerLockMissing(WorkdirLocked):
  """A process other than the first of a multi-host run did not find the workdir locked by
  that run's first process (see :func:`wait_for_peer_lock`)."""


# How long a non-first process of a multi-host run waits for its first process's lock.
PEER_WAIT_S = 120.0


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def read_holder(lock_path: str | os.PathLike) -> dict | None:
  """The lock file's ``{"host", "pid", "started", ...}``; None when there is no lock file. A
  lock file that cannot be parsed (a holder killed while writing it) reads as
  ``{"host": None, "pid": None}``."""
  try:
    with open(lock_path, encoding="utf-8") as file:
      holder = json.load(file)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {"host": None, "pid": None}
  return holder if isinstance(holder, dict) else {"host": None, "pid": None}


def _flock_free(lock_path: str) -> bool | None:
  """Whether nobody holds the ``flock`` of ``lock_path`` (None: cannot tell)."""
  if fcntl is None:
    return None
  try:
    fd = os.open(lock_path, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as error:
    return False if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) else None
  else:
    return True
  finally:
    os.close(fd)


def is_stale(holder: dict | None, lock_path: str | os.PathLike | None = None) -> bool:
  """Whether a lock held by ``holder`` (:func:`read_holder`) was left by a dead process.

  Only a lock of this host can be judged: its pid no longer runs, or (given ``lock_path``) no
  process holds its ``flock``. A lock file that could not be parsed is stale when nobody holds
  its ``flock``.
  """
  if holder is None:
    return False
  pid = holder.get("pid")
  if holder.get("host") is None and pid is None:
    return lock_path is not None and _flock_free(os.fspath(lock_path)) is True
  if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
    return False
  if not _pid_alive(pid):
    return True
  if pid == os.getpid():
    return False
  # A live pid may belong to another process now (pids are reused): the flock tells.
  return lock_path is not None and _flock_free(os.fspath(lock_path)) is True


def describe(holder: dict) -> str:
  """``host:pid (since ...)`` of a lock holder."""
  text = f"{holder.get('host') or '?'}:{holder.get('pid') or '?'}"
  return text + (f" (since {holder['started']})" if holder.get("started") else "")


class WorkdirLock:
  """The lock at ``lock_path``: :meth:`acquire` it, :meth:`release` it (or use ``with``).

  ``what`` names the locked thing in messages (e.g. ``"workdir 'runs/a'"``).
  """

  def __init__(self, lock_path: str | os.PathLike, what: str | None = None,
               extra: dict | None = None):
    self.path = os.fspath(lock_path)
    self.what = what or self.path
    self.extra = dict(extra or {})  # more fields of the record (a multi-host run's coordinator)
    self._fd: int | None = None

  @property
  def held(self) -> bool:
    """Whether this object holds the lock now."""
    return self._fd is not None

  def acquire(self) -> None:
    """Takes the lock (a stale one is taken over with a warning); raises
    :class:`WorkdirLocked` naming the live holder."""
    if self._fd is not None:
      return
    for _ in range(5):
      fd = self._create()
      if fd is not None:
        self._fd = fd
        return
      holder = read_holder(self.path)
      if holder is None:
        continue  # released meanwhile
      if not is_stale(holder, self.path):
        raise WorkdirLocked(
            f"{self.what} is in use by another process ({describe(holder)}; lock file "
            f"{self.path}); wait for it to finish, or stop it (a lock of another host is "
            f"removed by hand once its process is gone)")
      if self._take_over_stale():
        logging.warning("took over the lock %s left by %s, which no longer runs", self.path,
                        describe(holder))
    raise WorkdirLocked(f"{self.what}: could not take the lock {self.path} (other processes "
                        f"keep taking it); try again")

  def _create(self) -> int | None:
    """The descriptor of a new, complete, flocked lock file at ``path``; None if one exists.

    The file is written and flocked under a temporary name first and then hard-linked to
    ``path`` (which fails if ``path`` exists), so no process ever sees a lock file without its
    holder's record or ``flock``."""
    record = {**self.extra, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv)[:500]}
    temporary = f"{self.path}.{socket.gethostname()}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
    try:
      if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      os.write(fd, json.dumps(record).encode())
      os.fsync(fd)
      try:
        os.link(temporary, self.path)
      except FileExistsError:
        os.close(fd)
        return None
      return fd
    except BaseException:
      with contextlib.suppress(OSError):
        os.close(fd)
      raise
    finally:
      with contextlib.suppress(OSError):
        os.remove(temporary)

  def _take_over_stale(self) -> bool:
    """Removes the stale lock file, unless another process took it over meanwhile."""
    try:
      fd = os.open(self.path, os.O_RDONLY)
    except FileNotFoundError:
      return False
    try:
      if fcntl is not None:
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
          return False  # a live process holds it (e.g. it just took it over)
      try:
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        return False
      if same:
        os.remove(self.path)
      return same
    finally:
      os.close(fd)

  def release(self) -> None:
    """Removes the lock file (if it is still ours) and drops the ``flock``."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(self.path)):
          os.remove(self.path)
    finally:
      os.close(fd)

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


class WorkdirClaim:
  """A workdir held for one run: see :func:`claim_workdir`."""

  def __init__(self, workdir: str, lock: WorkdirLock | None, created: bool, kind: str):
    self.workdir, self.lock, self.created, self.kind = workdir, lock, created, kind

  def release(self) -> None:
    """Releases the lock; a directory this claim created and nothing was written to (e.g. the
    data failed to load) is removed again, so a failed start leaves nothing behind."""
    if self.lock is not None:
      self.lock.release()
    if self.created:
      with contextlib.suppress(OSError):
        os.rmdir(self.workdir)  # only if empty


def peer_record(coordinator: str) -> dict:
  """The fields the first process of a multi-host run adds to its lock record."""
  return {"coordinator": coordinator, "process_id": 0}


def wait_for_peer_lock(lock_path: str | os.PathLike, coordinator: str, *,
                       timeout_s: float | None = None, poll_s: float = 0.2) -> dict:
  """Waits until ``lock_path`` is held by a live first process of the multi-host run
  coordinated at ``coordinator`` (its record has :func:`peer_record`'s fields); returns that
  holder. After ``timeout_s`` (default :data:`PEER_WAIT_S`) raises :class:`PeerLockMissing`,
  one line saying what it found: no lock, a stale one, or another process's. Reads only."""
  lock_path = os.fspath(lock_path)
  timeout_s = PEER_WAIT_S if timeout_s is None else timeout_s
  deadline = time.monotonic() + timeout_s
  while True:
    holder = read_holder(lock_path)
    ours = (holder is not None and holder.get("coordinator") == coordinator
            and holder.get("process_id") == 0)
    if ours and not is_stale(holder, lock_path):
      return holder
    if time.monotonic() >= deadline:
      break
    time.sleep(poll_s)
  if holder is None:
    found = "there is no lock"
  elif ours:
    found = f"its lock there was left by {describe(holder)}, which no longer runs"
  elif holder.get("coordinator"):
    found = (f"it is held by {describe(holder)} for the run coordinated at "
             f"{holder['coordinator']}")
  else:
    found = f"it is held by {describe(holder)}, not by a multi-host run's first process"
  raise PeerLockMissing(
      f"{lock_path}: process 0 of the run coordinated at {coordinator} did not lock the "
      f"workdir within {timeout_s:g} s ({found}); this process does not start. Start process "
      f"0 with the same --workdir, on a filesystem every host shares")


def claim_workdir(workdir: str | os.PathLike, *, adopt: bool = False, lock: bool = True,
                  coordinator: str | None = None,
                  peer_wait_s: float | None = None) -> WorkdirClaim:
  """Makes sure ``workdir`` may be written by a run, and locks it.

  In order, before anything of the run is read or written: the directory must be new, empty
  or a run of this library (``run_files.workdir_kind``; ``adopt`` lets any directory be used);
  it is created if absent; ``<workdir>/workdir.lock`` is taken (a live holder raises
  :class:`WorkdirLocked`); the directory is judged again under the lock (another process may
  have made it a run meanwhile).

  Multi-host runs (``coordinator``: the run's coordinator address): the first process
  (``lock=True``) records ``coordinator`` in its lock; every other process (``lock=False``)
  takes no lock and judges nothing (the first process, holding the lock, has), but waits for
  that lock (:func:`wait_for_peer_lock`, up to ``peer_wait_s``) and raises
  :class:`PeerLockMissing` without it. ``lock=False`` without ``coordinator`` (a process id
  left to JAX to detect) only judges the directory.

  Raises ``ValueError`` subclasses with one-line messages; nothing is changed when refused.
  """
  from ds_symmetry import run_files  # pylint: disable=import-outside-toplevel
  directory = os.fspath(workdir)
  if not lock and coordinator:
    wait_for_peer_lock(run_files.path(directory, run_files.LOCK), coordinator,
                       timeout_s=peer_wait_s)
    return WorkdirClaim(directory, None, False, "adopted" if adopt else "peer")
  kind = run_files.workdir_kind(directory, adopt=adopt)
  if not lock:
    return WorkdirClaim(directory, None, False, kind)
  created = not os.path.isdir(directory)
  os.makedirs(directory, exist_ok=True)
  held = WorkdirLock(run_files.path(directory, run_files.LOCK), what=f"workdir {directory!r}",
                     extra=peer_record(coordinator) if coordinator else None)
  try:
    held.acquire()
    kind = run_files.workdir_kind(directory, adopt=adopt)
  except BaseException:
    held.release()
    if created:
      with contextlib.suppress(OSError):
        os.rmdir(directory)
    raise
  if kind == "adopted":
    logging.warning("--adopt_workdir: training in %s, which is not a run of this library; the "
                    "files a run writes will be replaced there", directory)
  return WorkdirClaim(directory, held, created, kind)
