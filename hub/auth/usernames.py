"""Which names may become sciplat users.

Every hub user becomes a Unix account in the embedded default (the hub creates it before the
first lab starts), so a username must be a portable Unix login name and must never be one of
the machine's system accounts or groups. One rule for both authenticators and the spawner.
"""

from __future__ import annotations

import grp
import pwd
import re
from collections.abc import Iterable

from sciplat.hub.accounts import GECOS as ACCOUNT_GECOS

__all__ = [
    "BASELINE_RESERVED",
    "USERNAME_PATTERN",
    "reserved_names",
    "username_problem",
]

#: Lowercase letter first, then lowercase letters, digits, ``_`` or ``-``; at most 32 characters
#: (the Linux login-name limit).
USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN)

#: Debian's range for ordinary accounts (``FIRST_UID``/``LAST_UID`` in ``/etc/adduser.conf``).
#: Accounts and groups outside it belong to the system.
FIRST_ID, LAST_ID = 1000, 59999

#: Names reserved everywhere, whether or not this machine has them (a Kubernetes hub pod has a
#: different ``/etc/passwd`` than the nodes the labs run on).
_BASELINE = """
root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody
nogroup operator adm tty disk kmem dialout fax voice cdrom floppy tape sudo wheel audio dip video
plugdev staff users shadow utmp src sasl netdev input kvm render crontab messagebus sshd
systemd-network systemd-resolve systemd-timesync systemd-journal polkitd postgres postfix ntp
jovyan sciplat
"""
BASELINE_RESERVED = frozenset(_BASELINE.split())


def _system(ident: int) -> bool:
    return not FIRST_ID <= ident <= LAST_ID


def reserved_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """Names no sciplat user may take on this machine.

    The baseline, *extra*, every account and group outside the ordinary id range (root, daemon,
    www-data, nobody, ...), every ordinary account sciplat did not create (a person's own
    login: labs never run as it), and every ordinary group that is not some account's own
    group. Accounts sciplat created (GECOS marker) stay usable: they are its users.
    """
    names = set(BASELINE_RESERVED) | set(extra)
    accounts = set()
    for entry in pwd.getpwall():
        accounts.add(entry.pw_name)
        if _system(entry.pw_uid) or entry.pw_gecos.split(",")[0] != ACCOUNT_GECOS:
            names.add(entry.pw_name)
    for group in grp.getgrall():
        if _system(group.gr_gid) or group.gr_name not in accounts:
            names.add(group.gr_name)
    return frozenset(names)


def username_problem(name: str, *, extra_reserved: Iterable[str] = ()) -> str | None:
    """Why *name* cannot be a sciplat username, or None when it can.

    The message is meant for the person choosing the name.
    """
    if not name:
        return "Choose a username."
    if not _USERNAME_RE.match(name):
        shown = name if len(name) <= 40 else name[:37] + "..."
        return (
            f"The username {shown!r} is not allowed: usernames start with a lowercase letter "
            "and contain only lowercase letters, digits, '-' and '_' (at most 32 characters)."
        )
    if name in reserved_names(extra_reserved):
        return f"The username {name!r} is reserved for the system; please choose another."
    return None
