"""Tickets as a desk agent gets them: typed text, a folder of .txt/.eml files, a JSONL export.

Loading never stops at the first bad file: each problem names the file, line and field, and the
ticket is skipped (a ticket we cannot read is not a ticket we can route; the agent sees the list).
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".txt", ".eml")
MAX_FILE_BYTES = 4 << 20


@dataclass(frozen=True)
class Ticket:
    """One ticket to route; `source` says where it came from (file, file:line, or typed)."""

    id: str
    text: object
    source: str


@dataclass(frozen=True)
class LoadProblem:
    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field:
            where += f" field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Loaded:
    tickets: tuple[Ticket, ...]
    problems: tuple[LoadProblem, ...]


def typed(text: str, number: int) -> Ticket:
    return Ticket(f"typed-{number}", text, "typed")


def eml_text(data: bytes) -> str:
    """Subject and the plain-text body of an email (HTML-only mail: its text with tags kept)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    subject = str(message.get("subject", "") or "").strip()
    body_part = message.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    body = body_part.get_content() if body_part is not None else ""
    if not isinstance(body, str):
        body = ""
    return f"{subject}\n\n{body.strip()}" if subject else body.strip()


def load_folder(folder: Path) -> Loaded:
    """Every .txt and .eml file directly in `folder` (sorted by name), one ticket each."""
    tickets: list[Ticket] = []
    problems: list[LoadProblem] = []
    if not folder.is_dir():
        return Loaded((), (LoadProblem(str(folder), None, None, "not a folder"),))
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                problems.append(LoadProblem(str(path), None, None,
                                            f"larger than {MAX_FILE_BYTES} bytes; skipped"))
                continue
            data = path.read_bytes()
        except OSError as exc:
            problems.append(LoadProblem(str(path), None, None, exc.strerror or str(exc)))
            continue
        if path.suffix.lower() == ".eml":
            try:
                text: object = eml_text(data)
            except Exception as exc:  # noqa: BLE001 - a broken mail is a problem, not a crash
                problems.append(LoadProblem(str(path), None, None, f"unreadable email: {exc}"))
                continue
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Routed anyway: the router sends undecodable text to a person with a reason.
                problems.append(LoadProblem(str(path), None, None,
                                            f"not UTF-8 at byte {exc.start}; routed as raw "
                                            f"bytes (a person will see it)"))
                text = data
        tickets.append(Ticket(path.stem, text, path.name))
    return Loaded(tuple(tickets), tuple(problems))


def load_jsonl(path: Path) -> Loaded:
    """A JSONL export: one object per line with `text` and optionally `id`."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        return Loaded((), (LoadProblem(str(path), None, None, exc.strerror or str(exc)),))
    return parse_jsonl(lines, str(path))


def parse_jsonl(lines: Iterable[bytes], name: str) -> Loaded:
    tickets: list[Ticket] = []
    problems: list[LoadProblem] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(LoadProblem(name, lineno, None, f"not JSON: {str(exc)[:120]}"))
            continue
        if not isinstance(obj, dict):
            problems.append(LoadProblem(name, lineno, None, "not a JSON object"))
            continue
        if "text" not in obj:
            problems.append(LoadProblem(name, lineno, "text", "missing"))
            continue
        ticket_id = obj.get("id", f"line-{lineno}")
        tickets.append(Ticket(str(ticket_id), obj["text"], f"{Path(name).name}:{lineno}"))
    return Loaded(tuple(tickets), tuple(problems))


def load_path(path: Path) -> Loaded:
    """A folder, a .jsonl file or a single .txt/.eml file."""
    if path.is_dir():
        return load_folder(path)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return load_jsonl(path)
    if path.suffix.lower() in SUFFIXES and path.is_file():
        one = load_folder(path.parent)
        return Loaded(tuple(t for t in one.tickets if t.source == path.name),
                      tuple(p for p in one.problems if p.path == str(path)))
    return Loaded((), (LoadProblem(str(path), None, None,
                                   "not a folder, a .jsonl, a .txt or an .eml file"),))
