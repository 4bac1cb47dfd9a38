"""Strict JSON: duplicate keys, NaN/Infinity and trailing bytes are errors, never guesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from intakegate.errors import InputError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def loads_strict(text: str, *, path: str | Path | None = None, line: int | None = None) -> Any:
    """Parse one JSON document strictly; errors name the file and line."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"invalid JSON: {exc}", path=path, line=line) from None


def load_json(path: str | Path) -> Any:
    """Read a JSON file strictly."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8: {exc}", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    return loads_strict(text, path=path)


def dumps_canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, no NaN) so equal content always hashes equally."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False, indent=2) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write canonical JSON."""
    Path(path).write_text(dumps_canonical(obj), encoding="utf-8")
