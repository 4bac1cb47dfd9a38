"""Build refund-intake v2 (tickets.jsonl and accounts.md) from the hand-written parts in parts/.

    python data/refund-intake/v2/build.py           # rewrite tickets.jsonl and accounts.md
    python data/refund-intake/v2/build.py --check   # exit 1 if the committed files differ

Every ticket text, quoted message, multi-request part, greeting and sign-off was written by hand
for this project (hypothetical customers, no real data). This script only assembles them,
deterministically (one seeded random.Random, no clock, no hashing of sets):

- parts/<slice>.txt holds, per shape, the tickets of that slice written by hand: one ticket per
  line, or for `email` (the body) and `quoted_reply` (a reply above a quoted earlier message)
  blocks separated by `%%`. Multi-request tickets are joined here from `multi_parts`: a
  required-slice ticket is one risky request among routine ones (slice = the risky request's
  slice), a routine one is 2-3 routine requests (slice = the first request's slice). Every part
  is used once, so no two rows share a body.
- Greetings, sign-offs, names and quote headers come from the small pools below.
- Splits are planned per (slice, shape) cell, 60/20/20, so every cell reaches train, validation
  and test; rows are then spread over hypothetical accounts whose first month puts them in that
  split under the grouped-time rule of dataset.json (months 1-4 train, 5 validation, 6 test).

The checks at the end (vocabulary, chat form, trap words, duplicates) fail the build rather
than write a dataset that breaks its own card.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = HERE / "parts"
SEED = 20260601

SLICES = {  # label guide order; abbreviation for ids
    "damaged_package_exception": "dpe",
    "return_window_exception": "rwe",
    "account_takeover": "ato",
    "routine_delivery_status": "rds",
    "return_policy_question": "rpq",
    "routine_account": "ra",
    "routine_return_request": "rrr",
}
REQUIRED = ("damaged_package_exception", "return_window_exception", "account_takeover")
ROUTINE = ("routine_delivery_status", "return_policy_question", "routine_account",
           "routine_return_request")
# Kept equal to intakegate.contract.shapes.SHAPES (a test checks), so this script runs alone.
SHAPES = ("plain", "email", "quoted_reply", "chat", "non_native", "typos", "angry_routine",
          "multi_request", "trap_words", "indirect")
SHAPE_ABBR = {"plain": "plain", "email": "email", "quoted_reply": "quoted", "chat": "chat",
              "non_native": "nonnative", "typos": "typos", "angry_routine": "angry",
              "multi_request": "multi", "trap_words": "trap", "indirect": "indirect"}
LINE_SECTIONS = ("plain", "chat", "non_native", "typos", "angry_routine", "trap_words",
                 "indirect", "multi_parts")
BLOCK_SECTIONS = ("email", "quoted_reply")
TRAP_WORDS = ("hacked", "code", "damaged", "window", "stolen", "exception")
MULTI_PER_SLICE = {s: 27 for s in REQUIRED} | {s: 25 for s in ROUTINE}
# How many routine requests join each multi-request ticket (shuffled per slice): beside the
# risky request of a required-slice ticket, and after the lead request of a routine one.
ROUTINE_PARTS_WITH_RISK = [1] * 16 + [2] * 9 + [3] * 2
EXTRA_ROUTINE_PARTS = [1] * 18 + [2] * 7

# ---------------------------------------------------------------------------------------------
# Pools (hand-written)

FIRST = ["Maya", "Tomasz", "Aisha", "Dev", "Grace", "Oluwaseun", "Hannah", "Marco", "Priya",
         "Liam", "Sofia", "Kwame", "Ines", "Callum", "Mei", "Rhys", "Fatima", "Jonas", "Chloe",
         "Arjun", "Niamh", "Yusuf", "Elena", "Ben", "Amara", "Lukas", "Zara", "Owen", "Leila",
         "Daniel", "Siobhan", "Hiro", "Beatriz", "Sam", "Nadia", "Patrick", "Joanna", "Emeka",
         "Ruth", "Mateo", "Isla", "Farid", "Agnieszka", "Tom", "Lucy", "Ravi", "Eilidh",
         "Kofi", "Helen", "Andrei", "Rosa", "Jamal", "Freya", "Wei", "Catherine", "Nikhil",
         "Orla", "Stefan", "Bethany", "Adebayo"]
LAST = ["Okafor", "Nowak", "Khan", "Patel", "Whitfield", "Adeyemi", "Murray", "Rossi", "Nair",
        "Byrne", "Costa", "Mensah", "Silva", "MacLeod", "Chen", "Jones", "Hussain", "Berg",
        "Dubois", "Sharma", "Kelly", "Yilmaz", "Popescu", "Hughes", "Eze", "Schmidt", "Ali",
        "Price", "Haddad", "Fletcher", "O'Brien", "Tanaka", "Ferreira", "Green", "Rahman",
        "Walsh", "Kowalski", "Obi", "Carter", "Garcia", "Campbell", "Karimi", "Wiśniewska",
        "Turner", "Evans", "Iyer", "Fraser", "Asante", "Morgan", "Ionescu", "Ortega",
        "Williams", "Lund", "Zhang", "Bell", "Reddy", "Doyle", "Novak", "Hall", "Bello"]
GREETINGS = ["Hi,", "Hello,", "Hi there,", "Hello team,", "Dear Customer Services,",
             "Good morning,", "Good afternoon,", "Dear Sir or Madam,", "Hi team,", "Hello there,",
             "Dear support team,", "Hiya,", "Morning,", "To whom it may concern,",
             "Hello Customer Care,", "Good evening,", "Dear team,", "Hi all,"]
SIGNOFFS = ["Thanks,\n{first}", "Many thanks,\n{full}", "Kind regards,\n{full}", "Best,\n{first}",
            "Best wishes,\n{first}", "Regards,\n{full}", "Thank you,\n{first} {initial}.",
            "Cheers,\n{first}", "Thanks in advance,\n{full}", "Warm regards,\n{full}",
            "Sincerely,\n{full}", "Thanks!\n{first}", "Kind regards\n{initial_first}. {last}",
            "All the best,\n{first}", "Thanks so much,\n{first}", "Regards\n{first}"]
TRAILERS = ["", "", "", "", "", "", "\n\nSent from my iPhone", "\n\nSent from my Galaxy",
            "\nTel: 07700 900{tel}", "\nMobile: 07700 900{tel}"]
OPENERS = ["", "", "", "I have a few things to sort out, sorry for the long message.",
           "A couple of questions today.", "Hope you're well. A few things:",
           "A few things, if that's OK.", "Writing about a couple of things at once.",
           "Sorry, this is a bit of a list.", "I've got several questions, bear with me.",
           "Some things to ask, please.", "Rather than send lots of emails, here's everything:"]
CONNECTORS = ["Also, ", "Second, ", "Another thing: ", "Separately, ", "On a different note, ",
              "One more thing: ", "Oh, and ", "While I'm here, ", "And ", "Plus, ",
              "Lastly, ", "Next, "]
SUPPORT_NAMES = ["Customer Care", "Customer Care Team", "Priya from Customer Care",
                 "Support", "Returns Team", "Dan (Customer Care)"]
SUBJECTS = ["Re: Your enquiry", "Re: Your message", "RE: Customer enquiry", "Re: Case update",
            "RE: Help please", "Re: Query", "Re: Your request", "RE: Contact form"]
DOMAINS = ["example.com", "example.net", "example.org", "mail.example", "post.example"]
ADJ = ["amber", "birch", "cobalt", "dusk", "ember", "fern", "flint", "gold", "hazel", "indigo",
       "jade", "kelp", "linen", "maple", "moss", "oak", "opal", "pine", "quill", "rust",
       "sage", "slate", "teal", "umber", "willow"]
NOUN = ["badger", "brook", "cove", "crane", "dale", "finch", "fox", "glen", "hare", "heath",
        "heron", "lark", "marsh", "mill", "otter", "quay", "reed", "ridge", "robin", "shore",
        "stone", "vale", "weald", "wren", "yard"]
MONTHS = ["January", "February", "March", "April", "May", "June"]

# ---------------------------------------------------------------------------------------------
# Parts


def read_parts(slice_name: str) -> dict[str, list]:
    """Sections of parts/<slice>.txt: lists of tickets (strings), quoted items (dicts)."""
    text = (PARTS / f"{slice_name}.txt").read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith("== "):
            name = line[3:].strip()
            if name not in LINE_SECTIONS + BLOCK_SECTIONS:
                raise ValueError(f"{slice_name}: unknown section {name!r}")
            current = sections.setdefault(name, [])
        elif line.startswith("#") and current is None:
            continue
        elif current is not None:
            current.append(line)
    out: dict[str, list] = {}
    for name, lines in sections.items():
        if name in LINE_SECTIONS:
            out[name] = [ln.strip() for ln in lines if ln.strip()]
        else:
            blocks = "\n".join(lines).split("\n%%\n")
            items = [b.strip() for b in blocks if b.strip()]
            out[name] = [parse_quoted(b, slice_name) for b in items] if name == "quoted_reply" \
                else items
    return out


def parse_quoted(block: str, slice_name: str) -> dict[str, str]:
    head, _, rest = block.partition("\n")
    risk, author = head.removeprefix("@").split()
    reply, sep, quote = rest.partition("\n>>\n")
    if not sep or risk not in ("quote", "reply", "none") or author not in ("customer", "support"):
        raise ValueError(f"{slice_name}: bad quoted_reply block {block[:60]!r}")
    return {"risk": risk, "author": author, "reply": reply.strip(), "quote": quote.strip()}


# ---------------------------------------------------------------------------------------------
# Rendering


def person(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {"first": first, "last": last, "full": f"{first} {last}", "initial": last[0],
            "initial_first": first[0], "tel": f"{rng.randrange(1000):03d}"}


def email_address(who: dict[str, str], rng: random.Random) -> str:
    local = rng.choice(["{f}.{l}", "{f}{l}", "{i}{l}", "{f}_{l}{n}", "{f}{n}"]).format(
        f=who["first"].lower(), l=re.sub(r"[^a-z]", "", who["last"].lower()),
        i=who["first"][0].lower(), n=rng.randrange(10, 99))
    return f"{local}@{rng.choice(DOMAINS)}"


def sign_off(who: dict[str, str], rng: random.Random) -> str:
    return rng.choice(SIGNOFFS).format(**who) + rng.choice(TRAILERS).format(**who)


def render_email(body: str, rng: random.Random) -> str:
    who = person(rng)
    return f"{rng.choice(GREETINGS)}\n\n{body}\n\n{sign_off(who, rng)}"


def quote_header(author: dict[str, str], address: str, when: datetime.datetime,
                 rng: random.Random) -> tuple[str, bool]:
    """The line(s) above a quote, and whether the quote's lines start with `>`."""
    style = rng.randrange(3)
    if style == 0:
        return (f"On {when:%a}, {when.day} {when:%b} {when.year} at {when:%H:%M}, "
                f"{author['full']} <{address}> wrote:"), True
    if style == 1:
        return f"On {when:%d/%m/%Y %H:%M}, {author['full']} wrote:", True
    return ("-----Original Message-----\n"
            f"From: {author['full']} <{address}>\n"
            f"Sent: {when:%A}, {when.day} {MONTHS[when.month - 1]} {when.year} "
            f"{when.hour}:{when:%M}\nSubject: {rng.choice(SUBJECTS)}"), False


