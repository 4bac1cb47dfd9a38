"""The texts a bundle was gated on, stored in the bundle so that later stages need no dataset.

Why: export, `gate`, the shadow report and `bench` used to re-read the shipped `data/` folder, so a
bundle trained on a user's own JSONL could not be exported. Train now writes
`receipt/fixtures.jsonl` (every validation fixture of the receipt, composed ones included, with
its text) and `eval/rows.json` (the test rows the benchmark routes and the train rows its TF-IDF
baseline is fitted on). The receipt spec pins the sha256 of every fixture text, so a fixtures
file that was edited holds the gate naming the fixture instead of silently re-gating other text.
Both files are customer text: a slim pack leaves them out unless asked (`--with-fixtures`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from intakegate.bundle.paths import EVAL_ROWS, FIXTURES
from intakegate.contract.dataset import TicketRow
from intakegate.errors import InputError
from intakegate.jsonio import dumps_canonical, loads_strict
from intakegate.vocab import Route

_FIXTURE_FIELDS = {"id", "slice", "gold", "text", "account", "month"}


def text_sha256(text: str) -> str:
    """The digest a receipt pins for one fixture text (UTF-8 bytes, exactly as scored)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fixture:
    """One receipt fixture as stored in the bundle."""

    id: str
    slice: str
    gold: int
    text: str
    account: str | None = None
    month: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "slice": self.slice, "gold": self.gold,
                               "text": self.text}
        if self.account is not None:
            out["account"] = self.account
        if self.month is not None:
            out["month"] = self.month
        return out


def fixtures_jsonl(rows: Sequence[TicketRow]) -> bytes:
    """The fixtures file for the receipt's rows, one JSON object a line, in receipt order."""
    lines = [json.dumps(Fixture(r.id, r.slice, r.gold, r.text, r.account, r.month).to_json(),
                        ensure_ascii=False, sort_keys=True) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_fixtures(data: bytes, where: str = FIXTURES) -> dict[str, Fixture]:
    """Every fixture by id; a malformed line is an InputError naming the file, line and field."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8: {exc}", path=where) from None
    out: dict[str, Fixture] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        obj = loads_strict(line, path=where, line=n)
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", path=where, line=n)
        unknown = sorted(set(obj) - _FIXTURE_FIELDS)
        if unknown:
            raise InputError("unknown field", path=where, line=n, field=unknown[0])
        for key, kind in (("id", str), ("slice", str), ("text", str)):
            if not isinstance(obj.get(key), kind) or not obj[key]:
                raise InputError("missing or not a non-empty string", path=where, line=n,
                                 field=key)
        if obj.get("gold") not in (0, 1) or isinstance(obj.get("gold"), bool):
            raise InputError("must be 0 or 1", path=where, line=n, field="gold")
        if obj["id"] in out:
            raise InputError(f"duplicate fixture id {obj['id']!r}", path=where, line=n,
                             field="id")
        out[obj["id"]] = Fixture(obj["id"], obj["slice"], obj["gold"], obj["text"],
                                 obj.get("account"), obj.get("month"))
    return out


@dataclass(frozen=True)
class EvalRows:
    """The test rows a benchmark routes and the train rows its TF-IDF baseline is fitted on."""

    dataset: str
    dataset_version: str
    split_manifest_version: str
    baseline_keywords: tuple[str, ...]
    test: tuple[TicketRow, ...]
    train: tuple[TicketRow, ...]

    def to_bytes(self) -> bytes:
        def rows(rs: Sequence[TicketRow]) -> list[dict[str, Any]]:
            return [{"id": r.id, "slice": r.slice, "gold": r.gold, "text": r.text} for r in rs]

        return dumps_canonical({"dataset": self.dataset, "dataset_version": self.dataset_version,
                                "split_manifest_version": self.split_manifest_version,
                                "baseline_keywords": list(self.baseline_keywords),
                                "test": rows(self.test), "train": rows(self.train)}
                               ).encode("utf-8")


def parse_eval_rows(data: bytes, where: str = EVAL_ROWS) -> EvalRows:
    """The benchmark rows from their verified bytes; errors name the file and field."""
    obj = loads_strict(data.decode("utf-8"), path=where)
    if not isinstance(obj, dict):
        raise InputError("must be a JSON object", path=where)

    def rows(key: str) -> tuple[TicketRow, ...]:
        items = obj.get(key)
        if not isinstance(items, list):
            raise InputError("missing or not a list", path=where, field=key)
        out = []
        for i, r in enumerate(items):
            if (not isinstance(r, dict) or not isinstance(r.get("text"), str)
                    or r.get("gold") not in (0, 1) or not isinstance(r.get("id"), str)):
                raise InputError("needs id, text and gold 0/1", path=where, field=f"{key}[{i}]")
            route = Route.HUMAN_REVIEW_NOW if r["gold"] == 1 else Route.GUARDED_AGENT
            out.append(TicketRow(r["id"], r["text"], route, str(r.get("slice", ""))))
        return tuple(out)

    for key in ("dataset", "dataset_version", "split_manifest_version"):
        if not isinstance(obj.get(key), str):
            raise InputError("missing or not a string", path=where, field=key)
    return EvalRows(obj["dataset"], obj["dataset_version"], obj["split_manifest_version"],
                    tuple(str(k) for k in obj.get("baseline_keywords", [])), rows("test"),
                    rows("train"))


def fixture_texts(fixture_ids: Sequence[str], pinned: Mapping[str, str],
                  read: Callable[[str], bytes]) -> tuple[dict[str, Fixture], str | None]:
    """The receipt's fixtures from the bundle, checked against the pinned text digests.

    Returns the fixtures and None, or what is wrong as a gate reason: a fixture the file lacks
    (`fixture_missing:<id>`) or one whose text does not hash to the receipt's entry
    (`fixture_text_mismatch:<id>`).
    """
    fixtures = parse_fixtures(read(FIXTURES))
    missing = [fid for fid in fixture_ids if fid not in fixtures]
    if missing:
        return fixtures, f"fixture_missing:{','.join(missing[:5])}"
    changed = [fid for fid in fixture_ids if pinned.get(fid) != text_sha256(fixtures[fid].text)]
    if changed:
        return fixtures, f"fixture_text_mismatch:{','.join(changed[:5])}"
    return fixtures, None
