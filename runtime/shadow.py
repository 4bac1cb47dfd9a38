"""Shadow traffic: log every proposed route, then compare with what people decided.

`ShadowLog` appends one row per decision to a SQLite file (stdlib `sqlite3`, WAL): ticket id,
input digest, score, proposed route, reason, bundle version and digest, time. Ticket text is kept
only when asked. A logging fault is counted and logged, never raised: shadow mode must not change
the route the caller gets.

`shadow_report` joins the log with the human decisions (`id`, `gold_route`, `slice` per line)
and, per bundle, prints the missed-escalation rate of each required slice against the floors of
that bundle's receipt spec (`shadow_floors`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intakegate.errors import InputError
from intakegate.jsonio import loads_strict
from intakegate.receipt.shapes import is_single_slice
from intakegate.runtime.decision import Decision
from intakegate.vocab import Route

log = logging.getLogger(__name__)
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (
    manifest_sha256 TEXT PRIMARY KEY, bundle_version TEXT, dataset TEXT, bundle_dir TEXT,
    threshold REAL, floors TEXT, floors_source TEXT, first_seen TEXT);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, ticket_id TEXT,
    input_sha256 TEXT, score REAL, route TEXT NOT NULL, reason TEXT NOT NULL,
    bundle_version TEXT, manifest_sha256 TEXT, artifact TEXT, device TEXT, windows INTEGER,
    detail TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS decisions_ticket ON decisions (ticket_id);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def bundle_floors(verified: Any) -> tuple[dict[str, float], str]:
    """Floors for a verified bundle, as data from its receipt spec (`shadow_floors`).

    The receipt is hashed with the bundle, so these are the floors it shipped with; every
    required slice of the receipt gets one, 100% where the spec names none. Composed slices
    exist only in receipts: shadow traffic is labelled by base slice.
    """
    from intakegate.receipt.gate import spec_from_json

    try:
        spec = spec_from_json(loads_strict(verified.read(verified.manifest.receipt)
                                           .decode("utf-8")))
    except Exception as exc:  # noqa: BLE001 - an unreadable receipt: the default floor applies
        log.warning("shadow: cannot read the receipt's floors: %s", exc)
        return {}, "default:100%"
    required = sorted(s for s in spec.required_slices if is_single_slice(s))
    floors = dict(spec.shadow_floors)
    source = f"receipt:{verified.manifest.receipt}" if floors else "default:100%"
    for name in required:
        floors.setdefault(name, 1.0)
    return floors, source


class ShadowLog:
    """Append-only SQLite log of decisions; thread-safe; never raises from `append`."""

    def __init__(self, path: str | Path, keep_text: bool = False) -> None:
        self.path = Path(path)
        self.keep_text = keep_text
        self.failures = 0
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10.0,
                                     isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                               (SCHEMA_VERSION,))

    def register_bundle(self, info: Mapping[str, Any]) -> None:
        """Remember a bundle's floors the first time a router on it writes to this log."""
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO bundles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (info["manifest_sha256"], info["bundle_version"], info.get("dataset"),
                     info.get("bundle_dir"), info.get("threshold"),
                     json.dumps(info.get("floors", {}), sort_keys=True),
                     info.get("floors_source"), _now()))
        except sqlite3.Error as exc:
            self._failed(exc)

    def append(self, decisions: Sequence[Decision], texts: Sequence[object] | None = None
               ) -> None:
        """One row per decision, in one transaction."""
        ts = _now()
        rows = []
        for i, d in enumerate(decisions):
            text = None
            if self.keep_text and texts is not None and isinstance(texts[i], str):
                text = texts[i].encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            rows.append((ts, None if d.ticket_id is None else str(d.ticket_id), d.input_sha256,
                         d.score, d.route.value, d.reason.value, d.bundle_version,
                         d.manifest_sha256, d.artifact, d.device, d.windows, d.detail[:500],
                         text))
        try:
            with self._lock:
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT INTO decisions (ts, ticket_id, input_sha256, score, route, reason, "
                    "bundle_version, manifest_sha256, artifact, device, windows, detail, text) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                with self._lock:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # no transaction was open; the failure is already counted below
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.error("shadow log %s: write failed (%d so far): %s", self.path, self.failures,
                      exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# ---------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class SliceResult:
    slice: str
    floor: float
    escalated_by_people: int
    missed: int

    @property
    def missed_rate(self) -> float | None:
        return self.missed / self.escalated_by_people if self.escalated_by_people else None

    @property
    def caught_share(self) -> float | None:
        rate = self.missed_rate
        return None if rate is None else 1.0 - rate

    @property
    def meets_floor(self) -> bool | None:
        share = self.caught_share
        return None if share is None else share + 1e-12 >= self.floor


@dataclass(frozen=True)
class BundleReport:
    bundle_version: str | None
    manifest_sha256: str | None
    floors_source: str
    decisions: int
    matched: int
    slices: tuple[SliceResult, ...]

    @property
    def failing(self) -> list[str]:
        return [s.slice for s in self.slices if s.meets_floor is False]


@dataclass(frozen=True)
class ShadowReport:
    bundles: tuple[BundleReport, ...]
    human_rows: int
    unmatched_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rollback_recommended(self) -> bool:
        return any(b.failing for b in self.bundles)


def read_human_decisions(path: Path) -> dict[str, tuple[Route, str]]:
    """`id -> (gold_route, slice)` from JSONL; errors name the line and field."""
    out: dict[str, tuple[Route, str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        obj = loads_strict(line, path=path, line=n)
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", path=path, line=n)
        ticket, gold, slice_name = obj.get("id"), obj.get("gold_route"), obj.get("slice")
        if not isinstance(ticket, (str, int)) or isinstance(ticket, bool):
            raise InputError("missing or not a string", path=path, line=n, field="id")
        try:
            route = Route(gold)
        except ValueError:
            raise InputError(f"must be one of {[r.value for r in Route]}", path=path, line=n,
                             field="gold_route") from None
        if not isinstance(slice_name, str) or not slice_name:
            raise InputError("missing or not a string", path=path, line=n, field="slice")
        out[str(ticket)] = (route, slice_name)
    return out


def shadow_report(log_path: Path, decisions_path: Path,
                  floors_override: tuple[dict[str, float], str] | None = None) -> ShadowReport:
    """Missed-escalation rate per required slice, per bundle in the log."""
    if not log_path.is_file():
        raise InputError("shadow log not found", path=log_path)
    human = read_human_decisions(decisions_path)
    conn = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True)
    try:
        bundles = {row[0]: row for row in conn.execute(
            "SELECT manifest_sha256, bundle_version, floors, floors_source FROM bundles")}
        # the latest decision per (bundle, ticket)
        rows = conn.execute(
            "SELECT manifest_sha256, bundle_version, ticket_id, route FROM decisions "
            "WHERE seq IN (SELECT MAX(seq) FROM decisions WHERE ticket_id IS NOT NULL "
            "GROUP BY manifest_sha256, ticket_id)").fetchall()
        totals = dict(conn.execute(
            "SELECT COALESCE(manifest_sha256, ''), COUNT(*) FROM decisions GROUP BY 1"))
    except sqlite3.Error as exc:
        raise InputError(f"not a shadow log: {exc}", path=log_path) from None
    finally:
        conn.close()
    by_bundle: dict[str | None, dict[str, Route]] = {}
    versions: dict[str | None, str | None] = {}
    for sha, version, ticket, route in rows:
        by_bundle.setdefault(sha, {})[ticket] = Route(route)
        versions[sha] = version
    seen = {t for proposals in by_bundle.values() for t in proposals}
    reports = []
    for sha, proposals in sorted(by_bundle.items(), key=lambda kv: str(versions[kv[0]])):
        if floors_override is not None:
            floors, source = floors_override
        elif sha in bundles:
            floors, source = json.loads(bundles[sha][2] or "{}"), bundles[sha][3] or ""
        else:
            floors, source = {}, "none: the router had no verified bundle"
        results = []
        for name in sorted(floors):
            escalated = [t for t, (gold, sl) in human.items()
                         if sl == name and gold is Route.HUMAN_REVIEW_NOW and t in proposals]
            missed = sum(1 for t in escalated if proposals[t] is Route.GUARDED_AGENT)
            results.append(SliceResult(name, float(floors[name]), len(escalated), missed))
        matched = sum(1 for t in human if t in proposals)
        reports.append(BundleReport(versions[sha], sha, source, totals.get(sha or "", 0),
                                    matched, tuple(results)))
    unmatched = tuple(sorted(t for t in human if t not in seen))
    return ShadowReport(tuple(reports), len(human), unmatched)


def render_report(report: ShadowReport) -> list[str]:
    """The printed report; the last line is the verdict."""
    lines = [f"human decisions: {report.human_rows} ({len(report.unmatched_ids)} without a "
             f"shadow decision)"]
    if not report.bundles:
        lines.append("no shadow decisions with ticket ids in the log")
    for b in report.bundles:
        lines.append(f"bundle {b.bundle_version} ({(b.manifest_sha256 or '-')[:12]}): "
                     f"{b.decisions} decisions, {b.matched} with a human decision; floors from "
                     f"{b.floors_source}")
        for s in b.slices:
            if s.missed_rate is None:
                lines.append(f"  {s.slice}: no human-escalated tickets yet (floor "
                             f"{s.floor:.0%} caught)")
                continue
            verdict = "OK" if s.meets_floor else "BELOW FLOOR"
            lines.append(f"  {s.slice}: missed {s.missed}/{s.escalated_by_people} "
                         f"(missed-escalation rate {s.missed_rate:.1%}; caught "
                         f"{s.caught_share:.1%}, floor {s.floor:.0%}) {verdict}")
    failing = [(b.bundle_version, name) for b in report.bundles for name in b.failing]
    if failing:
        names = ", ".join(f"{v}: {s}" for v, s in failing)
        lines.append(f"rollback recommended: required slice below its floor ({names})")
    else:
        lines.append("every required slice meets its floor")
    return lines
