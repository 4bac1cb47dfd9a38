"""The `intakegate` command line. Heavy imports stay inside the commands that need them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate.bundle import BundleError
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
    paths: Annotated[list[Path], typer.Argument(help="RUN.json files (with --receipt), or one "
                                                     "BUNDLE directory or dataset name.")],
    receipt: Annotated[Optional[Path], typer.Option(help="Frozen receipt spec JSON.")] = None,
    artifact: Annotated[Optional[list[str]], typer.Option(
        help="With BUNDLE: the artifact(s) to re-gate (default: every artifact).")] = None,
    bundles_dir: Annotated[Path, typer.Option("--bundles-dir", envvar="INTAKEGATE_BUNDLES")] = Path(
        "bundles"),
) -> None:
    """Gate runs against a frozen receipt, or re-gate a bundle's artifacts; one line each.

    Exit 0 when every run or artifact is eligible, 1 when any is held, 2 on unreadable input.
    """
    if receipt is None:
        if len(paths) != 1:
            raise InputError("pass --receipt SPEC.json with RUN.json files, or exactly one BUNDLE")
        from intakegate.export.regate import gate_bundle_command

        raise typer.Exit(gate_bundle_command(paths[0], artifact or [], bundles_dir))
    from intakegate.gate import gate_files

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


bundles_app = typer.Typer(no_args_is_help=True, help="List, activate and roll back bundles.")
app.add_typer(bundles_app, name="bundles")
BundlesRoot = Annotated[Path, typer.Option("--bundles-dir", envvar="INTAKEGATE_BUNDLES",
                                           help="Root folder of the bundles.")]


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="refund-intake | banking77 | dataset.json | "
                                              "PATH.jsonl")] = "refund-intake",
    label_guide: Annotated[Optional[Path], typer.Option(help="Label guide JSON.")] = None,
    adjudication: Annotated[Optional[Path], typer.Option(help="Adjudication JSON.")] = None,
    base_model: Annotated[Optional[str], typer.Option(
        help="tiny | minilm (default) | a local model directory | a hub id")] = None,
    bundle_version: Annotated[Optional[str], typer.Option(help="Bundle version name.")] = None,
    objective: Annotated[Optional[str], typer.Option(help="binary | intents")] = None,
    epochs: Annotated[Optional[float], typer.Option()] = None,
    learning_rate: Annotated[Optional[float], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option()] = None,
    train_max_length: Annotated[Optional[int], typer.Option()] = None,
    label_smoothing: Annotated[Optional[float], typer.Option()] = None,
    class_weighting: Annotated[Optional[str], typer.Option(help="none | balanced")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda | mps")] = None,
    blend_weights: Annotated[Optional[str], typer.Option(
        help="Encoder weights to try for the TF-IDF blend, e.g. '1,0.8,0.6' (validation picks "
             "one); 'none' scores with the encoder alone. Default: the dataset recipe.")] = None,
    bundles_dir: BundlesRoot = Path("bundles"),
    reports_dir: Annotated[Path, typer.Option(help="Committed report copies.")] = Path("reports"),
    activate_if_eligible: Annotated[bool, typer.Option("--activate/--no-activate")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle version.")] = False,
    validation_only: Annotated[bool, typer.Option(
        help="Candidate search: gate on validation, keep the test split closed.")] = False,
) -> None:
    """Fine-tune, choose the threshold on validation, gate, report on test once, write a bundle."""
    _setup_logging()
    from intakegate.train.pipeline import summary_lines, train_bundle

    overrides = {"base_model": base_model, "objective": objective, "epochs": epochs,
                 "learning_rate": learning_rate, "batch_size": batch_size,
                 "train_max_length": train_max_length, "label_smoothing": label_smoothing,
                 "class_weighting": class_weighting, "seed": seed, "device": device}
    if blend_weights is not None:
        try:
            overrides["blend_weights"] = (() if blend_weights.strip().lower() == "none" else
                                          tuple(float(w) for w in blend_weights.split(",")))
        except ValueError:
            raise typer.BadParameter("a comma-separated list of numbers, or 'none'",
                                     param_hint="--blend-weights") from None
    result = train_bundle(dataset, label_guide=str(label_guide) if label_guide else None,
                          adjudication=str(adjudication) if adjudication else None,
                          bundles_root=bundles_dir, bundle_version=bundle_version,
                          reports_root=reports_dir,
                          overrides={k: v for k, v in overrides.items() if v is not None},
                          force=force, open_test=not validation_only)
    for line in summary_lines(result):
        typer.echo(line)
    if activate_if_eligible and result.gate.eligible:
        from intakegate.bundle import activate

        activate(bundles_dir, result.bundle_dir.parent.name, result.bundle_dir.name)
        typer.echo(f"activated {result.bundle_dir.parent.name}/{result.bundle_dir.name}")
    raise typer.Exit(0 if result.gate.eligible else EXIT_HELD)


@bundles_app.command("list")
def bundles_list(bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """Every bundle with its decision; `*` marks the active one."""
    from intakegate.bundle import list_bundles

    for b in list_bundles(bundles_dir):
        mark = "*" if b["active"] else " "
        arts = " ".join(f"{k}={v}" for k, v in b["artifacts"].items())
        typer.echo(f"{mark} {b['dataset']}/{b['bundle_version']}: decision={b['decision']} "
                   f"reason={b['reason']} threshold={b['threshold']} {arts}")


@bundles_app.command("path")
def bundles_path(name: str, bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """The active bundle directory of a dataset."""
    from intakegate.bundle import resolve_bundle

    typer.echo(str(resolve_bundle(name, bundles_dir)))


@bundles_app.command("activate")
def bundles_activate(name: str, version: str, bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """Verify a bundle and make it active (atomic pointer replace)."""
    from intakegate.bundle import activate

    pointer = activate(bundles_dir, name, version)
    typer.echo(f"active: {name}/{pointer['bundle_version']} manifest_sha256="
               f"{pointer['manifest_sha256']}")


@bundles_app.command("rollback")
def bundles_rollback(name: str, bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """Re-activate the previous bundle, whole: model, tokenizer, threshold and fallback."""
    from intakegate.bundle import rollback

    pointer = rollback(bundles_dir, name)
    typer.echo(f"active: {name}/{pointer['bundle_version']} (rolled back from "
               f"{pointer['rolled_back_from']})")


def _register_stage_commands() -> None:
    """Each stage owns its commands; registering them imports only typer-level modules."""
    from intakegate.benchmarks.cli_commands import register as register_bench
    from intakegate.export.cli_commands import register as register_export
    from intakegate.runtime.cli_commands import register as register_runtime
    from intakegate.signing_cli import register as register_signing

    register_signing(bundles_app)
    register_export(app)
    register_runtime(app)
    register_bench(app)


_register_stage_commands()


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
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:  # e.g. a full disk while activating: a message, not a traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
