"""The data card of the release checklist: where rows came from, what was excluded, what is missing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from intakegate.contract.dataset import Dataset, data_root
from intakegate.contract.split import SplitResult


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
        "- Coverage: English only; no attachments, no multi-message threads.",
        "",
    ]
    return "\n".join(lines)