def render_quoted(item: dict[str, str], month: int, rng: random.Random) -> str:
    customer = person(rng)
    when = datetime.datetime(2025, month, rng.randint(1, 26), rng.randint(7, 21),
                             rng.randrange(60))
    if item["author"] == "support":
        name = rng.choice(SUPPORT_NAMES)
        author = {"full": name}
        address = rng.choice(["care@shop.example", "support@shop.example",
                              "returns@shop.example", "no-reply@shop.example"])
    else:
        author, address = customer, email_address(customer, rng)
    header, marked = quote_header(author, address, when, rng)
    quote = item["quote"]
    if marked:
        quote = "\n".join(f"> {ln}" if ln else ">" for ln in quote.split("\n"))
    reply = item["reply"]
    if rng.random() < 0.45:
        reply += "\n\n" + rng.choice(["Thanks,\n{first}", "{first}", "Cheers, {first}",
                                      "Regards,\n{full}", "Thanks\n{first}"]).format(**customer)
    return f"{reply}\n\n{header}\n\n{quote}" if not marked else f"{reply}\n\n{header}\n{quote}"


def sentence_start(part: str) -> str:
    return part[0].upper() + part[1:]


def after_connector(part: str) -> str:
    if part.startswith(("I ", "I'")):
        return part
    return part[0].lower() + part[1:]


