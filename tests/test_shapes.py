"""Shape fixtures: chat, e-mail and quoted-thread copies of the receipt's own tickets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intakegate.contract.dataset import TicketRow
from intakegate.errors import InputError
from intakegate.receipt.composed import ComposedRecipe, chat_form, composed_fixtures
from intakegate.receipt.evidence import Labelled, shape_costs, source_evidence
from intakegate.receipt.fixtures import fixture_texts, fixtures_jsonl, text_sha256
from intakegate.receipt.gate import GateRow, ReceiptSpec, Run, release_decision, spec_from_json
from intakegate.receipt.shapes import (
    ShapeRecipe,
    parse_shape_id,
    required_fixture_slices,
    shape_fixtures,
    shape_text,
)
from intakegate.vocab import Route

IDENTITY = {"dataset_version": "d1", "label_version": "l1", "split_manifest_version": "s1",
            "model_version": "m1"}


def _rows() -> list[TicketRow]:
    risky = [TicketRow(f"p{i}", f"Someone changed my password, order {i} is not mine.",
                       Route.HUMAN_REVIEW_NOW, "theft", account=f"a{i}") for i in range(3)]
    routine = [TicketRow(f"r{i}", f"Where is parcel {i}? Tracking has not moved.",
                         Route.GUARDED_AGENT, "status", account=f"b{i}") for i in range(6)]
    return [*risky, *routine]


def test_every_ticket_gets_each_shape_and_composed_ones_a_chat_copy() -> None:
    rows = _rows()
    composed = composed_fixtures(rows, ["theft"], ComposedRecipe(before=1, after=1))
    shapes = shape_fixtures([*rows, *composed], ShapeRecipe())
    kinds = {(parse_shape_id(r.id) or ("",))[0] for r in shapes}
    assert kinds == {"chat", "email", "thread"}
    assert len(shapes) == 3 * len(rows) + len(composed)
    assert shapes == shape_fixtures([*composed, *reversed(rows)], ShapeRecipe())  # order-free
    by_id = {r.id: r for r in [*rows, *composed]}
    for copy in shapes:
        kind, variant, source = parse_shape_id(copy.id)  # type: ignore[misc]
        assert copy.text == shape_text(kind, variant, by_id[source].text)  # rebuilt from its id
        assert copy.gold_route is by_id[source].gold_route
        if copy.gold == 1:
            assert copy.slice == f"shape:{kind}:theft"
    thread = next(r for r in shapes if r.id.startswith("shp|thread|") and r.gold == 1)
    reply, quoted = thread.text.split("\n\n", 1)
    assert "password" not in reply and "> Someone changed my password" in quoted
    chat = next(r for r in shapes if r.id == "shp|chat|0|p0")
    assert chat.text == chat_form(rows[0].text) == chat.text.lower()


def test_a_share_of_composed_tickets_keeps_the_receipt_scoreable() -> None:
    rows = _rows()
    composed = composed_fixtures(rows, ["theft"])
    half = shape_fixtures([*rows, *composed], ShapeRecipe(composed_chat_share=0.5))
    chat_of_composed = [r for r in half if parse_shape_id(r.id)[2].startswith("cmp|")]  # type: ignore[index]
    assert 0 < len(chat_of_composed) < len(composed)


@pytest.mark.parametrize(("shapes", "match"), [
    ({"generator": "intakegate-shapes-v9"}, "intakegate-shapes-v9"),
    ({"generator": "intakegate-shapes-v1", "kinds": ["sms"]}, "unknown field"),
    ({"composed_chat_share": 2}, "composed_chat_share"),
    ("chat", "expected an object"),
])
def test_an_unknown_shape_generator_in_a_spec_is_an_error_naming_the_field(
        shapes: object, match: str) -> None:
    spec = {"receipt_version": "r1", "identity": IDENTITY, "fixture_ids": ["p0"],
            "required_slices": ["theft"], "shapes": shapes}
    with pytest.raises(InputError, match=match) as err:
        spec_from_json(spec)
    assert err.value.field == "shapes"


def _gate_rows(chat_flags: int) -> list[GateRow]:
    rows = [GateRow(f"p{i}", "theft", 1, 0.9) for i in range(20)]
    rows += [GateRow(f"r{i}", "status", 0, 0.8 if i < 2 else 0.1) for i in range(20)]  # 10%
    rows += [GateRow(f"shp|chat|0|r{i}", "shape:chat:routine", 0, 0.8 if i < chat_flags
                     else 0.1) for i in range(20)]
    rows += [GateRow(f"shp|chat|0|p{i}", "shape:chat:theft", 1, 0.9) for i in range(20)]
    return rows


def _spec(rows: list[GateRow], **kw: object) -> ReceiptSpec:
    return ReceiptSpec("r1", IDENTITY, tuple(r.fixture_id for r in rows),
                       frozenset({"theft", "shape:chat:theft"}), shapes=ShapeRecipe(),
                       **kw)  # type: ignore[arg-type]


def test_max_shape_overhead_holds_routine_copies_riskier_than_their_tickets() -> None:
    within, over = _gate_rows(chat_flags=3), _gate_rows(chat_flags=8)  # +0.05, +0.30
    ok = release_decision(_spec(within, max_shape_overhead=0.10), Run("b", IDENTITY, 0.5,
                                                                         tuple(within)))
    assert ok.eligible, ok.reason
    assert ok.details["shapes"]["chat"]["shape_overhead"] == pytest.approx(0.05)
    held = release_decision(_spec(over, max_shape_overhead=0.10), Run("b", IDENTITY, 0.5,
                                                                         tuple(over)))
    assert held.reason == "shape_fp:chat:0.3000>0.1000"


def test_a_missed_shape_copy_is_a_miss_of_its_source() -> None:
    rows = _gate_rows(chat_flags=0)
    rows[-1] = GateRow("shp|chat|0|p19", "shape:chat:theft", 1, 0.2)
    result = release_decision(_spec(rows), Run("b", IDENTITY, 0.5, tuple(rows)))
    assert result.reason == "missed:shp|chat|0|p19"
    assert result.details["evidence"]["overall"] == {"sources": 20, "missed": 1,
                                                     "miss_rate_bound": pytest.approx(
                                                         0.2161, abs=1e-4)}


def test_a_shape_copy_of_a_source_not_in_the_inventory_is_an_error_naming_it() -> None:
    rows = [*_gate_rows(chat_flags=0), GateRow("shp|chat|0|ghost", "shape:chat:theft", 1, 0.9)]
    with pytest.raises(InputError, match="ghost"):
        release_decision(_spec(rows), Run("b", IDENTITY, 0.5, tuple(rows)))


def test_a_shape_copy_of_a_composed_ticket_counts_for_the_composed_ticket_source() -> None:
    labelled = [Labelled("p0", "theft", 1, True), Labelled("r0", "status", 0, False),
                Labelled("cmp|r0|p0|space", "composed:theft", 1, True),
                Labelled("shp|chat|0|cmp|r0|p0|space", "shape:chat:theft", 1, False)]
    ev = source_evidence(labelled, {"theft", "composed:theft", "shape:chat:theft"})
    assert (ev.overall.sources, ev.overall.missed) == (1, 1)
    assert shape_costs(labelled) == ()  # no routine copies of single tickets


def test_a_shape_fixture_whose_text_does_not_hash_to_its_entry_is_named(tmp_path: Path
                                                                         ) -> None:
    rows = _rows()
    copies = shape_fixtures(rows, ShapeRecipe())
    everything = [*rows, *copies]
    pinned = {r.id: text_sha256(r.text) for r in everything}
    edited = copies[0].id
    data = fixtures_jsonl(everything).decode().replace(
        json.dumps(copies[0].text)[1:-1], json.dumps(copies[0].text + " ok")[1:-1], 1)
    _, problem = fixture_texts([r.id for r in everything], pinned, lambda _: data.encode())
    assert problem == f"fixture_text_mismatch:{edited}"


def test_one_rule_names_the_required_slices_of_an_inventory() -> None:
    """Training's selection and the receipt spec both take the required slices from here."""
    assert required_fixture_slices(["theft"]) == ["theft", "composed:theft"]
    assert required_fixture_slices(["theft", "fraud"], ("chat", "email")) == [
        "theft", "fraud", "composed:theft", "composed:fraud", "shape:chat:theft",
        "shape:chat:fraud", "shape:email:theft", "shape:email:fraud"]


