"""Runtime CLI: `intakegate route`, `intakegate serve --stdio`, shadow log and `shadow report`,
and concurrency (8 threads x 500 tickets equal the single-threaded answers)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from intakegate.bundle import activate
from intakegate.errors import InputError
from intakegate.runtime import Router
from intakegate.runtime.shadow import ShadowLog, bundle_floors
from intakegate.vocab import Route
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle, validation_rows

RISKY = "Someone changed my delivery address and I can't sign in."


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


def cli(*args: str, input: bytes | str | None = None) -> Any:
    from intakegate.cli import app

    return CliRunner().invoke(app, list(args), input=input)


def lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# intakegate route


def test_route_text_arguments(onnx_bundle: Path) -> None:
    result = cli("route", str(onnx_bundle), "Where is my package?", RISKY)
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first.startswith("guarded_agent reason=below_threshold")
    assert second.startswith("human_review_now reason=threshold")
    assert "artifact=onnx-int8 device=cpu" in first
    result = cli("route", str(onnx_bundle), "--json", "--artifact", "onnx-fp32", "", RISKY)
    answers = lines(result)
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["route"] == "human_review_now" and answers[0]["reason"] == "empty_text"
    assert set(answers[0]) >= {"id", "route", "reason", "score", "threshold", "bundle_version",
                               "artifact"}


def test_route_jsonl_one_answer_per_line_in_order(onnx_bundle: Path, tmp_path: Path) -> None:
    raw = b"\n".join([
        b'{"id": "a", "text": "Where is my package?"}',
        json.dumps({"id": "b", "text": RISKY}).encode(),
        b"not json",
        b"\xff\xfe\x80 bad bytes",
        b'{"id": "e"}',
        b"",
        b'["a", "list"]',
        b'{"id": "h", "text": null}',
        b'{"id": "i", "text": "\\ud800"}',
        b'{"id": 7, "text": "refund please", "id": 8}',
        b'{"id": 9, "text": "refund please"}',
    ]) + b"\n"
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(raw)
    result = cli("route", str(onnx_bundle), "--input", str(path))
    assert result.exit_code == 0, result.output
    answers = lines(result)
    assert len(answers) == 11
    assert [a["id"] for a in answers] == ["a", "b", None, None, "e", None, None, "h", "i", None,
                                          9]
    assert [a["reason"] for a in answers] == [
        "below_threshold", "threshold", "input_not_text", "invalid_unicode", "input_not_text",
        "input_not_text", "input_not_text", "input_not_text", "invalid_unicode",
        "input_not_text", answers[10]["reason"]]
    assert all(a["route"] == "human_review_now" for a in answers[1:10])
    assert "line 3" in answers[2]["detail"] and "line 4" in answers[3]["detail"]
    assert answers[9]["detail"].startswith("bad_json") and "duplicate" in answers[9]["detail"]


def test_route_jsonl_large_file_and_stdin(onnx_bundle: Path, tmp_path: Path) -> None:
    rows = validation_rows(onnx_bundle)
    body = "".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rows)
    result = cli("route", str(onnx_bundle), "--input", "-", "--artifact", "onnx-fp32",
                 input=body)
    answers = lines(result)
    assert [a["id"] for a in answers] == [r.id for r in rows]
    router = Router.load(onnx_bundle, artifact="onnx-fp32")
    for a, r in zip(answers, rows):
        d = router.route(r.text)
        assert (a["route"], a["reason"], a["score"]) == (d.route.value, d.reason.value, d.score)


def test_route_cli_fail_closed_and_bad_options(onnx_bundle: Path, tmp_path: Path) -> None:
    bad = copy_bundle(onnx_bundle, tmp_path, "bad")
    (bad / "docs" / "evil.md").write_text("x")
    result = cli("route", str(bad), "--json", "Where is my package?")
    assert result.exit_code == 3
    [answer] = lines(result)
    assert (answer["route"], answer["reason"]) == ("human_review_now", "bundle_integrity")
    result = cli("route", str(onnx_bundle), "--device", "cuda", "hi")
    assert result.exit_code == 2 and "onnxruntime-gpu" in result.output
    assert cli("route", str(onnx_bundle)).exit_code == 2
    assert cli("route", str(onnx_bundle), "hi", "--input", "x.jsonl").exit_code == 2


def test_route_by_dataset_name(onnx_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    copy_bundle(onnx_bundle, root / "refund-intake", "v1")
    activate(root, "refund-intake", "v1")
    result = cli("route", "refund-intake", "--bundles-dir", str(root), "--json", RISKY)
    assert result.exit_code == 0 and lines(result)[0]["reason"] == "threshold"


# ---------------------------------------------------------------------------------------------
# intakegate serve --stdio


def test_serve_stdio(onnx_bundle: Path) -> None:
    """The quick tour of protocol v1 (tests/test_stdio_protocol.py holds the details)."""
    requests = [
        {"op": "health", "id": "h1"},
        {"id": "t1", "text": "Where is my package?"},
        {"id": "t2", "text": RISKY},
        {"id": "t3", "text": "   "},
        {"op": "reload", "id": "r1"},
        {"op": "dance", "id": "x1"},
    ]
    payload = "".join(json.dumps(r) + "\n" for r in requests).encode() + b"{broken\n"
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "serve", str(onnx_bundle),
                           "--stdio"], input=payload, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    ready, *out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert ready["op"] == "ready" and ready["ready"] is True and ready["protocol"] == 1
    assert len(out) == len(requests) + 1
    assert out[0]["op"] == "health" and out[0]["ready"] is True
    assert out[0]["artifact"] == "onnx-int8" and out[0]["selftest"].startswith("passed")
    assert [o["id"] for o in out[1:4]] == ["t1", "t2", "t3"]
    assert [o["op"] for o in out[1:4]] == ["route"] * 3
    assert [o["route"] for o in out[1:4]] == ["guarded_agent", "human_review_now",
                                              "human_review_now"]
    assert out[4]["op"] == "reload" and out[4]["ok"] is True
    assert out[5]["op"] == "error" and out[5]["error"]["code"] == "unknown_op"
    assert out[6]["op"] == "error" and out[6]["error"]["code"] == "bad_json"


def test_serve_requires_stdio(onnx_bundle: Path) -> None:
    assert cli("serve", str(onnx_bundle)).exit_code == 2


# ---------------------------------------------------------------------------------------------
# Shadow mode and the report


def _human(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"id": r.id, "gold_route": "human_review_now" if r.gold else "guarded_agent",
             "slice": r.slice} for r in rows]


def test_shadow_log_records_without_changing_routes(onnx_bundle: Path, tmp_path: Path) -> None:
    rows = validation_rows(onnx_bundle)
    plain = Router.load(onnx_bundle, artifact="onnx-fp32")
    shadow = Router.load(onnx_bundle, artifact="onnx-fp32", shadow_log=tmp_path / "s.db")
    a = plain.route_batch([r.text for r in rows])
    b = shadow.route_batch([r.text for r in rows], [r.id for r in rows])
    assert [(x.route, x.score) for x in a] == [(y.route, y.score) for y in b]
    conn = sqlite3.connect(tmp_path / "s.db")
    got = conn.execute("SELECT ticket_id, route, score, bundle_version, manifest_sha256, text, ts "
                       "FROM decisions ORDER BY seq").fetchall()
    assert [g[0] for g in got] == [r.id for r in rows]
    assert all(g[3] == shadow.bundle_version and g[4] == shadow.manifest_sha256 and g[5] is None
               and g[6] for g in got)
    # a failing log never changes or blocks a route
    shadow.shadow._conn.close()  # type: ignore[union-attr]
    d = shadow.route(RISKY, "late")
    assert d.route is Route.HUMAN_REVIEW_NOW and shadow.health()["shadow_log_failures"] == 1
    kept = Router.load(onnx_bundle, artifact="onnx-fp32",
                       shadow_log=ShadowLog(tmp_path / "t.db", keep_text=True))
    kept.route("refund please", "k1")
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("SELECT text FROM decisions").fetchone() == ("refund please",)


def test_unopenable_shadow_log_is_a_startup_error(onnx_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot open the shadow log"):
        Router.load(onnx_bundle, artifact="onnx-fp32", shadow_log=tmp_path / "no" / "s.db")


def test_floors_come_from_the_receipt_spec_as_data(onnx_bundle: Path) -> None:
    from intakegate.bundle import verify_bundle

    floors, source = bundle_floors(verify_bundle(onnx_bundle))
    assert source == "receipt:receipt/spec.json"
    assert floors == {"account_takeover": 1.0, "damaged_package_exception": 1.0,
                      "return_window_exception": 1.0}


def test_shadow_report_passes_then_recommends_rollback(onnx_bundle: Path,
                                                       tmp_path: Path) -> None:
    rows = validation_rows(onnx_bundle)
    log = tmp_path / "shadow.db"
    router = Router.load(onnx_bundle, artifact="onnx-fp32", shadow_log=log)
    decisions = router.route_batch([r.text for r in rows], [r.id for r in rows])
    human = tmp_path / "human.jsonl"
    human.write_text("".join(json.dumps(h) + "\n" for h in _human(rows)))
    result = cli("shadow", "report", str(log), "--decisions", str(human))
    assert result.exit_code == 0, result.output
    assert "every required slice meets its floor" in result.stdout
    assert "account_takeover: missed 0/" in result.stdout
    # People escalated a ticket the bundle proposed for the agent, in a required slice.
    sent_to_agent = next(r for r, d in zip(rows, decisions) if d.route is Route.GUARDED_AGENT)
    human_rows = _human(rows)
    for h in human_rows:
        if h["id"] == sent_to_agent.id:
            h.update(gold_route="human_review_now", slice="account_takeover")
    human.write_text("".join(json.dumps(h) + "\n" for h in human_rows))
    result = cli("shadow", "report", str(log), "--decisions", str(human))
    assert result.exit_code == 1
    assert "rollback recommended" in result.stdout and "BELOW FLOOR" in result.stdout
    result = cli("shadow", "report", str(log), "--decisions", str(human), "--bundle",
                 str(onnx_bundle))
    assert result.exit_code == 1
    human.write_text('{"id": "x", "gold_route": "maybe", "slice": "s"}\n')
    result = cli("shadow", "report", str(log), "--decisions", str(human))
    assert isinstance(result.exception, InputError)  # the entry point prints it and exits 2
    assert "human.jsonl:1 field 'gold_route'" in str(result.exception)


# ---------------------------------------------------------------------------------------------
# Concurrency (C1 at the size)


@pytest.mark.parametrize("artifact", ["onnx-int8", "onnx-fp32"])
def test_eight_threads_equal_single_thread(onnx_bundle: Path, artifact: str) -> None:
    """8 threads x 500 tickets on one router (shared session, per-thread tokenizers): every
    answer equals the single-threaded answer, bit for bit."""
    router = Router.load(onnx_bundle, artifact=artifact)
    base = [r.text for r in validation_rows(onnx_bundle)]
    texts = [base[i % len(base)] + ("" if i < len(base) else f" order {i}") for i in range(500)]
    reference = [router.route(t) for t in texts]
    results: dict[int, list[Any]] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            order = list(range(500))[k * 61 % 500:] + list(range(500))[:k * 61 % 500]
            out = [None] * 500
            for i in order:
                out[i] = router.route(texts[i])  # type: ignore[call-overload]
            results[k] = out
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    for out in results.values():
        assert [(d.route, d.reason, d.score) for d in out] == \
            [(d.route, d.reason, d.score) for d in reference]
    assert router.health()["decisions"].get("model_error", 0) == 0