def render_multi(parts: list[str], rng: random.Random) -> str:
    style = rng.choice(["paragraphs", "paragraphs", "numbered", "run_on"])
    opener = rng.choice(OPENERS)
    greeting = rng.choice(GREETINGS) if rng.random() < 0.6 else ""
    connectors = rng.sample(CONNECTORS, len(parts) - 1)
    if style == "numbered":
        lines = [f"{i}. {sentence_start(p)}" for i, p in enumerate(parts, 1)]
        body = (opener or "A few things:") + "\n\n" + "\n".join(lines)
    else:
        pieces = [sentence_start(parts[0])]
        pieces += [c + after_connector(p) for c, p in zip(connectors, parts[1:])]
        joiner = "\n\n" if style == "paragraphs" else " "
        body = joiner.join(pieces)
        if opener:
            body = opener + joiner + body
    out = f"{greeting}\n\n{body}" if greeting else body
    if rng.random() < 0.55:
        out += "\n\n" + sign_off(person(rng), rng)
    return out


# ---------------------------------------------------------------------------------------------
# Rows


def plan_rows(rng: random.Random) -> list[dict]:
    parts = {s: read_parts(s) for s in SLICES}
    rows: list[dict] = []

    def add(slice_name: str, shape: str, text: str | dict, tags: list[str]) -> None:
        rows.append({"slice": slice_name, "shape": shape, "raw": text, "tags": tags})

    for s in SLICES:
        p = parts[s]
        for shape in ("plain", "chat", "non_native", "typos", "angry_routine", "trap_words",
                      "indirect"):
            for text in p.get(shape, []):
                add(s, shape, text, [])
        for body in p.get("email", []):
            add(s, "email", body, [])
        for item in p.get("quoted_reply", []):
            tags = [f"quote_from_{item['author']}"]
            if item["risk"] != "none":
                tags.insert(0, f"risk_in_{item['risk']}")
            if (item["risk"] == "none") != (s in ROUTINE):
                raise ValueError(f"{s}: quoted_reply risk marker {item['risk']!r} does not fit")
            add(s, "quoted_reply", item, tags)

    # Multi-request tickets: risky or routine parts, each used once.
    pools = {s: list(parts[s]["multi_parts"]) for s in SLICES}
    for pool in pools.values():
        rng.shuffle(pool)

    def take_routine(exclude: set[str]) -> tuple[str, str]:
        options = [s for s in ROUTINE if s not in exclude and pools[s]]
        best = max(len(pools[s]) for s in options)
        s = rng.choice([s for s in options if len(pools[s]) >= best - 3])
        return s, pools[s].pop()

    # The lead parts of routine multi-requests are set aside first; the rest are shared.
    leads = {s: [pools[s].pop() for _ in range(MULTI_PER_SLICE[s])] for s in ROUTINE}
    for s in REQUIRED:
        ks = ROUTINE_PARTS_WITH_RISK[:MULTI_PER_SLICE[s]]
        rng.shuffle(ks)
        for k in ks:
            used: set[str] = set()
            routine = []
            for _ in range(k):
                r, part = take_routine(used)
                used.add(r)
                routine.append(part)
            pos = rng.randrange(k + 1)
            seq = routine[:pos] + [pools[s].pop()] + routine[pos:]
            where = "first" if pos == 0 else "last" if pos == k else "middle"
            add(s, "multi_request", {"parts": seq},
                [f"risk_in_{where}_request", f"requests_{k + 1}"])
    for s in ROUTINE:
        ks = EXTRA_ROUTINE_PARTS[:MULTI_PER_SLICE[s]]
        rng.shuffle(ks)
        for k, lead in zip(ks, leads[s]):
            seq = [lead]
            used = {s}
            for _ in range(k):
                r, part = take_routine(used)
                used.add(r)
                seq.append(part)
            add(s, "multi_request", {"parts": seq}, [f"requests_{k + 1}"])
    return rows


