"""Export commands for the `intakegate` CLI (export; gate BUNDLE). Light imports only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_ARTIFACTS = "onnx-fp32,onnx-int8,onnx-int8-vnni,coreml-fp16,coreml-int8"


def register(app: typer.Typer) -> None:
    """Add the export stage's commands to the main app."""
    app.command("export")(export_command)


def export_command(
    bundle: Annotated[str, typer.Argument(help="A bundle directory, or a dataset name (its "
                                               "active bundle).")],
    artifacts: Annotated[str, typer.Option(
        help="Comma-separated artifacts to export.")] = DEFAULT_ARTIFACTS,
    bundles_dir: Annotated[Path, typer.Option("--bundles-dir", envvar="INTAKEGATE_BUNDLES",
                                              help="Root folder of the bundles.")] = Path(
        "bundles"),
    measurement_only: Annotated[bool, typer.Option(
        "--measurement-only",
        help="Export a held model anyway, for `intakegate bench` only: every artifact is "
             "re-gated and recorded held (model_held), so the router refuses it.")] = False,
) -> None:
    """Export ONNX and Core ML artifacts into a bundle; re-gate each on the exact receipt.

    The bundle is verified first (a tampered bundle is refused); a bundle whose torch-fp32
    reference is held is not exported, unless `--measurement-only`: then its artifacts are
    exported and re-gated, each is recorded held whatever its own run says (`model_held:`; the
    run's verdict stays in its drift report), and only `intakegate bench` can time them. Each
    artifact is scored over the frozen validation receipt by its own runtime, and one gate
    line is printed per artifact. An int8 artifact first tries its faster recipe (every MatMul
    dynamic) and keeps it only when that receipt gates as well as the model's own; otherwise it
    is the two-step recipe (`export_settings.recipe_search` records the choice).

    Exit 0 when no artifact is held; exit 1 naming each held artifact and its reason.

    Core ML predictions run only on macOS. Elsewhere the Core ML artifacts are re-gated by the
    numpy reference executor of the package's ML Program (gated_with mil-reference-numpy) and
    can be eligible or held like any artifact; Apple's runtime on the target device stays the
    final word, so re-gate on macOS (`intakegate gate BUNDLE --artifact coreml-int8 --record`)
    before relying on one there. Without coremltools they stay pending_regate: reported, but not
    by itself exit status 1; `intakegate gate BUNDLE` reports them `not_checked: export` (exit 5).

    Exit 2 on a tampered, held or unreadable bundle, or a failed conversion (nothing written).
    """
    import logging

    from intakegate.bundle import Status, resolve_bundle
    from intakegate.cli import _setup_logging
    from intakegate.export.artifacts import EXPORTABLE, parse_artifacts
    from intakegate.export.coreml_export import CoreMLExportError
    from intakegate.export.mil_reference import MIL_REFERENCE
    from intakegate.export.onnx_export import OnnxExportError
    from intakegate.export.pipeline import export_bundle

    _setup_logging()
    names = parse_artifacts([artifacts], EXPORTABLE)
    if not names:
        raise typer.BadParameter("name at least one artifact", param_hint="--artifacts")
    bundle_dir = resolve_bundle(bundle, bundles_dir).path
    logging.getLogger(__name__).info("exporting %s from %s", ",".join(a.value for a in names),
                                     bundle_dir)
    try:
        result = export_bundle(bundle_dir, names, measurement_only=measurement_only)
    except (CoreMLExportError, OnnxExportError) as exc:
        typer.echo(f"error: {exc}\nnothing was written to {bundle_dir}; to export the other "
                   "artifacts alone, name them with --artifacts", err=True)
        raise typer.Exit(2) from None
    for gate in result.gates:
        typer.echo(gate.line())
    held = [g for g in result.gates if g.status is Status.HOLD]
    pending = [g for g in result.gates if g.status is Status.PENDING_REGATE]
    for gate in pending:
        typer.echo(f"note: {gate.bundle_version}/{gate.artifact.value} is not shippable until it "
                   f"is re-gated where Core ML runs ({gate.reason})", err=True)
    for gate in result.gates:
        if gate.gated_with == MIL_REFERENCE:
            typer.echo(f"note: {gate.bundle_version}/{gate.artifact.value} was gated by the numpy "
                       "reference executor, not by Core ML; Apple's runtime on the target "
                       "device is the final word (re-gate on macOS)", err=True)
    for gate in held:
        typer.echo(f"error: {gate.bundle_version}/{gate.artifact.value} is held: {gate.reason}",
                   err=True)
    typer.echo(f"bundle: {result.bundle_dir} ({result.seconds:.0f}s)")
    raise typer.Exit(1 if held else 0)
