"""Export the queue's decisions as JSONL: the router's wire record plus where the ticket came
from. Ticket text is left out unless asked for, as the router's own records leave it out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from intakegate_desk.session import Routed


def export_jsonl(items: Iterable[Routed], path: Path, with_text: bool = False) -> int:
    """Write atomically (temp file, then rename); returns the number of lines written."""
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    with tmp.open("w", encoding="ascii") as handle:
        for item in items:
            record = item.decision.to_wire()
            record["id"] = item.ticket.id
            record["source"] = item.ticket.source
            if with_text and isinstance(item.ticket.text, str):
                record["text"] = item.ticket.text
            handle.write(json.dumps(record, ensure_ascii=True, allow_nan=False) + "\n")
            written += 1
    os.replace(tmp, path)
    return written