def assign_splits(rows: list[dict], rng: random.Random) -> None:
    # Strata: (slice, shape) and, where a row has one, where its risk sits (quote or reply,
    # first/middle/last request), so each variant reaches every split.
    cells: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        where = next((t for t in row["tags"] if t.startswith("risk_in_")), "")
        cells[row["slice"], row["shape"], where].append(row)
    for key in sorted(cells):
        members = cells[key]
        order = list(range(len(members)))
        rng.shuffle(order)
        n_val = round(0.2 * len(members))
        n_test = round(0.2 * len(members))
        for rank, i in enumerate(order):
            members[i]["split"] = ("validation" if rank < n_val else
                                   "test" if rank < n_val + n_test else "train")


def make_accounts(rng: random.Random) -> dict[str, list[dict]]:
    names = [f"{a}-{n}" for a in ADJ for n in NOUN]
    rng.shuffle(names)
    counts = {"train": 120, "validation": 40, "test": 40}
    out: dict[str, list[dict]] = {}
    taken = 0
    for split, n in counts.items():
        accounts = []
        for name in sorted(names[taken:taken + n]):
            if split == "train":
                first = rng.randint(1, 4)
                span = rng.choices([1, 2, 3], weights=[0.45, 0.35, 0.2])[0]
            elif split == "validation":
                first, span = 5, rng.choices([1, 2], weights=[0.6, 0.4])[0]
            else:
                first, span = 6, 1
            months = list(range(first, min(6, first + span - 1) + 1))
            accounts.append({"name": name, "months": months,
                             "weight": rng.choice([1, 1, 1, 2, 2, 3, 4])})
        out[split] = accounts
        taken += n
    return out


