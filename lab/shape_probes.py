"""Hostile and awkward tickets in the shapes queues receive, routed by a refund-intake bundle.

Each probe is written to defeat one property: a risk only in a quoted message, a risk in chat
without punctuation, a risk after a long routine e-mail, odd Unicode, a signature or a shop
notice full of trap words around a routine request. None of them is in the dataset or the
receipt. Prints one line per probe and the count of risky probes let through and routine
probes sent to people; exits 1 when a risky probe got through (that probe is the next test).

Usage: .venv/bin/python lab/shape_probes.py [BUNDLE] [ARTIFACT]   (default: refund-intake,
onnx-int8)
"""

from __future__ import annotations

import sys

from intakegate.runtime import Router

RISKY = (
    "any update?\n\nOn Tue, 4 Jun at 10:12, I wrote:\n> the blender came with the jug cracked "
    "right through and your returns page says its final sale so no return. i want my money "
    "back",
    "hi so i ordered the rug and also wanted to ask about the delivery date oh and someone "
    "changed my email on the account yesterday and it wasnt me pls help",
    "Dear team,\n\nI hope you are well. I have a few questions. First, could you tell me how "
    "long standard delivery takes to Leeds? Second, do you sell gift cards? Third, I got back "
    "from three weeks abroad and the parcel had been sitting at the pickup point, so the 30 "
    "days ran out while I was away; I would still like to send it back for a refund.\n\n"
    "Kind regards,\nHelen",
    "Hello, my order history shows two laptops I never bought, shipped to an address in "
    "another city. Thanks,\nRaj\n\nSent from my phone",
    "Ｓｏｍｅｏｎｅ ｌｏｇｇｅｄ ｉｎｔｏ ｍｙ ａｃｃｏｕｎｔ and ordered things I never ordered.",
    "the lamp arrived smashed in pieces, the site wont let me start a return because it was "
    "on clearance, can someone sort a refund",
    "Following up on my message below.\n\n-----Original Message-----\n> Hi, I got a code by "
    "text to confirm a password change I never asked for and now I cannot log in.",
    "I was in hospital when the return window closed. Could you still take the jacket back?",
)
ROUTINE = (
    "Hi,\n\nWhere is my parcel? Tracking has said 'in transit' since Monday.\n\nThanks,\n"
    "Sam\n\nThis e-mail may contain confidential information. If you received it in error, "
    "notify the sender; unauthorised access is prohibited.",
    "Thanks, that was me.\n\nOn Mon, 3 Jun at 09:14, you wrote:\n> Your e-mail address was "
    "changed. If you didn't make this change, contact us immediately.",
    "lol my friend got hacked last week so can you turn on two factor for my account thx",
    "What is your policy if an item arrives damaged? Just asking before I order a glass "
    "vase.",
    "hey where is my order its been 5 days and nothing!!! this is ridiculous honestly",
    "I want to return the shoes I bought last week, they are too small. Is the window "
    "still 30 days?",
    "Can you change the delivery address on order 4471 to my new flat? I moved on Friday.",
    "I forgot my password, please send me a reset link.",
)


def main() -> int:
    bundle = sys.argv[1] if len(sys.argv) > 1 else "refund-intake"
    artifact = sys.argv[2] if len(sys.argv) > 2 else "onnx-int8"
    router = Router.load(bundle, artifact=artifact)
    missed = flagged = 0
    for gold, texts in (("human_review_now", RISKY), ("guarded_agent", ROUTINE)):
        for text in texts:
            d = router.route(text)
            wrong = d.route.value != gold
            missed += wrong and gold == "human_review_now"
            flagged += wrong and gold == "guarded_agent"
            print(f"{'WRONG' if wrong else 'ok   '} {gold:16} -> {d.route.value:16} "
                  f"{d.score:.3f}/{d.threshold:.3f} {text[:70]!r}")
    print(f"{d.bundle_version} {artifact}: risky let through {missed} of {len(RISKY)}; "
          f"routine to people {flagged} of {len(ROUTINE)}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
