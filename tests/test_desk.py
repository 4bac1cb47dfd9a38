"""The desktop client (intakegate-desk) under pytest-qt, offscreen: decisions shown with route,
reason, score against threshold and the deciding segment highlighted; the bundle's provenance or
the fail-closed state always visible; a 1,000-ticket folder routed off the UI thread with
progress and a responsive window; the queue's counts, filter and JSONL export; the screenshot
mode; and ticket files that cannot be read named by file, line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets")

from intakegate_desk.export import export_jsonl  # noqa: E402
from intakegate_desk.highlight import segment_span  # noqa: E402
from intakegate_desk.queue import Filter, count  # noqa: E402
from intakegate_desk.session import Routed, Session, guard, shown_path  # noqa: E402
from intakegate_desk.tickets import Ticket, load_folder, load_path, parse_jsonl  # noqa: E402

from intakegate.routing import Reason  # noqa: E402
from intakegate.runtime.decision import DecidingSegment, Decision  # noqa: E402
from intakegate.vocab import Route  # noqa: E402
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle, rewrite  # noqa: E402

SAFE = "Where is my package?"
RISKY = "Someone changed my delivery address and I can't sign in."


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


def decision(route: Route = Route.HUMAN_REVIEW_NOW, reason: Reason = Reason.THRESHOLD,
             score: float | None = 0.9, segment: DecidingSegment | None = None) -> Decision:
    return Decision(route, reason, score, 0.3, "v1", "onnx-int8", "cpu", "ab" * 32,
                    segment=segment)


def window_for(qtbot: Any, session: Session) -> Any:
    from intakegate_desk.window import MainWindow

    window = MainWindow(session)
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    return window


def route_and_wait(qtbot: Any, window: Any, text: str) -> Routed:
    window.editor.setPlainText(text)
    window.last_typed = None
    window.route_typed()
    qtbot.waitUntil(lambda: window.last_typed is not None
                    and window.last_typed.ticket.text == text, timeout=30_000)
    return window.last_typed


# ---------------------------------------------------------------------------------------------
# Highlighting (a Decision built here: the router may or may not fill `segment`)


def test_segment_offsets_map_to_qt_positions() -> None:
    text = "Hi 🙂\r\nmy card was stolen. Help"
    start = text.index("my card")
    span = segment_span(text, DecidingSegment(1, "sentence", start, start + 19, 0.9))
    assert span is not None and span.text == "my card was stolen."
    # the emoji is 2 UTF-16 units (+1) and CRLF is one character on screen (-1)
    assert span.start == start and span.end == start + 19
    emoji_only = "🙂🙂 stolen"
    s2 = segment_span(emoji_only, DecidingSegment(0, "window", 3, 9, 0.5))
    assert s2 is not None and (s2.start, s2.end) == (5, 11)
    assert segment_span(text, DecidingSegment(0, "whole", 5, 999, 0.5)) is None
    assert segment_span(text, None) is None and segment_span(b"x", None) is None


def test_the_deciding_segment_is_highlighted_in_the_ticket(qtbot: Any) -> None:
    window = window_for(qtbot, Session(None))
    text = "Thanks for the tracking link. Also someone changed my address and I can't log in."
    start = text.index("someone")
    seg = DecidingSegment(1, "sentence", start, len(text), 0.97)
    item = Routed(Ticket("t", text, "typed"), decision(segment=seg))
    window.editor.setPlainText(text)
    window.show_typed(item)
    [selection] = window.editor.extraSelections()
    assert selection.cursor.selectedText() == text[start:]
    assert "sentence #1" in window.ticket_panel.segment.text()
    assert "highlighted" in window.ticket_panel.segment.text()
    window.show_typed(Routed(Ticket("t", text, "typed"), decision()))  # no segment: no paint
    assert window.editor.extraSelections() == []
    assert window.ticket_panel.segment.text() == "not reported by this router"


# ---------------------------------------------------------------------------------------------
# A real (tiny) bundle, and the fail-closed states


def test_route_a_typed_ticket_with_a_ready_bundle(qtbot: Any, onnx_bundle: Path) -> None:
    session = Session.open(str(onnx_bundle))
    window = window_for(qtbot, session)
    info = session.info()
    bar = window.bundle_bar.title.text()
    assert info.ready and info.bundle_version in bar and info.manifest_sha256[:12] in bar
    assert "onnx-int8 on cpu" in bar and f"{info.threshold:.4f}" in bar
    safe = route_and_wait(qtbot, window, SAFE)
    assert safe.decision.route is Route.GUARDED_AGENT
    assert window.ticket_panel.badge.text().startswith("guarded_agent")
    assert "below threshold" in window.ticket_panel.score.text()
    risky = route_and_wait(qtbot, window, RISKY)
    assert risky.decision.route is Route.HUMAN_REVIEW_NOW
    assert "a person must see" in window.ticket_panel.badge.text()
    assert "at or above threshold" in window.ticket_panel.score.text()
    qtbot.waitUntil(lambda: "guarded_agent 1" in window.bundle_bar.health.text())
    span = segment_span(RISKY, risky.decision.segment)
    assert bool(window.editor.extraSelections()) == (span is not None)


def held_copy(src: Path, dst: Path) -> Path:
    bundle = copy_bundle(src, dst, "held")
    rewrite(bundle, lambda m: m["artifacts"]["onnx-int8"].update(status="hold",
                                                                 reason="missed:x"))
    return bundle


@pytest.mark.parametrize("state, reason", [("none", "model_unavailable"),
                                           ("tampered", "bundle_integrity"),
                                           ("held", "artifact_held")])
def test_fail_closed_states_are_plain_and_every_ticket_goes_to_a_person(
        qtbot: Any, onnx_bundle: Path, tmp_path: Path, state: str, reason: str) -> None:
    if state == "none":
        session = Session.open(None)
    elif state == "tampered":
        bad = copy_bundle(onnx_bundle, tmp_path, "tampered")
        (bad / "docs" / "evil.md").write_text("x")
        session = Session.open(str(bad))
    else:
        session = Session.open(str(held_copy(onnx_bundle, tmp_path)))
    window = window_for(qtbot, session)
    assert window.bundle_bar.title.text().startswith(f"FAIL-CLOSED: {reason}.")
    assert "Every ticket is marked for a person" in window.bundle_bar.title.text()
    routed = route_and_wait(qtbot, window, SAFE)
    assert routed.decision.route is Route.HUMAN_REVIEW_NOW
    assert routed.decision.reason.value == reason
    assert window.ticket_panel.badge.text().startswith("human_review_now")


def test_client_guard_never_shows_an_unsafe_agent_decision() -> None:
    unsafe = decision(Route.GUARDED_AGENT, Reason.BELOW_THRESHOLD, None)
    assert guard(unsafe).route is Route.HUMAN_REVIEW_NOW
    ok = decision(Route.GUARDED_AGENT, Reason.BELOW_THRESHOLD, 0.1)
    assert guard(ok) is ok


# ---------------------------------------------------------------------------------------------
# The queue: 1,000 tickets, progress, responsiveness, counts, filter, export


def test_a_thousand_ticket_folder_stays_responsive(qtbot: Any, onnx_bundle: Path,
                                                   tmp_path: Path) -> None:
    from PySide6.QtCore import QTimer

    folder = tmp_path / "tickets"
    folder.mkdir()
    for k in range(1000):
        text = (SAFE if k % 2 else RISKY) + f" Order {k}." + (" More detail." * (k % 7))
        (folder / f"{k:04d}.txt").write_text(text, encoding="utf-8")
    (folder / "9999.txt").write_bytes(b"\xff\xfe not utf-8")
    window = window_for(qtbot, Session.open(str(onnx_bundle)))
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    progress: list[tuple[int, int]] = []
    job = window.open_path(folder)
    job.progress.connect(lambda done, total: progress.append((done, total)))
    qtbot.waitUntil(lambda: not window.progress.isVisible(), timeout=300_000)
    timer.stop()
    assert len(window.model.items) == 1001
    assert len(progress) > 10 and progress[-1] == (1001, 1001)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 10 and max(gaps) < 1.0, f"UI stalled {max(gaps):.2f}s"
    c = count(window.model.items)
    assert sum(c.routes.values()) == 1001 and c.reasons["invalid_unicode"] == 1
    assert "1001 tickets" in window.counts.text()
    assert "not UTF-8" in window.problems.text()
    # filter by route and by text
    window.route_filter.setCurrentText("guarded_agent")
    assert window.model.rowCount() == c.routes.get("guarded_agent", 0) > 0
    window.route_filter.setCurrentText("all")
    window.reason_filter.setCurrentText("invalid_unicode")
    assert window.model.rowCount() == 1
    window.reason_filter.setCurrentText("all")
    window.search.setText("0042")
    assert window.model.rowCount() == 1
    window.table.selectRow(0)
    assert window.queue_panel.reason.text() in {"threshold", "below_threshold"}
    window.search.setText("")
    out = tmp_path / "decisions.jsonl"
    assert export_jsonl(window.model.items, out) == 1001
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["source"] for r in rows} >= {"0000.txt", "9999.txt"}
    assert all(set(r) >= {"id", "route", "reason", "score", "threshold", "manifest_sha256"}
               for r in rows)
    assert all(r["route"] == "human_review_now" for r in rows if r["reason"] != "below_threshold")


def test_queue_filter_and_counts_without_qt() -> None:
    items = [Routed(Ticket("a", "x", "a.txt"), decision()),
             Routed(Ticket("b", "y", "b.txt"),
                    decision(Route.GUARDED_AGENT, Reason.BELOW_THRESHOLD, 0.1))]
    c = count(items)
    assert c.routes == {"human_review_now": 1, "guarded_agent": 1}
    assert [i.ticket.id for i in items if Filter(route="guarded_agent").matches(i)] == ["b"]
    assert [i.ticket.id for i in items if Filter(text="A.TXT").matches(i)] == ["a"]


# ---------------------------------------------------------------------------------------------
# Ticket files


def test_ticket_files_and_problems_name_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "b.eml").write_bytes(b"Subject: Charged twice\nContent-Type: text/plain\n\n"
                                     b"Please refund the duplicate.\n")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    loaded = load_folder(tmp_path)
    assert [t.id for t in loaded.tickets] == ["a", "b"]
    assert loaded.tickets[1].text == "Charged twice\n\nPlease refund the duplicate."
    parsed = parse_jsonl([b'{"id": 1, "text": "x"}', b"", b"nope", b"[1]", b'{"id": 2}'],
                         "export.jsonl")
    assert [t.id for t in parsed.tickets] == ["1"]
    assert [str(p) for p in parsed.problems] == [
        "export.jsonl:3: not JSON: Expecting value: line 1 column 1 (char 0)",
        "export.jsonl:4: not a JSON object", "export.jsonl:5 field 'text': missing"]
    assert load_path(tmp_path / "missing.csv").problems


# ---------------------------------------------------------------------------------------------
# The console script


def test_screenshot_mode_writes_a_png_and_exits(onnx_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    proc = subprocess.run([sys.executable, "-m", "intakegate_desk", "--bundle", str(onnx_bundle),
                           "--ticket", RISKY, "--screenshot", str(out), "--size", "900x600"],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    bad = subprocess.run([sys.executable, "-m", "intakegate_desk", "--size", "huge"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: --size") and "Traceback" not in bad.stderr


def test_the_status_bar_shows_a_bundle_path_without_the_machine_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Screenshots and shared screens show `bundles/<dataset>/<version>`, not /tmp/... or
    /home/<user>/...: relative to the working folder, else under `~`."""
    bundle = tmp_path / "work" / "bundles" / "refund-intake" / "v5"
    bundle.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path(str(bundle)) == "bundles/refund-intake/v5"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir("/")
    assert shown_path(str(bundle)) == "~/work/bundles/refund-intake/v5"
    assert shown_path(None) == "-"