def assign_accounts(rows: list[dict], rng: random.Random) -> dict[str, list[int]]:
    accounts = make_accounts(rng)
    used: dict[str, list[int]] = defaultdict(list)
    for split, accs in accounts.items():
        members = [r for r in rows if r["split"] == split]
        rng.shuffle(members)
        weights = [a["weight"] for a in accs]
        for i, row in enumerate(members):
            acc = accs[i] if i < len(accs) else rng.choices(accs, weights=weights)[0]
            row["account"] = acc["name"]
            # An account's first rows walk through its months in order (the first lands in its
            # first month, so the split holds, and the months it has stay consecutive).
            seen = used[acc["name"]]
            month = (acc["months"][len(seen)] if len(seen) < len(acc["months"])
                     else rng.choice(acc["months"]))
            row["month"] = month
            seen.append(month)
    return {name: sorted(set(months)) for name, months in used.items()}


def render_texts(rows: list[dict], rng: random.Random) -> None:
    for row in rows:
        raw, shape = row["raw"], row["shape"]
        if shape == "email":
            row["text"] = render_email(raw, rng)
        elif shape == "quoted_reply":
            row["text"] = render_quoted(raw, row["month"], rng)
        elif shape == "multi_request":
            row["text"] = render_multi(raw["parts"], rng)
        else:
            row["text"] = raw


EXCLUDED = [  # (shape, reason, text): kept in the file, listed on the data card, never scored
    ("email", "spam", ("Dear Store Owner,\n\nWe help online shops triple their reviews in 30 "
                       "days. Reply YES for a free trial of our review booster.\n\nBest regards,"
                       "\nGrowth Team")),
    ("email", "spam", ("Hello,\n\nExclusive offer: wholesale LED strips from $0.19 per metre, "
                       "MOQ 1000. Catalogue attached.\n\nSales Department")),
    ("chat", "spam", "earn 500 a day from home click my profile for info"),
    ("plain", "internal_qa", "QA: testing the new intake form with an attachment, please ignore."),
    ("chat", "internal_qa", "staging smoke test 7 do not route"),
    ("quoted_reply", "no_customer_text", (
        "I am out of the office until the 14th with limited access to email.\n\nOn Mon, 3 Mar "
        "2025 at 10:02, Customer Care <care@shop.example> wrote:\n> Your return label is "
        "attached.")),
    ("email", "no_customer_text", "Hi,\n\n[image: photo_0231.jpg]\n\nSent from my iPhone"),
    ("plain", "no_customer_text", "This message was sent automatically. Please do not reply."),
]