def test_train_with_shape_fixtures_gates_and_reports_every_shape(tmp_path: Path) -> None:
    """A tiny model trained with the shape generator: the receipt pins the recipe and every
    copy, the gate report and the test report give each shape's figures."""
    from intakegate.train.pipeline import train_bundle

    result = train_bundle("refund-intake", bundles_root=tmp_path, bundle_version="shaped",
                          reports_root=None, overrides={"base_model": "tiny",
                                                        "shape_generator":
                                                            "intakegate-shapes-v1",
                                                        "composed_shares": (0.5,),
                                                        "shape_shares": (0.0, 0.5),
                                                        "segmentations": ("sent2",)})
    spec = json.loads((result.bundle_dir / "receipt/spec.json").read_text())
    assert spec["shapes"]["generator"] == "intakegate-shapes-v1"
    assert {"shape:chat:account_takeover", "shape:email:account_takeover",
            "shape:thread:account_takeover"} <= set(spec["required_slices"])
    base = [s for s in spec["required_slices"] if ":" not in s]
    assert sorted(spec["required_slices"]) == sorted(
        required_fixture_slices(base, ("chat", "email", "thread")))  # the one rule wrote them
    ids = spec["fixture_ids"]
    assert sum(1 for i in ids if i.startswith("shp|email|")) == 102  # every validation ticket
    gate = json.loads((result.bundle_dir / "docs/gate_report.json").read_text())
    assert set(gate["shapes"]) == {"chat", "email", "thread"}
    test = json.loads((result.bundle_dir / "docs/test_report.json").read_text())
    assert set(test["shape_copies"]) == {"chat", "email", "thread"}
    assert test["shape_copies"]["thread"]["required_positives"] == 36
    assert "Shape `email`" in (result.bundle_dir / "docs/test_report.md").read_text()
    config = json.loads((result.bundle_dir / "docs/training_config.json").read_text())
    assert config["machine"]["cpu_family"] and config["machine"]["cpu_model"]  # named CPU
    selection = json.loads((result.bundle_dir / "docs/selection_report.json").read_text())
    assert [(s["shape_share"], s["shape_train_rows"] > 0) for s in selection["shares"]] == [
        (0.0, False), (0.5, True)]  # a model per shape share, both weighed by the same rule
    assert all(set(s["best"]["shape_fp"]) == {"chat", "email", "thread"}
               and s["best"]["held"]["shape_overhead"] is not None for s in selection["shares"])
    assert gate["data_shapes"] == {} and test["data_shapes"] == {}  # v1 rows carry no shape


