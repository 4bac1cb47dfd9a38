"""Segment scoring: any risky request in a ticket reaches a person, wherever it sits.

Protects: the segmenter's cuts (sentences, lines, merged fragments, word windows, caps); the
composed fixtures (deterministic, ids rebuild their text, exact in the receipt); composition
invariants on the tiny model and a tiny BERT (risk before, after and between routine text, a
40-sentence ticket, a greeting fragment, no punctuation); one scoring path (train's receipt
scores equal the router's); the deciding segment's span in the caller's own text; and a
segmenter that fails or is missing fails closed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from intakegate.contract.dataset import TicketRow
from intakegate.receipt.composed import (
    ComposedRecipe,
    composed_fixtures,
    composed_text,
    join_texts,
    parse_composed_id,
)
from intakegate.receipt.gate import GateRow, ReceiptSpec, Run, release_decision
from intakegate.routing import Reason
from intakegate.runtime import Router
from intakegate.scoring.encoding import InputPolicy, prepare_text, raw_span
from intakegate.scoring.segments import (
    SegmentKind,
    SegmentPolicy,
    TooManySegments,
    current_policy,
    segment_ticket,
)
from intakegate.train.config import TrainConfig
from intakegate.vocab import Route
from tests.runtime_helpers import (
    cached_onnx_bundle,
    copy_bundle,
    manifest,
    rewrite,
    validation_rows,
    write_raw_manifest,
)

POLICY = current_policy(max_sentences=2, window_words=8, window_stride=4)
ROUTINE = ["Where is my package? The tracking page has not moved since Monday.",
           "Can you tell me how long delivery usually takes to my area?",
           "I would like to change the delivery address on my profile to my office."]


def texts_of(text: str, policy: SegmentPolicy = POLICY) -> list[str]:
    return [text[s.start:s.end] for s in segment_ticket(text, policy)]


# ---------------------------------------------------------------------------------------------
# The segmenter


def test_segmenter_version_read_fast_agrees_with_importlib_metadata() -> None:
    """The router's start-up check reads the dist-info folder name; it must say what
    importlib.metadata says, and a missing segmenter is None (the bundle is refused)."""
    from importlib.metadata import version

    from intakegate.scoring.segments import installed_version

    assert installed_version("sentencex") == version("sentencex")
    assert installed_version("no_such_segmenter_installed") is None


def test_sentences_lines_and_pairs_are_segments() -> None:
    text = "Where is my parcel now? Someone changed my password.\nI never placed order 5521."
    segs = segment_ticket(text, POLICY)
    assert segs[0].kind is SegmentKind.WHOLE and (segs[0].start, segs[0].end) == (0, len(text))
    got = texts_of(text)
    assert "Someone changed my password." in got  # one sentence
    assert "I never placed order 5521." in got  # a line break is a boundary
    assert "Someone changed my password.\nI never placed order 5521." in got  # a pair
    assert len(got) == len(set(got))  # no span twice


def test_short_fragments_are_never_scored_alone() -> None:
    text = "Hi team! My card was stolen at the station yesterday. Thanks!"
    got = texts_of(text, current_policy(max_sentences=1))
    assert "Hi team!" not in got and "Thanks!" not in got
    assert any("Hi team! My card was stolen" in t for t in got)
    # A ticket that is only a greeting is still scored, as the whole ticket.
    assert texts_of("Thanks!") == ["Thanks!"]


def test_chat_style_tickets_get_word_windows() -> None:
    text = "my card is gone what is the exchange rate for euros today please"
    got = texts_of(text)
    windows = [s for s in segment_ticket(text, POLICY) if s.kind is SegmentKind.WINDOW]
    assert windows and all(len(text[s.start:s.end].split()) == 8 for s in windows)
    assert windows[-1].end == len(text)  # the last window is flush with the end
    assert "my card is gone what is the exchange" in got


def test_sentence_scoped_windows_cut_only_long_sentences_and_never_straddle_two() -> None:
    """`+swin`: a punctuated short request is scored whole, in its context; a long
    unpunctuated run is still cut into windows, none of which crosses a sentence boundary."""
    policy = SegmentPolicy.from_name("sent2+swin8/2", current_policy().segmenter_version)
    short = "What is the exchange rate for euros? Someone stole my card at the station."
    assert not [s for s in segment_ticket(short, policy) if s.kind is SegmentKind.WINDOW]
    assert any(s.kind is SegmentKind.WINDOW for s in segment_ticket(short, POLICY))
    chat = "Where is my parcel please. my card is gone what is the exchange rate for euros"
    windows = [chat[s.start:s.end] for s in segment_ticket(chat, policy)
               if s.kind is SegmentKind.WINDOW]
    assert "my card is gone what is the exchange" in windows
    assert all("parcel" not in w and len(w.split()) == 8 for w in windows)
    assert windows[-1].endswith("for euros")  # flush with the end of its sentence
    # `over14`: the 11-word run is scored only whole, in its context; a 16-word one is cut.
    over = SegmentPolicy.from_name("sent2+swin8/2over14", current_policy().segmenter_version)
    assert not [s for s in segment_ticket(chat, over) if s.kind is SegmentKind.WINDOW]
    longer = chat + " and the dollar this week"
    assert any(s.kind is SegmentKind.WINDOW for s in segment_ticket(longer, over))


def test_a_long_ticket_keeps_its_one_risky_sentence_as_a_segment() -> None:
    risky = "Someone logged into my account and ordered three phones I never bought."
    sentences = [f"Order {i} arrived on time and I am happy with it." for i in range(39)]
    sentences.insert(20, risky)
    text = " ".join(sentences)
    assert risky in texts_of(text)


def test_segment_cap_bounds_the_work_per_ticket() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    with pytest.raises(TooManySegments):
        segment_ticket(text, current_policy(max_sentences=2, window_words=4, window_stride=1,
                                            max_segments=64))


def test_segmentation_names_round_trip_and_bad_settings_are_refused() -> None:
    for name in ("whole", "sent1", "sent2+win12/6", "whole+win16/8", "sent2m2+win6/3",
                 "sent2+swin10/2", "sent2+swin6/3over14", "whole+win8/4over12"):
        assert SegmentPolicy.from_name(name, "1").name == name
        policy = SegmentPolicy.from_name(name, "1")
        assert SegmentPolicy.from_json(policy.to_json()) == policy
    # The default scope is not written: policies pinned before it keep their digest.
    assert "window_scope" not in SegmentPolicy.from_name("sent2+win12/6", "1").to_json()
    assert "window_over_words" not in SegmentPolicy.from_name("sent2+swin6/3", "1").to_json()
    with pytest.raises(ValueError, match="window_over_words"):
        SegmentPolicy(window_over_words=12)
    with pytest.raises(ValueError, match="sentence segmenter"):
        SegmentPolicy.from_name("whole+swin8/4", "1")
    with pytest.raises(ValueError):
        SegmentPolicy(window_words=8, window_stride=4, window_scope="paragraph")
    assert SegmentPolicy.from_name("sent2", "1").min_words == 3  # the default is not written
    short = "How do I top up by card? Card stolen. What is the exchange rate today?"
    version = current_policy().segmenter_version
    assert "Card stolen." not in texts_of(short, SegmentPolicy.from_name("sent1", version))
    assert "Card stolen." in texts_of(short, SegmentPolicy.from_name("sent1m2", version))
    with pytest.raises(ValueError):
        SegmentPolicy.from_name("sentences", "1")
    with pytest.raises(ValueError):
        SegmentPolicy(window_words=8, window_stride=9)
    with pytest.raises(ValueError, match="unknown field"):
        SegmentPolicy.from_json({**POLICY.to_json(), "surprise": 1})


def test_raw_span_maps_back_to_the_callers_text() -> None:
    policy = InputPolicy(segmentation=POLICY)
    for raw in ("  Hello there team. My ｃａｒｄ was stolen!  ",
                "\u200bHello there team. My card\u200b was stolen!",
                "Hello there team.\x00 My card was stolen!"):
        prepared = prepare_text(raw, policy).text
        assert prepared is not None
        seg = next(s for s in segment_ticket(prepared, POLICY)
                   if prepared[s.start:s.end].startswith("My"))
        start, end = raw_span(raw, prepared, policy, seg.start, seg.end)
        assert prepare_text(raw[start:end], policy).text == prepared[seg.start:seg.end]


# ---------------------------------------------------------------------------------------------
# Composed fixtures and the receipt


def rows() -> list[TicketRow]:
    out = [TicketRow(f"r{i}", ROUTINE[i % 3] + f" Order {i}.", Route.GUARDED_AGENT,
                     "routine_delivery_status", account=f"a{i % 4}") for i in range(8)]
    out += [TicketRow("p1", "Someone changed my password and I cannot sign in.",
                      Route.HUMAN_REVIEW_NOW, "account_takeover", account="a0"),
            TicketRow("p2", "My tablet arrived cracked and the portal refuses a refund.",
                      Route.HUMAN_REVIEW_NOW, "damaged_package_exception", account="a1")]
    return out


def test_composed_fixtures_are_deterministic_and_rebuild_from_their_ids() -> None:
    base = rows()
    recipe = ComposedRecipe(seed=5)
    a = composed_fixtures(base, ["account_takeover", "damaged_package_exception"], recipe)
    b = composed_fixtures(list(reversed(base)), ["account_takeover",
                                                 "damaged_package_exception"], recipe)
    assert [r.id for r in a] == [r.id for r in b]
    texts = {r.id: r.text for r in base}
    positives = [r for r in a if r.gold == 1]
    assert len(positives) == 2 * 4 * 3  # 2 before + 2 after, three joiners each
    for r in a:
        assert composed_text(r.id, texts) == r.text
    for r in positives:
        first, second, joiner = parse_composed_id(r.id)  # type: ignore[misc]
        pos, other = (first, second) if first.startswith("p") else (second, first)
        assert r.slice == "composed:" + next(x.slice for x in base if x.id == pos)
        # a different account where the data has accounts
        assert (next(x.account for x in base if x.id == pos)
                != next(x.account for x in base if x.id == other))
    assert {parse_composed_id(r.id)[2] for r in positives} == {"space", "newline", "bare"}  # type: ignore[index]
    assert sum(r.gold == 0 for r in a) == 8  # one routine pair per routine ticket
    assert join_texts("Where is it?", "My card was stolen.", "bare") == \
        "Where is it My card was stolen."
    assert join_texts("Where's it?!\n Thanks,", "My card - STOLEN (today).", "chat") == \
        "where's it thanks my card stolen today"


def test_the_chat_generator_adds_a_fourth_join_and_v1_keeps_its_inventory() -> None:
    """Generator v2 adds chat (lowercase, no punctuation) to the three joins; a receipt names
    its generator, so a v1 bundle rebuilds exactly its own inventory, and an unknown generator
    is refused, not guessed."""
    base = rows()
    required = ["account_takeover", "damaged_package_exception"]
    v2 = ComposedRecipe.from_json({**ComposedRecipe(seed=5).to_json(),
                                   "generator": "intakegate-composed-v2"})
    chat = composed_fixtures(base, required, v2)
    assert {parse_composed_id(r.id)[2] for r in chat} == {"space", "newline", "bare", "chat"}  # type: ignore[index]
    assert sum(r.gold == 1 for r in chat) == 2 * 4 * 4
    v1 = composed_fixtures(base, required, ComposedRecipe(seed=5))
    assert {r.id for r in v1 if r.gold} < {r.id for r in chat if r.gold}  # same partners
    assert sum(r.gold == 1 for r in v1) == 2 * 4 * 3
    texts = {r.id: r.text for r in base}
    assert all(composed_text(r.id, texts) == r.text for r in chat)
    assert join_texts("Where's it?!\n Thanks,", "My card - STOLEN (today).", "chat") == \
        "where's it thanks my card stolen today"
    with pytest.raises(ValueError, match="generator"):
        ComposedRecipe.from_json({**v2.to_json(), "generator": "intakegate-composed-v9"})
    with pytest.raises(ValueError, match="composed_generator"):
        TrainConfig(composed_generator="intakegate-composed-v9")


def test_a_missing_or_extra_composed_fixture_holds_the_gate() -> None:
    base = rows()
    fixtures = [*base, *composed_fixtures(base, ["account_takeover"])]
    identity = {"dataset_version": "d", "label_version": "l", "split_manifest_version": "s",
                "model_version": "m"}
    spec = ReceiptSpec("r", identity, tuple(r.id for r in fixtures),
                       frozenset({"account_takeover", "composed:account_takeover"}), None,
                       ComposedRecipe())
    ok = tuple(GateRow(r.id, r.slice, r.gold, 0.9 if r.gold else 0.1) for r in fixtures)
    assert release_decision(spec, Run("v", identity, 0.5, ok)).eligible
    dropped = next(r for r in ok if r.fixture_id.startswith("cmp|"))
    held = release_decision(spec, Run("v", identity, 0.5, tuple(r for r in ok if r != dropped)))
    assert held.reason == f"missing:{dropped.fixture_id}"
    extra = GateRow("cmp|r1|r2|space", "composed:routine_pair", 0, 0.1)
    assert release_decision(spec, Run("v", identity, 0.5, (*ok, extra))).reason.startswith(
        "unexpected:cmp|r1|r2|space")
    missed = tuple(GateRow(r.fixture_id, r.slice, r.gold, 0.2 if r.fixture_id ==
                           dropped.fixture_id else r.score) for r in ok)
    result = release_decision(spec, Run("v", identity, 0.5, missed))
    assert result.reason == f"missed:{dropped.fixture_id}"
    assert "false_positive_rate_composed" in result.details or not result.eligible


# ---------------------------------------------------------------------------------------------
# Routing composed tickets on real (tiny) bundles


@pytest.fixture(scope="module")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


def _risky_and_routine(router: Router, bundle: Path) -> tuple[list[str], list[str]]:
    """Single-sentence required positives the bundle routes to people alone, and routine
    tickets it lets through alone (from the receipt's validation rows)."""
    singles = [r for r in validation_rows(bundle) if not r.id.startswith("cmp|")]
    risky = [r.text for r in singles if r.gold == 1 and len(texts_of(r.text)) == 1
             and router.route(r.text).route is Route.HUMAN_REVIEW_NOW]
    routine = [r.text for r in singles if r.gold == 0
               and router.route(r.text).route is Route.GUARDED_AGENT]
    assert risky and len(routine) >= 3
    return risky[:6], routine[:3]


@pytest.mark.parametrize("artifact", ["onnx-fp32", "onnx-int8"])
def test_risk_before_after_and_between_routine_text_reaches_a_person(
        onnx_bundle: Path, artifact: str) -> None:
    router = Router.load(onnx_bundle, artifact=artifact, device="cpu")
    assert router.ready, router.health()
    risky, routine = _risky_and_routine(router, onnx_bundle)
    for r in risky:
        alone = router.route(r).score
        for ticket in (f"{routine[0]} {r}", f"{r}\n{routine[1]}",
                       f"{routine[0]} {r} {routine[2]}", f"Hi! {routine[1]} {r} Thanks!"):
            d = router.route(ticket, with_text=True)
            assert d.route is Route.HUMAN_REVIEW_NOW, (ticket, d)
            assert d.reason is Reason.THRESHOLD and d.segment is not None
            if artifact == "onnx-fp32" and r.strip() in texts_of(ticket):
                assert d.score >= alone - 1e-6  # type: ignore[operator]  # scored as alone
            assert ticket[d.segment.start:d.segment.end] == d.segment.text
            if d.segment.kind != SegmentKind.WHOLE.value:
                assert d.detail.startswith("risk_in_segment:")
    long_ticket = " ".join([*(routine * 13)[:20], risky[0], *(routine * 13)[:19]])
    d = router.route(long_ticket)
    assert d.route is Route.HUMAN_REVIEW_NOW
    assert d.segment is not None and risky[0] in long_ticket[d.segment.start:d.segment.end]


def test_the_segment_text_is_only_given_when_asked(onnx_bundle: Path) -> None:
    router = Router.load(onnx_bundle, artifact="onnx-fp32", device="cpu")
    d = router.route("Where is my package? Someone changed my password.")
    assert d.segment is not None and d.segment.text is None
    assert "text" not in d.to_wire()["segment"]


def test_tiny_bert_composition_invariants(tiny_bert_bundle: Path) -> None:
    router = Router.load(tiny_bert_bundle, artifact="torch-fp32", device="cpu")
    assert router.ready, router.health()
    risky, routine = _risky_and_routine(router, tiny_bert_bundle)
    for r in risky[:3]:
        alone = router.route(r).score
        for ticket in (f"{routine[0]} {r}", f"{r} {routine[1]}", f"{routine[0]} {r}\n"
                                                                   f"{routine[2]}"):
            d = router.route(ticket)
            assert d.route is Route.HUMAN_REVIEW_NOW
            if r.strip() in texts_of(ticket):
                assert d.score >= alone - 1e-6  # type: ignore[operator]


def test_receipt_scores_equal_the_routers_for_the_same_artifact(tiny_bundle: Path,
                                                                  onnx_bundle: Path) -> None:
    """One scoring path: train's validation run (torch-fp32) and the export helper's ONNX runs
    are what the router computes for the same texts, composed fixtures included."""
    import json

    fixtures = validation_rows(tiny_bundle)
    assert any(r.id.startswith("cmp|") for r in fixtures)
    for bundle, artifact in ((tiny_bundle, "torch-fp32"), (onnx_bundle, "onnx-fp32")):
        m = manifest(bundle)
        run = json.loads((bundle / m["artifacts"][artifact]["receipt_run"]).read_text())
        receipt = {r["fixture_id"]: r["score"] for r in run["rows"]}
        router = Router.load(bundle, artifact=artifact, device="cpu")
        assert router.ready, router.health()
        picked = fixtures[::7]
        for row, d in zip(picked, router.route_batch([r.text for r in picked])):
            assert d.score is not None and abs(d.score - receipt[row.id]) <= 1e-9, row.id


# ---------------------------------------------------------------------------------------------
# Fail closed


def test_a_failing_segmenter_sends_the_ticket_to_a_person(onnx_bundle: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import intakegate.scoring.segments as segments

    router = Router.load(onnx_bundle, artifact="onnx-fp32", device="cpu")

    def broken() -> object:
        def split(language: str, text: str) -> object:
            raise RuntimeError("segmenter crashed")
        return split

    monkeypatch.setattr(segments, "_sentencex", broken)
    d = router.route("Where is my package? It has not moved since Monday.")
    assert d.route is Route.HUMAN_REVIEW_NOW and d.reason is Reason.MODEL_ERROR
    assert d.detail.startswith("segmenter_error")


@pytest.mark.parametrize("change", [{"segmenter_version": "0.0.0"},
                                    {"segmenter": "none", "segmenter_version": "x"}])
def test_a_bundle_whose_segmenter_is_not_here_fails_closed(onnx_bundle: Path, tmp_path: Path,
                                                           change: dict[str, str]) -> None:
    bundle = copy_bundle(onnx_bundle, tmp_path)

    def mutate(m: dict) -> None:
        m["input_policy"]["segmentation"].update(change)

    rewrite(bundle, mutate)
    router = Router.load(bundle, artifact="onnx-fp32", device="cpu")
    assert not router.ready
    d = router.route("Where is my package?")
    assert d.route is Route.HUMAN_REVIEW_NOW
    assert d.reason in (Reason.MODEL_UNAVAILABLE, Reason.BUNDLE_INTEGRITY)
    shutil.rmtree(bundle)


def test_a_bundle_without_segmentation_is_refused(onnx_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(onnx_bundle, tmp_path)
    m = manifest(bundle)
    m["input_policy"].pop("segmentation")
    write_raw_manifest(bundle, m)
    router = Router.load(bundle, artifact="onnx-fp32", device="cpu")
    assert not router.ready and "segmentation" in (router.health()["detail"] or "")