def build() -> tuple[str, str]:
    rng = random.Random(SEED)
    rows = plan_rows(rng)
    assign_splits(rows, rng)
    months = assign_accounts(rows, rng)
    render_texts(rows, rng)
    counters: dict[tuple[str, str], int] = defaultdict(int)
    out_rows = []
    for s, abbr in SLICES.items():
        for shape in SHAPES:
            for row in (r for r in rows if r["slice"] == s and r["shape"] == shape):
                counters[s, shape] += 1
                out_rows.append({
                    "id": f"v2-{abbr}-{SHAPE_ABBR[shape]}-{counters[s, shape]:03d}",
                    "text": row["text"],
                    "gold_route": "human_review_now" if s in REQUIRED else "guarded_agent",
                    "slice": s, "shape": shape, "account": row["account"],
                    "month": row["month"], "tags": row["tags"]})
    all_accounts = sorted(months)
    for i, (shape, reason, text) in enumerate(EXCLUDED, 1):
        account = all_accounts[rng.randrange(len(all_accounts))]
        out_rows.append({"id": f"v2-exc-{i:03d}", "text": text, "gold_route": "guarded_agent",
                         "slice": "routine_delivery_status", "shape": shape, "account": account,
                         "month": months[account][0], "tags": [], "excluded_reason": reason})
    check(out_rows)
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows)
    return jsonl, accounts_md(months)


def accounts_md(months: dict[str, list[int]]) -> str:
    def split_of(ms: list[int]) -> str:
        return "train" if ms[0] <= 4 else "validation" if ms[0] == 5 else "test"

    order = sorted(months, key=lambda a: (months[a][0], a))
    lines = [
        "# Accounts for refund-intake v2 (hypothetical customers)", "",
        "Generated by build.py. Each ticket belongs to exactly one account and one month (1..6).",
        "An account only has tickets in the months listed for it. Split rule (applied by code,",
        "dataset.json `split.params`): accounts first seen in months 1-4 -> train, first seen in",
        "month 5 -> validation, first seen in month 6 -> test. Quoted messages are dated in the",
        "ticket's month (month 1 = January 2025).", "",
        "| account | months | split (for your planning only) |", "|---|---|---|"]
    lines += [f"| {a} | {','.join(map(str, months[a]))} | {split_of(months[a])} |"
              for a in order]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Checks


def tokens(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def check(rows: list[dict]) -> None:
    texts: dict[str, str] = {}
    for row in rows:
        if row["shape"] not in SHAPES:
            raise ValueError(f"{row['id']}: unknown shape {row['shape']!r}")
        if row["text"] in texts:
            raise ValueError(f"{row['id']}: same text as {texts[row['text']]}")
        texts[row["text"]] = row["id"]
        if "excluded_reason" in row:
            continue
        if row["shape"] == "chat" and not re.fullmatch(r"[a-z0-9 ]+", row["text"]):
            raise ValueError(f"{row['id']}: chat must be lower case with no punctuation")
        if row["shape"] == "trap_words" and not any(w in row["text"].lower()
                                                    for w in TRAP_WORDS):
            raise ValueError(f"{row['id']}: trap_words row without a trap word")
        if row["shape"] == "email" and "\n" not in row["text"]:
            raise ValueError(f"{row['id']}: email without line breaks")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed files instead of writing them")
    args = parser.parse_args()
    jsonl, accounts = build()
    targets = {HERE / "tickets.jsonl": jsonl, HERE / "accounts.md": accounts}
    if args.check:
        stale = [p.name for p, text in targets.items()
                 if not p.exists() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"out of date: {', '.join(stale)} (run build.py)", file=sys.stderr)
            return 1
        print("tickets.jsonl and accounts.md match build.py")
        return 0
    for path, text in targets.items():
        path.write_text(text, encoding="utf-8")
    print(f"wrote {len(jsonl.splitlines())} rows to {HERE / 'tickets.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
