"""One driver per sweep folder: a lease file that names the driver and is renewed while it runs.

Two drivers on one folder (the same command started twice, in two terminals or two
batch jobs) would run every trial twice, and one's fine-tune trials could read a
checkpoint the other is rewriting. So a driver holds ``<sweep>/driver.lease``
(JSON: host, pid, started, renewed, command), rewrites it every TTL_S / 4 seconds
and removes it at exit (a renewal that fails is retried with backoff until the lease
would be stale; then, or when another driver has taken it, the lease is lost and the
driver stops starting trials). Another driver is refused while the lease is fresh, with the
holder's host, pid and start time and the way out (``--take-over``, for a holder known
to be dead); a lease not renewed for TTL_S seconds, or held by a process of this host
that no longer exists, is taken over with a warning.

Works on any folder every node sees (NFS, Lustre, GPFS: writes are atomic renames) and
in an object store (S3, GCS: one object written whole, read-after-write consistent);
a driver that takes a lease reads it back after a moment to make sure a rival did not
take it at the same time.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fno.storage import Location, location

LEASE_NAME = "driver.lease"
TTL_S = 120.0  # a lease not renewed for this long is stale (its driver died without removing it)
SETTLE_S = 0.5  # wait before reading a fresh lease back (a rival's write would land by then)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease."""

    host: str
    pid: int
    started: float  # unix time the driver took the lease
    renewed: float  # unix time of its last renewal
    command: str

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"host {self.host}, pid {self.pid}, since {started}, renewed {now - self.renewed:.0f} s ago"


class LeaseHeldError(RuntimeError):
    """Another live driver holds the sweep folder."""


def _read(path: Location) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # unreadable: treat as stale, it is replaced
        return Holder(host="?", pid=-1, started=0.0, renewed=0.0, command="(unreadable lease)")


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class Lease:
    """The lease of ``sweep_dir`` for this process; use as a context manager around the run."""

    def __init__(self, sweep_dir: Path | Location, command: str, take_over: bool = False, ttl_s: float = TTL_S) -> None:
        self.path = location(sweep_dir) / LEASE_NAME
        self.take_over, self.ttl_s = take_over, ttl_s
        now = time.time()
        self.me = Holder(socket.gethostname(), os.getpid(), now, now, command)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # set if the lease was lost while this driver ran (taken over, or not renewable)
        self.lost_reason = ""
        self.on_lost: Callable[[str], None] | None = None  # called once, from the renewal thread, when lost

    def _mine(self, holder: Holder | None) -> bool:
        return holder is not None and (holder.host, holder.pid, holder.started) == (
            self.me.host,
            self.me.pid,
            self.me.started,
        )

    def _write(self, renewed: float) -> None:
        holder = Holder(**{**asdict(self.me), "renewed": renewed})
        self.path.write_bytes(json.dumps(asdict(holder)).encode())

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeldError naming the holder; warns on stderr when it
        takes over a stale one."""
        now = time.time()
        holder = _read(self.path)
        if holder is not None and not self._mine(holder):
            stale = now - holder.renewed > self.ttl_s
            dead_here = holder.host == self.me.host and not _alive_here(holder.pid)
            if not (stale or dead_here or self.take_over):
                raise LeaseHeldError(
                    f"another driver runs this sweep ({self.path}: {holder.describe(now)}; command: "
                    f"{holder.command}). Wait for it to finish; if it is dead (its host lost, its job killed), "
                    f"its lease goes stale {max(0.0, self.ttl_s - (now - holder.renewed)):.0f} s from now, or pass "
                    "--take-over to take the sweep now"
                )
            why = "--take-over" if not (stale or dead_here) else "it is stale" if stale else "its process is gone"
            print(f"warning: taking over the sweep's lease from {holder.describe(now)} ({why})", file=sys.stderr)
        self._write(now)
        time.sleep(SETTLE_S)
        if not self._mine(_read(self.path)):  # a rival wrote after us: it has the sweep
            raise LeaseHeldError(f"another driver took this sweep at the same moment ({self.path}); try again")
        self._thread = threading.Thread(target=self._renew, name="sweep-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        """Rewrite the lease every ttl / 4 s. A renewal that fails (EIO, an object store that
        times out) is retried with backoff, 1 s doubling up to 16 s, while the last good
        renewal is younger than the ttl; past it, or when another driver's lease is found,
        the lease is lost: ``lost`` is set and ``on_lost`` called once, with the reason."""
        last_good = time.time()
        first_backoff = min(1.0, self.ttl_s / 8)  # 1 s, 2, 4 ... (a test's short ttl: shorter)
        wait, backoff = self.ttl_s / 4, first_backoff
        while not self._stop.wait(wait):
            try:
                if not self._mine(_read(self.path)):
                    self._lose(f"another driver took over this sweep's lease ({self.path})")
                    return
                self._write(time.time())
            except OSError as err:
                if time.time() - last_good > self.ttl_s:
                    self._lose(f"the lease could not be renewed for {self.ttl_s:g} s ({self.path}: {err})")
                    return
                warning = f"warning: renewing the sweep's lease failed ({err}); retrying in {backoff:.3g} s"
                print(warning, file=sys.stderr)
                wait, backoff = backoff, min(backoff * 2, first_backoff * 2**4)
                continue
            last_good, wait, backoff = time.time(), self.ttl_s / 4, first_backoff

    def _lose(self, reason: str) -> None:
        self.lost, self.lost_reason = True, reason
        print(f"warning: {reason}; this driver starts no more trials", file=sys.stderr)
        if self.on_lost is not None:
            self.on_lost(reason)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._mine(_read(self.path)):
            self.path.delete()

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
