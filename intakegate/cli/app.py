"""The root `intakegate` app: its own commands (gate, data, bundles), `--version`, and the
stages' commands, which load lazily (see `stages`). Heavy imports stay inside commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate import __version__
from intakegate.cli.errors import run
from intakegate.cli.exits import EPILOG, ExitCode
from intakegate.cli.options import BundlesDirOpt, bundles_root
from intakegate.cli.signing import register as _register_signing
from intakegate.cli.stages import StageGroup
from intakegate.errors import InputError

app = typer.Typer(cls=StageGroup, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, epilog=EPILOG,
                  help="Route support tickets locally: human_review_now or guarded_agent.")
data_app = typer.Typer(no_args_is_help=True, help="Load, check and describe datasets.")
bundles_app = typer.Typer(no_args_is_help=True, help="List, activate and roll back bundles.")
app.add_typer(data_app, name="data")
app.add_typer(bundles_app, name="bundles")
_register_signing(bundles_app)

# Kept for callers of the old single-module CLI.
EXIT_HELD = ExitCode.HELD
EXIT_BAD_INPUT = ExitCode.BAD_INPUT


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"intakegate {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Route support tickets locally: human_review_now or guarded_agent."""


@app.command()
def gate(
    paths: Annotated[list[Path], typer.Argument(help="RUN.json files (with --receipt), or one "
                                                     "BUNDLE directory or dataset name.")],
    receipt: Annotated[Optional[Path], typer.Option(help="Frozen receipt spec JSON.")] = None,
    artifact: Annotated[Optional[list[str]], typer.Option(
        help="With BUNDLE: the artifact(s) to re-gate (default: every artifact).")] = None,
    record: Annotated[bool, typer.Option(
        "--record", help="With BUNDLE: write the results into a new manifest (ACTIVE is not "
                         "re-pinned; a signature must be renewed).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With BUNDLE: one JSON report.")
                       ] = False,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="With BUNDLE: tickets scored at once (default: one per core where the "
                    "artifact's runtime allows it); the scores do not depend on it.")] = None,
    bundles_dir: BundlesDirOpt = None,
) -> None:
    """Gate runs against a frozen receipt, or re-gate a bundle's artifacts; one line each.

    A bundle is only read unless --record. Exit 0 when every run or artifact is eligible, 1 when
    any is held, 2 on unreadable input, 5 when none is held but some could not be checked
    (a missing extra).
    """
    if receipt is None:
        if len(paths) != 1:
            raise InputError("pass --receipt SPEC.json with RUN.json files, or exactly one BUNDLE")
        from intakegate.export.regate import gate_bundle_command

        raise typer.Exit(gate_bundle_command(paths[0], artifact or [],
                                             bundles_root(bundles_dir).path, record, as_json,
                                             workers))
    from intakegate.receipt.gate import gate_files

    results = gate_files(receipt, paths)
    for result in results:
        typer.echo(result.line())
    raise typer.Exit(ExitCode.OK if all(r.eligible for r in results) else ExitCode.HELD)


@data_app.command("check")
def data_check(
    dataset: Annotated[str, typer.Argument(help="refund-intake | banking77 | dataset.json | "
                                                "PATH.jsonl")],
    label_guide: Annotated[Optional[Path], typer.Option(help="Label guide JSON.")] = None,
    adjudication: Annotated[Optional[Path], typer.Option(help="Adjudication JSON.")] = None,
    out: Annotated[Path, typer.Option(
        help="Where to write the manifest and cards: OUT/<dataset>/.")] = Path("runs", "reports"),
) -> None:
    """Validate a dataset, freeze its split and write the split manifest, label guide and data card."""
    from intakegate.contract.datacard import render_data_card
    from intakegate.contract.dataset import load_dataset
    from intakegate.contract.label_guide import render_label_guide_md
    from intakegate.contract.split import split_dataset
    from intakegate.jsonio import write_json

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


