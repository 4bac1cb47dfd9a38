"""Training-stage commands for the `intakegate` CLI (baselines, train). Light imports only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate.cli.exits import ExitCode
from intakegate.cli.options import BundlesDirOpt, bundles_root

# Run outputs go under runs/ (ignored by git); pass --out/--reports-dir reports to refresh the
# committed copies.
RUN_REPORTS = Path("runs") / "reports"


def register(app: typer.Typer) -> None:
    """Add the training stage's commands to the main app."""
    app.command("baselines")(baselines_command)
    app.command("train")(train_command)


def _setup_logging() -> None:
    from intakegate.cli import _setup_logging as setup

    setup()


def baselines_command(
    dataset: Annotated[str, typer.Argument(help="refund-intake | banking77 | dataset.json | "
                                                "PATH.jsonl")],
    label_guide: Annotated[Optional[Path], typer.Option(help="Label guide JSON.")] = None,
    out: Annotated[Path, typer.Option(
        help="Report folder; the report goes to OUT/<dataset>/.")] = RUN_REPORTS,
) -> None:
    """Fit the keyword rule and TF-IDF + LR on train; report them on validation."""
    _setup_logging()
    from intakegate.contract.dataset import load_dataset
    from intakegate.contract.split import split_dataset
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


def train_command(
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
    batch_padding: Annotated[Optional[str], typer.Option(
        help="longest_in_batch (default: every row padded to the batch's longest) | "
             "length_chunks (the batch runs in chunks of similar length: the same loss, "
             "about 1.8 times faster on CPU, other dropout draws).")] = None,
    segment_objective: Annotated[Optional[str], typer.Option(
        help="per_row (default: each row against its label) | max_over_segments (a row's "
             "label against its riskiest segment: the row and its --bag-segmentation parts; "
             "binary objective, Hugging Face encoder).")] = None,
    bag_segmentation: Annotated[Optional[str], typer.Option(
        help="The parts of a row's bag under max_over_segments (default sent2).")] = None,
    train_max_length: Annotated[Optional[int], typer.Option()] = None,
    label_smoothing: Annotated[Optional[float], typer.Option()] = None,
    class_weighting: Annotated[Optional[str], typer.Option(help="none | balanced")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda | mps")] = None,
    blend_weights: Annotated[Optional[str], typer.Option(
        help="Encoder weights to try for the TF-IDF blend, e.g. '1,0.8,0.6' (validation picks "
             "one); 'none' scores with the encoder alone. Default: the dataset recipe.")] = None,
    teacher: Annotated[Optional[Path], typer.Option(
        help="Distil from this bundle: its torch-fp32 logits on every training row are soft "
             "targets beside the labels.")] = None,
    student_layers: Annotated[Optional[str], typer.Option(
        help="Start the student from these encoder layers of --teacher, e.g. '1,3,5' (every "
             "other layer of a 6-layer model) instead of from --base-model.")] = None,
    distill_weight: Annotated[Optional[float], typer.Option(
        help="Weight of the teacher term in the loss (0..1; default 0.5).")] = None,
    distill_temperature: Annotated[Optional[float], typer.Option(
        help="Softmax temperature of the teacher term (default 2).")] = None,
    composed_shares: Annotated[Optional[str], typer.Option(
        help="Composed train rows as shares of the train rows to try, e.g. '0.5,1' (each "
             "trains a model; validation picks). Default: the dataset recipe.")] = None,
    segment_shares: Annotated[Optional[str], typer.Option(
        help="Parts of routine train tickets added as routine rows, as shares of the train "
             "rows, e.g. '0,0.5' (with --teacher they get its soft targets too). Default: the "
             "dataset recipe.")] = None,
    shape_shares: Annotated[Optional[str], typer.Option(
        help="Shape copies (chat, e-mail, quoted thread) of train rows as shares of the train "
             "rows, e.g. '0,0.5' (each trains a model; validation picks). Default: the dataset "
             "recipe, else 0.")] = None,
    composed_generator: Annotated[Optional[str], typer.Option(
        help="Composed fixtures and train rows: intakegate-composed-v1 (space, line break, no "
             "punctuation) or intakegate-composed-v2 (those and chat: lowercase, no "
             "punctuation). Default: the dataset recipe, else v1.")] = None,
    shape_generator: Annotated[Optional[str], typer.Option(
        help="Shape fixtures in the receipt and the test report: intakegate-shapes-v1 (chat, "
             "e-mail, quoted thread of every validation ticket; positive copies required), or "
             "'none'. Default: the dataset recipe, else none.")] = None,
    bundles_dir: BundlesDirOpt = None,
    reports_dir: Annotated[Path, typer.Option(
        help="Where the bundle's report copies go: REPORTS_DIR/<dataset>/bundles/<version>/.")
    ] = RUN_REPORTS,
    activate_if_eligible: Annotated[bool, typer.Option("--activate/--no-activate")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle version.")] = False,
    validation_only: Annotated[bool, typer.Option(
        help="Candidate search: gate on validation, keep the test split closed.")] = False,
) -> None:
    """Fine-tune, choose the threshold on validation, gate, report on test once, write a bundle."""
    _setup_logging()
    from intakegate.train.pipeline import summary_lines, train_bundle

    root = bundles_root(bundles_dir).path
    overrides = {"base_model": base_model, "objective": objective, "epochs": epochs,
                 "learning_rate": learning_rate, "batch_size": batch_size,
                 "batch_padding": batch_padding, "segment_objective": segment_objective,
                 "bag_segmentation": bag_segmentation,
                 "train_max_length": train_max_length, "label_smoothing": label_smoothing,
                 "class_weighting": class_weighting, "seed": seed, "device": device,
                 "teacher": str(teacher) if teacher else None,
                 "distill_weight": distill_weight, "distill_temperature": distill_temperature,
                 "composed_generator": composed_generator,
                 "shape_generator": None if shape_generator is None else
                 ("" if shape_generator.strip().lower() == "none" else shape_generator)}
    if student_layers is not None:
        try:
            overrides["student_layers"] = tuple(int(i) for i in student_layers.split(","))
        except ValueError:
            raise typer.BadParameter("comma-separated layer indices, e.g. 1,3,5",
                                     param_hint="--student-layers") from None
    if blend_weights is not None:
        overrides["blend_weights"] = (() if blend_weights.strip().lower() == "none" else
                                      _numbers(blend_weights, "--blend-weights",
                                               " or 'none'"))
    if composed_shares is not None:
        overrides["composed_shares"] = _numbers(composed_shares, "--composed-shares")
    if segment_shares is not None:
        overrides["segment_shares"] = _numbers(segment_shares, "--segment-shares")
    if shape_shares is not None:
        overrides["shape_shares"] = _numbers(shape_shares, "--shape-shares")
    result = train_bundle(dataset, label_guide=str(label_guide) if label_guide else None,
                          adjudication=str(adjudication) if adjudication else None,
                          bundles_root=root, bundle_version=bundle_version,
                          reports_root=reports_dir,
                          overrides={k: v for k, v in overrides.items() if v is not None},
                          force=force, open_test=not validation_only)
    for line in summary_lines(result):
        typer.echo(line)
    if activate_if_eligible and result.gate.eligible:
        from intakegate.bundle import activate

        activate(root, result.bundle_dir.parent.name, result.bundle_dir.name)
        typer.echo(f"activated {result.bundle_dir.parent.name}/{result.bundle_dir.name}")
    raise typer.Exit(ExitCode.OK if result.gate.eligible else ExitCode.HELD)


def _numbers(value: str, option: str, alternative: str = "") -> tuple[float, ...]:
    """A comma-separated list of numbers, or a usage error naming the option."""
    try:
        return tuple(float(w) for w in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"a comma-separated list of numbers{alternative}",
                                 param_hint=option) from None
