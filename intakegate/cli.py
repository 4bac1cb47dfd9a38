"""The `intakegate` command line. Heavy imports stay inside the commands that need them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate.errors import InputError, MissingExtraError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Route support tickets locally: human_review_now or guarded_agent.")
data_app = typer.Typer(no_args_is_help=True, help="Load, check and describe datasets.")
app.add_typer(data_app, name="data")

EXIT_HELD = 1
EXIT_BAD_INPUT = 2


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


@app.command()
def gate(
    paths: Annotated[list[Path], typer.Argument(help="RUN.json files (with --receipt), or a "
                                                     "BUNDLE directory.")],
    receipt: Annotated[Optional[Path], typer.Option(help="Frozen receipt spec JSON.")] = None,
) -> None:
    """Gate runs against a frozen receipt; print one seed-style line per run.

    Exit 0 when every run is eligible, 1 when any is held, 2 on unreadable input.
    """
    from intakegate.gate import gate_files

    if receipt is None:
        raise InputError("pass --receipt SPEC.json with RUN.json files")
    results = gate_files(receipt, paths)
    for result in results:
        typer.echo(result.line())
    raise typer.Exit(0 if all(r.eligible for r in results) else EXIT_HELD)


@data_app.command("check")
def data_check(
    dataset: Annotated[str, typer.Argument(help="refund-intake | banking77 | dataset.json | "
                                                "PATH.jsonl")],
    label_guide: Annotated[Optional[Path], typer.Option(help="Label guide JSON.")] = None,
    adjudication: Annotated[Optional[Path], typer.Option(help="Adjudication JSON.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the manifest and cards.")] = Path(
        "reports"),
) -> None:
    """Validate a dataset, freeze its split and write the split manifest, label guide and data card."""
    from intakegate.datacard import render_data_card
    from intakegate.dataset import load_dataset
    from intakegate.jsonio import write_json
    from intakegate.label_guide import render_label_guide_md
    from intakegate.split import split_dataset

    ds = load_dataset(dataset, label_guide=label_guide, adjudication=adjudication)
    split = split_dataset(ds)
    target = out / ds.name
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / "split_manifest.json", split.manifest)
    (target / "label_guide.md").write_text(render_label_guide_md(ds.guide), encoding="utf-8")
    (target / "data_card.md").write_text(render_data_card(ds, split), encoding="utf-8")
    typer.echo(f"{ds.name}: {len(ds.rows)} rows, {len(ds.excluded)} excluded, "
               f"dataset {ds.dataset_version}, split {split.version}")
    for name, info in split.manifest["splits"].items():
        typer.echo(f"  {name}: {info['count']} rows, {info['positives']} human_review_now")
    typer.echo(f"wrote {target}/split_manifest.json, label_guide.md, data_card.md")


@app.command()
def baselines(
    dataset: Annotated[str, typer.Argument(help="refund-intake | banking77 | dataset.json | "
                                                "PATH.jsonl")],
    label_guide: Annotated[Optional[Path], typer.Option(help="Label guide JSON.")] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports"),
) -> None:
    """Fit the keyword rule and TF-IDF + LR on train; report them on validation."""
    _setup_logging()
    from intakegate.dataset import load_dataset
    from intakegate.split import split_dataset
    from intakegate.train.baseline_report import write_baseline_report

    ds = load_dataset(dataset, label_guide=label_guide)
    split = split_dataset(ds)
    report = write_baseline_report(ds, split, out / ds.name)
    for name, r in report["baselines"].items():
        e = r["at_chosen_threshold"]
        typer.echo(f"{name}: threshold={e['threshold']:.4f} required_missed="
                   f"{e['required_missed']}/{e['required_positives']} "
                   f"fp_rate={e['false_positive_rate']:.3f} "
                   f"meets_fp_budget={r['meets_fp_budget']}")
    typer.echo(f"wrote {out / ds.name}/baseline_report.md")


def main() -> None:
    """Entry point: bad input exits 2 with a message naming the file and field."""
    try:
        app()
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except MissingExtraError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
