"""Selecting and following log lines for `aca-infer logs`, over any source of text lines.

A line's time is its `ts` field (the server's JSON log lines) or a leading ISO timestamp (the
target's event lines); a line without one (the bootstrap's plain lines, a traceback) belongs with
the stamped line before it, and lines before any stamped line with the first stamped one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from provision.errors import InputError

FOLLOW_POLL_SECONDS = 0.2
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d` -> a timedelta; InputError naming --since otherwise."""
    value, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not value.isdigit() or int(value) == 0:
        raise InputError(f"--since {text!r}: give a duration such as 90s, 15m, 2h or 1d")
    return timedelta(seconds=int(value) * _UNITS[unit])


def line_time(line: str) -> datetime | None:
    stamp: object = None
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        stamp = entry.get("ts") if isinstance(entry, dict) else None
    else:
        stamp = line.split(" ", 1)[0]
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def since(lines: Iterable[str], cutoff: datetime) -> Iterator[str]:
    """The lines at or after `cutoff` (unstamped lines go with their stamped neighbour)."""
    waiting: list[str] = []  # unstamped lines before the first stamped one
    keep: bool | None = None
    for line in lines:
        stamp = line_time(line)
        if stamp is not None:
            keep = stamp >= cutoff
            if keep:
                yield from waiting
            waiting = []
        if keep is None:
            waiting.append(line)
        elif keep:
            yield line
    yield from waiting  # no stamped line at all: nothing says they are old


def select(lines: list[str], tail: int | None, recent: timedelta | None) -> list[str]:
    if recent is not None:
        lines = list(since(lines, datetime.now(UTC) - recent))
    return lines[-tail:] if tail is not None else lines


def read_lines(path: Path) -> tuple[list[str], int]:
    """The file's complete lines and the offset after them (0 and none when it is missing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").splitlines(), end


def follow(locate: Callable[[], Path | None], path: Path | None, offset: int) -> Iterator[str]:
    """Lines appended to `path` after `offset`, as they are written, until the caller stops.

    `locate` names the log to read and is asked again at every poll: a take-over moves the live
    replica to a new log file, and following the old one would go silent."""
    partial = b""
    while True:
        now = locate()
        if now != path:  # a new replica took over: read its log from the start
            path, offset, partial = now, 0, b""
        try:
            if path is None:
                raise FileNotFoundError
            with path.open("rb") as handle:
                if handle.seek(0, 2) < offset:
                    offset = 0  # the file was replaced (a `down` and a new start): read it anew
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        if not chunk:
            time.sleep(FOLLOW_POLL_SECONDS)
            continue
        offset += len(chunk)
        *complete, partial = (partial + chunk).split(b"\n")
        for line in complete:
            yield line.decode(errors="replace")
