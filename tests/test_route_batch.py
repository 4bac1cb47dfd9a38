"""`Router.route_batch` on every core: the same decision, to the bit, as routing one at a time.

Throughput comes from scoring tickets side by side; a ticket's score must never depend on the
batch it arrived in or on how many workers scored it, and a fault while scoring one ticket must
send that ticket alone to a person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from intakegate.contract.dataset import load_dataset
from intakegate.routing import Reason
from intakegate.runtime import Decision, Router
from intakegate.vocab import Route
from tests.runtime_helpers import cached_onnx_bundle


@pytest.fixture(scope="module")
def router(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Router:
    bundle = cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")
    return Router.load(bundle, artifact="onnx-int8", device="cpu")


def mixed_tickets(n: int = 300) -> list[object]:
    """Short, long (several windows and segments), composed, blank and non-text tickets."""
    texts = [r.text for r in load_dataset("refund-intake").rows]
    out: list[object] = []
    for i in range(n):
        text = texts[i % len(texts)]
        kind = i % 6
        if kind == 1:
            text = f"{text} {texts[(i * 7) % len(texts)]}"
        elif kind == 2:
            text = " ".join([text] * 12)  # past one window
        elif kind == 3:
            text = text.split(".")[0]
        out.append(text)
    out[10], out[20], out[30] = "   ", None, 42
    return out


def key(d: Decision) -> tuple[Any, ...]:
    seg = d.segment
    return (d.route, d.reason, d.score, d.windows, d.max_window, d.detail, d.unk_ratio,
            None if seg is None else (seg.index, seg.kind, seg.start, seg.end, seg.score))


def test_batch_scores_equal_one_at_a_time_scores_exactly(router: Router) -> None:
    tickets = mixed_tickets()
    alone = [router.route(t) for t in tickets]
    for workers in (None, 1, 3):
        batch = router.route_batch(tickets, workers=workers)
        assert [key(d) for d in batch] == [key(d) for d in alone], workers
    assert {d.route for d in alone} == {Route.HUMAN_REVIEW_NOW, Route.GUARDED_AGENT}
    assert max(d.windows for d in alone) > 1  # long tickets were in the mix


def test_a_fault_in_one_worker_sends_only_that_ticket_to_a_person(router: Router,
                                                                   monkeypatch: Any) -> None:
    tickets = mixed_tickets(40)
    before = [key(d) for d in router.route_batch(tickets, workers=4)]
    bad = tickets[7]
    from intakegate.runtime import router as router_module

    real = router_module.score_ticket

    def flaky(fn: Any, tokenizer: Any, text: str, spec: Any) -> Any:
        if text == bad:
            raise SystemError("worker fault")
        return real(fn, tokenizer, text, spec)

    monkeypatch.setattr(router_module, "score_ticket", flaky)
    after = router.route_batch(tickets, workers=4)
    assert after[7].route is Route.HUMAN_REVIEW_NOW and after[7].reason is Reason.MODEL_ERROR
    assert after[7].detail == "router_error: SystemError"
    same = [k for k, t in enumerate(tickets) if t != bad]
    assert [key(after[k]) for k in same] == [before[k] for k in same]


def test_a_bad_worker_count_routes_one_at_a_time(router: Router) -> None:
    tickets = mixed_tickets(40)
    expected = [key(d) for d in router.route_batch(tickets, workers=1)]
    for workers in (0, -2, "4", True):
        assert [key(d) for d in router.route_batch(tickets, workers=workers)] == expected
