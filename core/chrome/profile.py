"""The Chrome profile's `SingletonLock`: who holds the profile, and clearing a lock a crash left behind.

Chrome marks a profile in use with a symlink `SingletonLock -> <hostname>-<pid>`. A second Chrome on
the same profile exits at once with code 21; a lock whose process is dead (a crash, a killed
container) would otherwise block every later launch on another host name.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILES = ("SingletonLock", "SingletonSocket", "SingletonCookie")
PROFILE_IN_USE_EXIT = 21


class ProfileInUse(Exception):
    """Another browser holds the profile; the message is one line naming it."""

    def __init__(self, profile: Path, holder: str) -> None:
        super().__init__(
            f"Chrome profile {profile} is already in use by another browser ({holder}); "
            "close that browser, or start it with --remote-debugging-port=VECTRA_CDP_PORT so Vectra attaches to it"
        )
        self.profile = profile


@dataclass(frozen=True, slots=True)
class LockHolder:
    host: str
    pid: int

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"

    @property
    def alive(self) -> bool:
        """Only a process on this host can be checked; a lock of another host counts as stale."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def lock_holder(profile: Path) -> LockHolder | None:
    try:
        target = os.readlink(profile / "SingletonLock")
    except OSError:
        return None
    host, _, pid = target.rpartition("-")
    return LockHolder(host, int(pid)) if pid.isdigit() and host else None


def claim_profile(profile: Path) -> None:
    """Create the profile folder, raise `ProfileInUse` if a live browser holds it, clear a stale lock."""
    profile.mkdir(parents=True, exist_ok=True)
    holder = lock_holder(profile)
    if holder is None:
        return
    if holder.alive:
        raise ProfileInUse(profile, str(holder))
    log.warning("removing the stale lock of Chrome profile %s (%s is gone)", profile, holder)
    for name in LOCK_FILES:
        try:
            (profile / name).unlink()
        except FileNotFoundError:
            pass
