"""Events from a file: backfills, exports of another system, the generator's output.

A file holds CloudEvents as JSON lines (one structured event per line) or as one JSON array
(the batch format). Lines that are not JSON are rejected into the quarantine like any
other bad input, with the line number, and reading carries on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import orjson


def read_events(path: str | Path) -> Iterator[Any]:
    p = Path(path)
    with p.open("rb") as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
        fh.seek(0)
        if head == b"[":
            yield from orjson.loads(fh.read())
            return
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                # passed on as text, so that validation rejects it and the quarantine keeps it
                yield f"line {number} of {p.name} is not JSON ({exc}): {line[:200]!r}"
