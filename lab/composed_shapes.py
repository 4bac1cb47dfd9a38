"""Multi-request tickets in shapes the receipt does not contain: does segment scoring keep the
risky part with a person, and what does it cost on routine tickets?

    .venv/bin/python lab/composed_shapes.py BUNDLE [ARTIFACT]

The receipt's composed fixtures join two tickets with a space, a line break or nothing. Real
tickets also arrive as one run-on sentence ("..., and also ..."), as a reply above a quoted
e-mail, as a bulleted list, as chat with no punctuation or capitals (`chat_form`, also alone),
or as one request among seven. Each shape is built from the bundle's own validation fixtures (receipt/fixtures.jsonl:
required-slice single positives with two routine tickets each, both orders; routine with routine for
the false-positive side), and scored on ARTIFACT (default onnx-int8) by the router's own path:
`prepare_text` then `score_ticket` with the loaded engine's backend, tokenizer and score spec,
against its threshold (a held bundle is loaded measurement-only, so it can be measured too).
Validation rows only: nothing here is chosen on test. Prints one JSON object; nothing in the
bundle changes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from intakegate.receipt.composed import chat_form
from intakegate.scoring.encoding import prepare_text
from intakegate.runtime import Router
from intakegate.scoring.ticket_score import score_ticket

END = re.compile(r"[\s.!?]+$")


def _bare(text: str) -> str:
    return END.sub("", text.strip())


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())


def _email(body: str, earlier: str) -> str:
    return (f"Hi team,\n\n{body}\n\nThanks,\nSam\n\n-----Original Message-----\n"
            f"From: Sam <sam@example.com>\nSent: Monday 09:12\nSubject: Re: my order\n\n"
            f"{_quoted(earlier)}\n")


# (name, how two requests a then b become one ticket)
SHAPES: dict[str, Callable[[str, str], str]] = {
    "run_on_clause": lambda a, b: f"{_bare(a)}, and also {_lower_first(b)}",
    "reply_above_quoted_email": _email,
    "bulleted_list": lambda a, b: f"Two things:\n- {a}\n- {b}",
    "chat_no_punctuation": lambda a, b: f"{chat_form(a)} {chat_form(b)}",
}
LONG_NEIGHBOURS = 3  # "one request among seven": three routine tickets before and three after


def main(bundle: str, artifact: str = "onnx-int8") -> None:
    rows = [json.loads(line) for line in
            (Path(bundle) / "receipt" / "fixtures.jsonl").read_text().splitlines()]
    spec = json.loads((Path(bundle) / "receipt" / "spec.json").read_text())
    required = set(spec["required_slices"])
    singles = [r for r in rows if not r["id"].startswith("cmp|")]
    risky = [r for r in singles if r["slice"] in required]  # the receipt's no-miss rows
    routine = [r for r in singles if r["gold"] == 0]
    router = Router.load(bundle, artifact=artifact, device="cpu",
                         allow_held_for_measurement=True)
    if router.engine is None:
        raise SystemExit(f"not loaded: {router.health()}")
    engine = router.engine
    threshold = engine.threshold

    def kept(text: str) -> bool:
        prepared = prepare_text(text, engine.spec.policy)
        if prepared.text is None:
            return True  # refused input goes to a person
        scored = score_ticket(engine.backend.logits, engine.load_tokenizer, prepared.text,
                              engine.spec)
        return scored.score is None or scored.score >= threshold

    def partners(i: int) -> list[dict]:
        return [routine[(2 * i) % len(routine)], routine[(2 * i + 1) % len(routine)]]

    out: dict = {"bundle": engine.bundle_version, "artifact": artifact,
                 "threshold": threshold, "measurement_only": router.measurement_only,
                 "required_single_positives": len(risky), "routine_singles": len(routine),
                 "single": {"required_kept": sum(kept(r["text"]) for r in risky),
                            "routine_fp": sum(kept(r["text"]) for r in routine)},
                 "single_in_chat_form": {
                     "required_kept": sum(kept(chat_form(r["text"])) for r in risky),
                     "missed_positives": [r["id"] for r in risky
                                          if not kept(chat_form(r["text"]))],
                     "routine_fp": sum(kept(chat_form(r["text"])) for r in routine)},
                 "shapes": {}}
    for name, shape in SHAPES.items():
        missed = []
        total = 0
        for i, r in enumerate(risky):
            for p in partners(i):
                for text in (shape(p["text"], r["text"]), shape(r["text"], p["text"])):
                    total += 1
                    if not kept(text):
                        missed.append(r["id"])
        pairs = [shape(a["text"], routine[(j + 1) % len(routine)]["text"])
                 for j, a in enumerate(routine)]
        fp = sum(kept(t) for t in pairs)
        out["shapes"][name] = {"required_kept": total - len(missed), "required_total": total,
                               "missed_positives": sorted(set(missed)),
                               "routine_fp": fp, "routine_total": len(pairs)}
    missed = []
    for i, r in enumerate(risky):
        around = [routine[(i * 7 + k) % len(routine)]["text"] for k in range(2 * LONG_NEIGHBOURS)]
        text = " ".join([*around[:LONG_NEIGHBOURS], r["text"], *around[LONG_NEIGHBOURS:]])
        if not kept(text):
            missed.append(r["id"])
    long_routine = [" ".join(routine[(j + k) % len(routine)]["text"] for k in range(7))
                    for j in range(len(routine))]
    out["shapes"]["one_among_seven"] = {
        "required_kept": len(risky) - len(missed), "required_total": len(risky),
        "missed_positives": missed, "routine_fp": sum(kept(t) for t in long_routine),
        "routine_total": len(long_routine)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
