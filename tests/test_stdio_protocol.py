"""`intakegate serve --stdio`, protocol v1: every request and reply is checked against the shipped
JSON Schema; a ready event comes first; every request gets exactly one reply carrying `op` and
its id; bad input (garbage, huge lines, binary, closed pipes, 10,000 pipelined requests, a client
that stops reading) never routes to `guarded_agent` and never goes unanswered."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from intakegate.bundle import activate
from intakegate.routing import Reason
from intakegate.runtime.live import LiveRouter
from intakegate.runtime.protocol import (
    MAX_TICKETS,
    BadRequest,
    ControlRequest,
    ErrorCode,
    RouteRequest,
    load_schema,
    parse_request,
)
from intakegate.runtime.stdio import ServeOptions, StdioServer
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle

RISKY = "Someone changed my delivery address and I can't sign in."
SAFE = "Where is my package?"
SCHEMA = load_schema()


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]})


REQUEST, MESSAGE = validator("request"), validator("server_message")


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


def encode(requests: list[dict[str, Any]]) -> bytes:
    for r in requests:
        REQUEST.validate(r)
    return b"".join(json.dumps(r).encode() + b"\n" for r in requests)


def replies(raw: bytes) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in raw.decode("ascii").splitlines()]
    for message in out:
        MESSAGE.validate(message)
        assert "op" in message and "id" in message
    return out


def serve(live: Any, payload: bytes, **options: Any) -> tuple[int, list[dict[str, Any]]]:
    stdout = io.BytesIO()
    rc = StdioServer(live, io.BytesIO(payload), stdout, ServeOptions(**options)).run()
    return rc, replies(stdout.getvalue())


def spawn(bundle: str, *args: str, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "intakegate", "serve", bundle, "--stdio",
                             *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------------------------------------
# The schema and the parser


def test_schema_is_valid_and_matches_the_code_vocabularies() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    defs = SCHEMA["$defs"]
    assert set(defs["decision"]["properties"]["reason"]["enum"]) == {r.value for r in Reason}
    assert set(defs["error_reply"]["properties"]["error"]["properties"]["code"]["enum"]) == {
        c.value for c in ErrorCode}
    assert defs["route_batch_request"]["properties"]["tickets"]["maxItems"] == MAX_TICKETS
    from intakegate.runtime.decision import WIRE_FIELDS

    assert set(defs["decision"]["required"]) == set(WIRE_FIELDS)


def test_schema_ships_in_the_package_and_docs_name_every_op() -> None:
    from importlib.resources import files

    assert files("intakegate").joinpath("schemas/stdio-v1.json").is_file()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "stdio-protocol.md").read_text()
    for word in ("ready", "route", "tickets", "health", "reload", "shutdown", "error", "fatal",
                 "--workers", "--bundles-dir", "INTAKEGATE_BUNDLES", "line_too_long"):
        assert word in doc


@pytest.mark.parametrize("line, kind, code", [
    (b'{"id": 1, "text": "hi"}', RouteRequest, None),
    (b'{"op": "route", "id": "b", "tickets": [{"id": 1, "text": "a"}]}', RouteRequest, None),
    (b'{"op": "health"}', ControlRequest, None),
    (b'{"op": "reload", "id": 2, "bundle": "x"}', ControlRequest, None),
    (b"", BadRequest, ErrorCode.BLANK_LINE),
    (b"\xff\xfe garbage", BadRequest, ErrorCode.INVALID_UTF8),
    (b"{broken", BadRequest, ErrorCode.BAD_JSON),
    (b'["a"]', BadRequest, ErrorCode.NOT_AN_OBJECT),
    (b'{"op": "dance", "id": 3}', BadRequest, ErrorCode.UNKNOWN_OP),
    (b'{"op": 5}', BadRequest, ErrorCode.BAD_REQUEST),
    (b'{"id": [1], "text": "x"}', BadRequest, ErrorCode.BAD_REQUEST),
    (b'{"id": 1, "text": "x", "id": 2}', BadRequest, ErrorCode.BAD_JSON),
    (b'{"op": "route", "text": "x", "tickets": []}', BadRequest, ErrorCode.BAD_REQUEST),
    (b'{"op": "route", "tickets": "x"}', BadRequest, ErrorCode.BAD_REQUEST),
    (b'{"op": "route", "tickets": [1]}', BadRequest, ErrorCode.BAD_REQUEST),
    (b"[" * 100000, BadRequest, ErrorCode.BAD_JSON),
])
def test_parse_request_never_raises(line: bytes, kind: type, code: ErrorCode | None) -> None:
    parsed = parse_request(line, 7)
    assert isinstance(parsed, kind)
    if code is not None:
        assert parsed.code is code and "line 7" in parsed.message  # type: ignore[union-attr]


def test_too_many_tickets_is_an_error() -> None:
    body = json.dumps({"op": "route", "id": 1,
                       "tickets": [{"text": "x"}] * (MAX_TICKETS + 1)}).encode()
    parsed = parse_request(body, 1)
    assert isinstance(parsed, BadRequest) and parsed.code is ErrorCode.TOO_MANY_TICKETS


# ---------------------------------------------------------------------------------------------
# A session, in process


def test_session_ready_route_health_reload_shutdown(onnx_bundle: Path, tmp_path: Path) -> None:
    live = LiveRouter(onnx_bundle, "onnx-int8")
    bad = copy_bundle(onnx_bundle, tmp_path, "tampered")
    (bad / "docs" / "evil.md").write_text("x")
    requests = [
        {"id": "t1", "text": SAFE},
        {"op": "route", "id": "t2", "text": RISKY},
        {"op": "route", "id": "b1", "tickets": [{"id": "x", "text": SAFE}, {"id": "y", "text": " "},
                                                 {"id": "z", "text": RISKY}]},
        {"op": "health", "id": "h1"},
        {"op": "reload", "id": "r1", "bundle": str(bad)},
        {"id": "t3", "text": SAFE},
        {"op": "health", "id": "h2"},
        {"op": "reload", "id": "r2"},
        {"op": "health", "id": "h3"},
        {"op": "shutdown", "id": "s1"},
        {"id": "never", "text": SAFE},
    ]
    rc, out = serve(live, encode(requests))
    assert rc == 0
    ready, *rest = out
    assert ready["op"] == "ready" and ready["ready"] is True and ready["protocol"] == 1
    assert ready["bundle_version"] == live.current.bundle_version  # type: ignore[union-attr]
    assert ready["manifest_sha256"] and ready["artifact"] == "onnx-int8"
    assert ready["device"] == "cpu" and isinstance(ready["threshold"], float)
    assert [(r["op"], r["id"]) for r in rest] == [
        ("route", "t1"), ("route", "t2"), ("route", "b1"), ("health", "h1"), ("reload", "r1"),
        ("route", "t3"), ("health", "h2"), ("reload", "r2"), ("health", "h3"),
        ("shutdown", "s1")]
    by_id = {r["id"]: r for r in rest}
    assert by_id["t1"]["route"] == "guarded_agent" and by_id["t2"]["route"] == "human_review_now"
    assert [d["id"] for d in by_id["b1"]["decisions"]] == ["x", "y", "z"]
    assert [d["reason"] for d in by_id["b1"]["decisions"]] == ["below_threshold", "empty_text",
                                                              "threshold"]
    failed = by_id["r1"]
    assert failed["ok"] is False and failed["reason"] == "bundle_integrity" and failed["detail"]
    assert failed["ready"] is True and failed["bundle_version"] == ready["bundle_version"]
    assert by_id["t3"]["route"] == "guarded_agent"  # the old bundle kept serving
    assert by_id["r2"]["ok"] is True and by_id["r2"]["reason"] is None
    h1, h3 = by_id["h1"], by_id["h3"]
    assert h1["decisions"] == {"below_threshold": 2, "threshold": 2, "empty_text": 1}
    assert h3["decisions"]["below_threshold"] == 3  # counters survive both reloads
    assert (h3["reloads"], h3["reload_failures"], h3["requests"]) == (2, 1, 9)


def test_ready_false_still_answers_every_ticket_for_a_person(tmp_path: Path) -> None:
    live = LiveRouter(tmp_path / "nothing-here", "onnx-int8")
    rc, out = serve(live, encode([{"id": 1, "text": SAFE}]), looked_in=("a", "b"), hint="h")
    assert rc == 0
    assert out[0]["ready"] is False and out[0]["reason"] == "model_unavailable"
    assert out[0]["detail"].startswith("bundle_not_found") and out[0]["looked_in"] == ["a", "b"]
    assert out[1]["route"] == "human_review_now" and out[1]["reason"] == "model_unavailable"


def test_every_malformed_line_gets_one_error_reply(onnx_bundle: Path) -> None:
    live = LiveRouter(onnx_bundle, "onnx-int8")
    payload = (b"garbage\n\x00\x01\xff\xfe\n\n[1, 2]\n" + b"x" * 5000 + b"\n"
               + b'{"op": "dance", "id": 9}\n{"id": "ok", "text": "Where is my package?"}\n'
               + b'{"id": "no-text"}\n{"id": "num", "text": 42}\n{"id": "tail", "text": "x"}')
    rc, out = serve(live, payload, max_line_bytes=4096)
    assert rc == 0
    rest = out[1:]
    assert len(rest) == 10
    assert [r["error"]["code"] for r in rest[:6]] == [
        "bad_json", "invalid_utf8", "blank_line", "not_an_object", "line_too_long", "unknown_op"]
    assert [r["error"]["line"] for r in rest[:6]] == [1, 2, 3, 4, 5, 6]
    assert rest[6]["route"] == "guarded_agent"
    assert [(r["id"], r["route"], r["reason"]) for r in rest[7:9]] == [
        ("no-text", "human_review_now", "input_not_text"),
        ("num", "human_review_now", "input_not_text")]
    assert rest[9]["id"] == "tail"  # a last line without a newline is still a request


class Exploding:
    """A router stand-in whose every call fails, to prove faults never reach the agent."""

    def health(self) -> dict[str, Any]:
        return {"ready": True, "artifact": "onnx-int8", "device": "cpu", "bundle_version": "v",
                "manifest_sha256": "m", "threshold": 0.5, "reason": None, "detail": None}

    def route_batch(self, texts: Any, ids: Any) -> Any:
        raise RuntimeError("boom")

    reject = reload = route_batch


def test_a_fault_routes_to_a_person_and_control_faults_are_errors() -> None:
    rc, out = serve(Exploding(), encode([
        {"id": 1, "text": SAFE}, {"op": "route", "id": 2, "tickets": [{"id": "a", "text": SAFE}]},
        {"op": "reload", "id": 3}]), workers=2)
    assert rc == 0
    by_id = {r["id"]: r for r in out[1:]}
    assert by_id[1]["route"] == "human_review_now" and by_id[1]["reason"] == "model_error"
    assert by_id[2]["decisions"][0]["route"] == "human_review_now"
    assert by_id[3]["op"] == "error" and by_id[3]["error"]["code"] == "internal"


class BrokenStdin(io.BytesIO):
    def readline(self, size: int | None = -1) -> bytes:
        raise OSError("stdin went away")


class ClosedStdout(io.BytesIO):
    def write(self, data: Any) -> int:
        raise BrokenPipeError


def test_loop_fault_ends_with_one_fatal_event_and_closed_stdout_exits_cleanly(
        onnx_bundle: Path) -> None:
    live = LiveRouter(onnx_bundle, "onnx-int8")
    stdout = io.BytesIO()
    assert StdioServer(live, BrokenStdin(), stdout).run() == 1
    out = replies(stdout.getvalue())
    assert [o["op"] for o in out] == ["ready", "fatal"]
    assert StdioServer(live, io.BytesIO(b'{"text": "x"}\n'), ClosedStdout()).run() == 1


# ---------------------------------------------------------------------------------------------
# Real pipes: a subprocess, as a client embeds it


def test_closed_stdin_exits_zero_after_ready(onnx_bundle: Path) -> None:
    proc = spawn(str(onnx_bundle))
    out, err = proc.communicate(b"", timeout=120)
    assert proc.returncode == 0, err.decode()
    [ready] = replies(out)
    assert ready["op"] == "ready" and ready["ready"] is True


def test_huge_and_binary_lines_over_a_real_pipe(onnx_bundle: Path) -> None:
    huge = json.dumps({"id": "huge", "text": "refund " * 500_000}).encode()  # 3.5 MB
    binary = b"\x00\x01" + bytes(range(11, 256))  # no newline inside
    payload = huge + b"\n" + binary + b"\n" + encode([{"id": "after", "text": SAFE}])
    proc = spawn(str(onnx_bundle))
    out, err = proc.communicate(payload, timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    ready, too_long, bad, after = replies(out)
    assert too_long["error"]["code"] == "line_too_long" and too_long["id"] is None
    assert bad["error"]["code"] in {"invalid_utf8", "bad_json"}
    assert after["id"] == "after" and after["route"] == "guarded_agent"


def test_ten_thousand_pipelined_requests_get_exactly_one_reply_each(onnx_bundle: Path) -> None:
    n = 10_000
    payload = b"".join(json.dumps({"id": k, "text": SAFE if k % 3 else RISKY}).encode() + b"\n"
                       if k % 97 else b"\xff not json\n" for k in range(n))
    proc = spawn(str(onnx_bundle), "--workers", "2")
    out, err = proc.communicate(payload, timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    got = replies(out)
    assert got[0]["op"] == "ready" and len(got) == n + 1
    routed = [r for r in got[1:] if r["op"] == "route"]
    errors = [r for r in got[1:] if r["op"] == "error"]
    assert len(errors) == len([k for k in range(n) if k % 97 == 0])
    assert sorted(r["id"] for r in routed) == [k for k in range(n) if k % 97]
    assert all(r["route"] == "human_review_now" for r in routed if r["id"] % 3 == 0)


def test_a_client_that_stops_reading_gets_back_pressure_not_loss(onnx_bundle: Path) -> None:
    n = 4000
    proc = spawn(str(onnx_bundle))
    assert proc.stdin is not None and proc.stdout is not None
    done = threading.Event()

    def write() -> None:
        for k in range(n):
            proc.stdin.write(json.dumps({"id": k, "text": SAFE}).encode() + b"\n")  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(3.0)  # the client reads nothing: both pipes fill and the server waits
    assert not done.is_set(), "the server buffered everything instead of pushing back"
    out = proc.stdout.read()
    writer.join(timeout=60)
    assert proc.wait(timeout=60) == 0
    got = replies(out)
    assert [r["id"] for r in got[1:]] == list(range(n))  # one worker: in request order


def test_bundle_resolution_order_and_a_miss_names_the_places(onnx_bundle: Path,
                                                             tmp_path: Path) -> None:
    root = tmp_path / "mybundles"
    copy_bundle(onnx_bundle, root / "refund-intake", "v1")
    activate(root, "refund-intake", "v1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = encode([{"op": "shutdown", "id": 0}])

    def ready(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
        env = {"INTAKEGATE_BUNDLES": "", **(env or {})}
        proc = spawn("refund-intake", *args, cwd=elsewhere, env=env)
        out, err = proc.communicate(probe, timeout=120)
        return replies(out)[0], err.decode()

    miss, err = ready()
    assert miss["ready"] is False and miss["detail"].startswith("bundle_not_found")
    assert miss["looked_in"] == [str(elsewhere / "refund-intake"),
                                 str(elsewhere / "bundles" / "refund-intake" / "ACTIVE")]
    assert "--bundles-dir" in miss["hint"] and "INTAKEGATE_BUNDLES" in miss["hint"]
    assert "looked for refund-intake" in err
    assert ready(env={"INTAKEGATE_BUNDLES": str(root)})[0]["ready"] is True
    assert ready("--bundles-dir", str(root))[0]["ready"] is True
    flag_wins, _ = ready("--bundles-dir", str(tmp_path / "empty"),
                         env={"INTAKEGATE_BUNDLES": str(root)})
    assert flag_wins["ready"] is False
    assert "bundles dir from --bundles-dir" in flag_wins["hint"]
