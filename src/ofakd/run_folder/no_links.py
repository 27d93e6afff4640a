"""Files ofakd writes in its folders are never reached through a symbolic link.

A link placed where ofakd writes (``run.lock`` -> ``~/notes.txt``, a cache block -> another disk) would have
the write land in the file it points to. Every writer of a run folder, cache, export or tune folder opens its
files here, with ``O_NOFOLLOW``, or checks the name first (:func:`refuse_link`) where a library opens the
file itself (a memory map); a link is refused with :class:`LinkRefused` (exit status 2), naming it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TextIO

from ..errors import OfakdError

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class LinkRefused(OfakdError):
    """A file ofakd would write is a symbolic link (writing would change the file it points to)."""


def link_refused(path: str | Path) -> LinkRefused:
    return LinkRefused(
        f"{path} is a symbolic link; ofakd never writes through a link (the file it points to would be "
        "changed): remove the link (or move the folder's own file back in its place), then run again"
    )


def refuse_link(path: str | Path) -> None:
    """:class:`LinkRefused` when ``path`` is a symbolic link (a broken one included)."""
    if Path(path).is_symlink():
        raise link_refused(path)


def open_no_follow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` that refuses a symbolic link at ``path`` instead of opening what it points to."""
    try:
        return os.open(path, flags | NO_FOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EEXIST and Path(path).is_symlink()):
            raise link_refused(path) from None
        raise


def open_to_append(path: str | Path) -> TextIO:
    """``path`` opened to append text lines (created when missing), never through a symbolic link."""
    if str(path) == os.devnull:
        return open(path, "a", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    return os.fdopen(open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8")
