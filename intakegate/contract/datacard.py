"""The data card of the release checklist: where rows came from, what was excluded, what is missing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from intakegate.contract.dataset import Dataset, data_root
from intakegate.contract.shapes import SHAPES, shape_applies
from intakegate.contract.split import SPLITS, SplitResult

# A (slice, shape) cell with fewer rows than this is listed as still missing on the card.
MIN_CELL_ROWS = 10


def shown_path(where: str) -> str:
    """Shipped data as `data/<dataset>/<file>`, so committed cards do not name the machine that
    wrote them; anything else (a user's file) as given."""
    root = str(data_root().resolve()) + "/"
    return "data/" + where[len(root):] if str(Path(where)).startswith(root) else where


def render_data_card(dataset: Dataset, split: SplitResult) -> str:
    guide = dataset.guide
    lines = [f"# Data card: {dataset.name}", ""]
    if dataset.hypothetical:
        lines += ["**This is a hypothetical teaching dataset, not measured production traffic.** "
                  "Every ticket was written by hand for this project; no customer wrote any of "
                  "them. Figures measured on it show that the pipeline works, not how a model "
                  "will do on real tickets.", ""]
    lines += [
        dataset.description, "",
        "| Field | Value |", "|---|---|",
        f"| Dataset version | `{dataset.dataset_version}` |",
        f"| Label version | `{guide.label_version}` |",
        f"| Split manifest | `{split.version}` (rule `{split.manifest['rule']}`, "
        f"params `{dict(split.manifest['params'])}`) |",
        f"| Validation receipt | `{dataset.receipt_version}` |",
        f"| Rows used | {len(dataset.rows)} |",
        f"| Rows excluded | {len(dataset.excluded)} |",
        f"| Required slices | {', '.join(f'`{s}`' for s in sorted(guide.required_slices))} |",
        f"| Sources | {', '.join(f'`{shown_path(s)}`' for s in dataset.sources)} |",
        "",
        "## Rows per split and slice", "",
    ]
    slices = list(guide.slices)
    splits = split.manifest["splits"]
    lines.append("| Slice | Route | " + " | ".join(splits) + " |")
    lines.append("|---|---|" + "---|" * len(splits))
    for name in slices:
        counts = [str(splits[s]["slices"].get(name, 0)) for s in splits]
        req = " (required)" if name in guide.required_slices else ""
        lines.append(f"| `{name}`{req} | `{guide.route_of(name).value}` | "
                     + " | ".join(counts) + " |")
    lines.append("| **all** | | " + " | ".join(str(splits[s]["count"]) for s in splits) + " |")
    lines.append("| positives (`human_review_now`) | | "
                 + " | ".join(str(splits[s]["positives"]) for s in splits) + " |")
    if any(splits[s]["accounts"] for s in splits):
        lines += ["", "Accounts and months per split (accounts are disjoint across splits):", ""]
        for s in splits:
            lines.append(f"- {s}: months {splits[s]['months']}, accounts "
                         f"{', '.join(splits[s]['accounts'])}")
    tags = Counter(tag for row in dataset.rows for tag in row.tags)
    if tags:
        lines += ["", "## Hard-case tags", "", "| Tag | Rows |", "|---|---|"]
        lines += [f"| `{t}` | {n} |" for t, n in sorted(tags.items())]
    if any(row.shape is not None for row in dataset.rows):
        lines += shape_section(dataset, split)
    lines += ["", "## Excluded rows", ""]
    if dataset.excluded:
        lines += ["| Id | Reason | Text | Where |", "|---|---|---|---|"]
        for ex in dataset.excluded:
            text = ex.text.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{ex.id}` | {ex.reason} | {text} | `{shown_path(ex.origin)}` |")
    else:
        lines.append("None.")
    lines += ["", "## Adjudications", ""]
    if dataset.adjudications:
        lines += ["| Id | Action | From | To | Reason |", "|---|---|---|---|---|"]
        for a in dataset.adjudications:
            lines.append(f"| `{a.id}` | {a.action} | `{a.old_slice}` | `{a.new_slice or '-'}` | "
                         f"{a.reason} |")
    else:
        lines.append("None: every row carries its original label.")
    lines += [
        "", "## Known gaps", "",
        "- Provenance, consent and retention: "
        + ("not applicable (written for teaching)." if dataset.hypothetical else
           "see the source's licence and attribution beside the data."),
        "- Labelling: one label per row; no disagreement rate was measured.",
        ("- Coverage: English only (non-native English included); no attachments; a thread only "
         "as one reply above one quoted message (`quoted_reply`)."
         if any(row.shape is not None for row in dataset.rows) else
         "- Coverage: English only; no attachments, no multi-message threads."),
        "",
    ]
    return "\n".join(lines)


def shape_section(dataset: Dataset, split: SplitResult) -> list[str]:
    """Counts per slice x shape (total and per split) and the cells that are still thin.

    A cell applies when its shape fits the slice's route (angry_routine and trap_words are for
    routine slices, indirect for human_review_now slices); an applicable cell is still missing
    when it has fewer than MIN_CELL_ROWS rows or none in some split."""
    guide = dataset.guide
    count: Counter[tuple[str, str | None]] = Counter()
    per_split: Counter[tuple[str, str | None, str]] = Counter()
    for row in dataset.rows:
        count[row.slice, row.shape] += 1
        per_split[row.slice, row.shape, split.assignment[row.id].value] += 1
    untagged = any(shape is None for _, shape in count)
    columns: list[str | None] = [*SHAPES, *([None] if untagged else [])]
    names = [s.value for s in SPLITS]
    lines = ["", "## Rows per slice and shape", "",
             (f"Each cell: all rows ({'/'.join(names)}); `-`: the shape does not apply to the "
              "slice's route."), "",
             "| Slice | " + " | ".join(f"`{c}`" if c else "untagged" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    missing: list[str] = []
    for name in guide.slices:
        route = guide.route_of(name)
        cells = []
        for shape in columns:
            n = count[name, shape]
            if shape is not None and not shape_applies(shape, route) and n == 0:
                cells.append("-")
                continue
            parts = [per_split[name, shape, s] for s in names]
            cells.append(f"{n} ({'/'.join(map(str, parts))})")
            if shape is None:
                continue
            absent = [s for s, k in zip(names, parts) if k == 0]
            if n < MIN_CELL_ROWS or absent:
                why = [f"{n} rows"] if n < MIN_CELL_ROWS else []
                why += [f"none in {s}" for s in absent]
                missing.append(f"- `{name}` x `{shape}`: {', '.join(why)}")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    totals = [sum(n for (_, shape), n in count.items() if shape == c) for c in columns]
    lines.append("| **all** | " + " | ".join(map(str, totals)) + " |")
    tagged: Counter[tuple[str, str]] = Counter(
        (tag, split.assignment[row.id].value)
        for row in dataset.rows if row.shape is not None for tag in row.tags)
    if tagged:
        lines += ["", "Tags on shaped rows per split (where the risk sits, how many requests):",
                  "", "| Tag | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for tag in sorted({t for t, _ in tagged}):
            lines.append(f"| `{tag}` | " + " | ".join(str(tagged[tag, s]) for s in names) + " |")
    lines += ["", (f"Still missing (applicable cells with fewer than {MIN_CELL_ROWS} rows, or "
                   "none in a split):"), ""]
    lines += missing or ["- Nothing: every applicable cell has enough rows in every split."]
    return lines