@bundles_app.command("list")
def bundles_list(bundles_dir: BundlesDirOpt = None) -> None:
    """Every bundle with its decision; `*` marks the active one."""
    from intakegate.bundle import list_bundles

    for b in list_bundles(bundles_root(bundles_dir).path):
        mark = "*" if b["active"] else " "
        arts = " ".join(f"{k}={v}" for k, v in b["artifacts"].items())
        typer.echo(f"{mark} {b['dataset']}/{b['bundle_version']}: decision={b['decision']} "
                   f"reason={b['reason']} threshold={b['threshold']} {arts}")


@bundles_app.command("path")
def bundles_path(name: str, bundles_dir: BundlesDirOpt = None) -> None:
    """The active bundle directory of a dataset."""
    from intakegate.bundle import BundleError, resolve_bundle

    root = bundles_root(bundles_dir)
    try:
        typer.echo(str(resolve_bundle(name, root.path).path))
    except BundleError as exc:
        raise InputError(f"bundle_not_found: {name}: {root.miss_hint(name)}") from exc


@bundles_app.command("pack")
def bundles_pack(
    bundle: Annotated[str, typer.Argument(help="A bundle directory or a dataset name.")],
    artifact: Annotated[str, typer.Option(help="The one artifact the pack ships.")],
    out: Annotated[Path, typer.Option("--out", help="The pack directory (must not exist).")],
    with_fixtures: Annotated[bool, typer.Option(
        "--with-fixtures", help="Include the receipt's fixture texts and the benchmark rows "
                                "(customer text), e.g. for --verify-on-device.")] = False,
    measurement_only: Annotated[bool, typer.Option(
        "--measurement-only", help="Also pack a held artifact, to time its cold start with "
                                   "`intakegate bench`; the pack stays held and routes every "
                                   "ticket to a person.")] = False,
    bundles_dir: BundlesDirOpt = None,
) -> None:
    """Write a deployable bundle with one eligible artifact, its tokenizer, lexical model,
    receipts, golden rows and documents; its manifest names the parent (`derived_from`)."""
    from intakegate.bundle import Artifact, resolve_bundle
    from intakegate.bundle.pack import pack_bundle

    try:
        chosen = Artifact(artifact)
    except ValueError:
        raise InputError(f"unknown artifact {artifact!r}; choose from "
                         f"{[a.value for a in Artifact]}", field="--artifact") from None
    result = pack_bundle(resolve_bundle(bundle, bundles_root(bundles_dir).path).path, chosen, out,
                         with_fixtures, measurement_only)
    mb = 1024 * 1024
    typer.echo(f"packed: {result.out} manifest_sha256={result.manifest_sha256} "
               f"derived_from={result.parent_sha256}")
    typer.echo(f"size: {result.size_bytes / mb:.2f} MB in {result.files} files (parent "
               f"{result.parent_size_bytes / mb:.2f} MB); fixture texts "
               f"{'included' if with_fixtures else 'left out'}; sign it with `intakegate "
               f"bundles sign {result.out} --key PRIVATE`")


@bundles_app.command("activate")
def bundles_activate(name: str, version: str, bundles_dir: BundlesDirOpt = None) -> None:
    """Verify a bundle and make it active (atomic pointer replace)."""
    from intakegate.bundle import activate

    pointer = activate(bundles_root(bundles_dir).path, name, version)
    typer.echo(f"active: {name}/{pointer.bundle_version} manifest_sha256="
               f"{pointer.manifest_sha256}")


@bundles_app.command("rollback")
def bundles_rollback(name: str, bundles_dir: BundlesDirOpt = None) -> None:
    """Re-activate the previous bundle, whole: model, tokenizer, threshold and fallback."""
    from intakegate.bundle import rollback

    pointer = rollback(bundles_root(bundles_dir).path, name)
    typer.echo(f"active: {name}/{pointer.bundle_version} (rolled back from "
               f"{pointer.rolled_back_from})")


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: one error handler, one line per error, documented exit codes."""
    sys.exit(run(app, argv))