def test_figures_per_data_shape_count_required_recall_and_routine_fp() -> None:
    from intakegate.train.reports import data_shape_figures, data_shape_lines

    rows = [TicketRow("p0", "a", Route.HUMAN_REVIEW_NOW, "theft", shape="chat"),
            TicketRow("p1", "b", Route.HUMAN_REVIEW_NOW, "theft", shape="chat"),
            TicketRow("r0", "c", Route.GUARDED_AGENT, "routine", shape="chat"),
            TicketRow("r1", "d", Route.GUARDED_AGENT, "routine", shape="email"),
            TicketRow("u0", "e", Route.GUARDED_AGENT, "routine")]
    figures = data_shape_figures(rows, [0.9, 0.1, 0.8, 0.2, 0.9], 0.5, ["theft"])
    assert figures == {
        "chat": {"tickets": 3, "required_positives": 2, "required_missed": 1,
                 "required_recall": 0.5, "routine": 1, "routine_fp": 1.0},
        "email": {"tickets": 1, "required_positives": 0, "required_missed": 0,
                  "required_recall": None, "routine": 1, "routine_fp": 0.0}}
    assert "| `chat` | 3 | 1/2 | 0.500 | 100.0% of 1 |" in data_shape_lines(figures)


def test_shape_training_rows_keep_their_source_label_and_come_from_train_rows_only() -> None:
    from intakegate.receipt.shapes import shape_training_rows

    rows = _rows()
    copies = shape_training_rows(rows, 2.0, ShapeRecipe(seed=5))
    assert len(copies) == 2 * len(rows)
    assert copies == shape_training_rows(list(reversed(rows)), 2.0, ShapeRecipe(seed=5))
    by_id = {r.id: r for r in rows}
    for c in copies:
        kind, variant, source = parse_shape_id(c.id)  # type: ignore[misc]
        assert source in by_id  # never a validation or test row
        assert (c.slice, c.gold_route) == (by_id[source].slice, by_id[source].gold_route)
        assert c.text == shape_text(kind, variant, by_id[source].text)
    assert {parse_shape_id(c.id)[0] for c in copies} == {"chat", "email", "thread"}  # type: ignore[index]
    assert shape_training_rows(rows, 0.0, ShapeRecipe()) == []


def test_routine_parts_come_from_routine_pairs_and_shape_copies_too() -> None:
    """A window across the join of two routine requests, or around a sign-off, is routine: the
    parts pool takes routine composed and shape rows, never a risky one."""
    from intakegate.receipt.composed import routine_segment_rows
    from intakegate.scoring.segments import SegmentPolicy, current_policy

    policy = SegmentPolicy.from_name("sent1", current_policy().segmenter_version)
    single = TicketRow("r0", "Where is my parcel? It left on Monday.", Route.GUARDED_AGENT,
                       "routine")
    sign_off = TicketRow("shp|email|0.1|r0", "Hi,\n\nWhere is my parcel? Tracking has not moved "
                         "since Monday. Could you check?\n\nBest regards,\nAlex Morgan, Leeds",
                         Route.GUARDED_AGENT, "routine")
    risky = TicketRow("shp|email|0.1|p0", "Hi,\n\nSomeone changed my password. I cannot log "
                      "in now. Please lock it.\n\nThanks,\nSam Jones, Leeds",
                      Route.HUMAN_REVIEW_NOW, "theft")
    parts = routine_segment_rows([single], policy, 40.0, 13, [sign_off, risky])
    texts = {p.text for p in parts}
    assert any("Alex" in t for t in texts)  # a part of the routine e-mail copy
    assert not any("password" in t or "Sam" in t for t in texts)  # no part of a risky row
    assert all(p.gold == 0 for p in parts)
