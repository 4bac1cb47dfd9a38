"""The seed lesson's printed outputs, reproduced exactly by the product's own functions."""

from __future__ import annotations

import math

from intakegate.contract.dataset import TicketRow
from intakegate.contract.split import check_accounts_disjoint, grouped_time_assignment
from intakegate.receipt.threshold import calibration_buckets, sweep
from intakegate.routing import Reason, admitted_by_pinned_bundle, route_for_score
from intakegate.scoring.maths import human_review_score, stable_softmax
from intakegate.vocab import Route, Split

SEED_ROWS = [("damaged_package_exception", 1, 0.89), ("return_window_exception", 1, 0.42),
             ("account_takeover", 1, 0.64), ("angry_delivery_status", 0, 0.71),
             ("routine_delivery_status", 0, 0.23), ("return_policy_question", 0, 0.18)]


def test_stable_softmax_matches_seed() -> None:
    lines = []
    for fixture_id, logits in [("return_window_closed", [-1.0, 2.0]),
                               ("delivery_status", [1.0, -1.0])]:
        routine, human = stable_softmax(logits)
        lines.append(f"{fixture_id}: human_review_score={human:.2f}, routine_score={routine:.2f}")
    assert lines == ["return_window_closed: human_review_score=0.95, routine_score=0.05",
                     "delivery_status: human_review_score=0.12, routine_score=0.88"]


def test_stable_softmax_does_not_overflow() -> None:
    assert math.isclose(float(human_review_score([0.0, 1000.0])), 1.0)


def test_threshold_sweep_matches_seed() -> None:
    scores = [s for _, _, s in SEED_ROWS]
    golds = [g for _, g, _ in SEED_ROWS]
    lines = [p.line() for p in sweep(scores, golds, (0.35, 0.50, 0.75))]
    assert lines == ["threshold=0.35 tp=3 fp=1 fn=0 recall=1.00",
                     "threshold=0.50 tp=2 fp=1 fn=1 recall=0.67",
                     "threshold=0.75 tp=1 fp=0 fn=2 recall=0.33"]


def test_calibration_buckets_match_seed() -> None:
    scored = [(0.89, 1), (0.64, 1), (0.42, 1), (0.71, 0), (0.23, 0), (0.18, 0)]
    buckets = calibration_buckets([s for s, _ in scored], [g for _, g in scored],
                                  [0.0, 0.4, 0.7, 1.0], names=["low", "middle", "high"])
    assert [b.line() for b in buckets] == [
        "low [0.0,0.4): n=2, score=0.21, observed=0.00",
        "middle [0.4,0.7): n=2, score=0.53, observed=1.00",
        "high [0.7,1.0]: n=2, score=0.80, observed=0.50",
    ]


def test_grouped_time_split_matches_seed() -> None:
    records = [("t01", "acme", 1), ("t02", "acme", 2), ("t03", "north", 2), ("t04", "north", 2),
               ("v01", "summit", 3), ("v02", "summit", 3), ("x01", "harbor", 4),
               ("x02", "harbor", 4)]
    rows = [TicketRow(t, "text", Route.GUARDED_AGENT, "s", a, m) for t, a, m in records]
    assignment = grouped_time_assignment(rows, train_through_month=2, validation_through_month=3)
    check_accounts_disjoint(rows, assignment)
    lines = []
    for split in (Split.TRAIN, Split.VALIDATION, Split.TEST):
        members = [r for r in rows if assignment[r.id] is split]
        names = ",".join(sorted({r.account for r in members}))  # type: ignore[type-var]
        lines.append(f"{split.value}: {len(members)} tickets, accounts={names}")
    assert lines == ["train: 4 tickets, accounts=acme,north",
                     "validation: 2 tickets, accounts=summit",
                     "test: 2 tickets, accounts=harbor"]
    # The fraction rule (used for user datasets without month cut-offs) agrees on this data.
    assert grouped_time_assignment(rows, train_fraction=0.5, validation_fraction=0.25) == assignment


def test_serving_fallback_matches_seed() -> None:
    checks = [("Carrier delivered after the return window", 0.72, "human_review_now", "threshold"),
              ("Where is the return policy?", 0.18, "guarded_agent", "below_threshold"),
              ("", 0.04, "human_review_now", "empty_text"),
              ("Where is my package?", None, "human_review_now", "model_unavailable"),
              ("Malformed model score", float("nan"), "human_review_now", "invalid_score")]
    for text, score, route, reason in checks:
        got_route, got_reason = route_for_score(text, score, 0.35)
        assert (got_route.value, got_reason.value) == (route, reason)


def test_fail_closed_rule_never_admits_bad_scores() -> None:
    for score in (math.inf, -math.inf, -0.01, 1.01, "0.1", True, [0.1]):
        route, reason = route_for_score("Where is my package?", score, 0.35)
        assert route is Route.HUMAN_REVIEW_NOW and reason is Reason.INVALID_SCORE
    assert route_for_score(None, 0.1, 0.35) == (Route.HUMAN_REVIEW_NOW, Reason.INPUT_NOT_TEXT)
    assert route_for_score(" \t\n", 0.1, 0.35) == (Route.HUMAN_REVIEW_NOW, Reason.EMPTY_TEXT)


def test_handoff_matches_seed() -> None:
    agent_inputs = [{"ticket_id": "r-104", "bundle_version": "intake_bundle_v2",
                     "route": "guarded_agent"},
                    {"ticket_id": "r-105", "bundle_version": "intake_bundle_v2",
                     "route": "human_review_now"},
                    {"ticket_id": "r-106", "bundle_version": "intake_bundle_v1",
                     "route": "guarded_agent"}]
    accepted = [r["ticket_id"] for r in agent_inputs
                if admitted_by_pinned_bundle(r, "intake_bundle_v2")]
    blocked = [r["ticket_id"] for r in agent_inputs
               if not admitted_by_pinned_bundle(r, "intake_bundle_v2")]
    assert f"agent accepts: {','.join(accepted)}" == "agent accepts: r-104"
    assert f"agent blocked: {','.join(blocked)}" == "agent blocked: r-105,r-106"
    # Practice 5: without the bundle-version comparison the stale r-106 would get in.
    route_only = [r["ticket_id"] for r in agent_inputs if r["route"] == "guarded_agent"]
    assert set(route_only) - set(accepted) == {"r-106"}


def test_handoff_rejects_missing_or_odd_fields() -> None:
    assert not admitted_by_pinned_bundle({"route": "guarded_agent"}, "intake_bundle_v2")
    assert not admitted_by_pinned_bundle({"route": "GUARDED_AGENT",
                                          "bundle_version": "intake_bundle_v2"}, "intake_bundle_v2")
    assert not admitted_by_pinned_bundle(None, "intake_bundle_v2")
