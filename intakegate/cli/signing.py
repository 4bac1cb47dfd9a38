"""`intakegate bundles keygen | sign | verify`: the publisher's side of signed bundles.

Kept apart from `intakegate/cli.py` so the commands move as one unit; `register` adds them to the
`bundles` group. Exit codes: 0 done / verified, 1 the bundle is refused, 2 bad input.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_REFUSED = 1
BundlesRoot = Annotated[Path, typer.Option("--bundles-dir", envvar="INTAKEGATE_BUNDLES",
                                           help="Root folder of the bundles.")]


def _bundle_dir(bundle: str, bundles_dir: Path) -> Path:
    from intakegate.bundle import resolve_bundle

    return resolve_bundle(bundle, bundles_dir).path


def keygen(out: Annotated[Path, typer.Option("--out", help="Folder for the key pair.")],
           force: Annotated[bool, typer.Option(help="Replace an existing key pair.")] = False
           ) -> None:
    """Create an Ed25519 publisher key pair: a private key (keep it secret, mode 0600) and a
    public key (`*.pub.pem`) that clients pass as --trusted-key."""
    from intakegate.bundle.signing import generate_keypair, key_id, load_public_key

    private, public = generate_keypair(out, force=force)
    typer.echo(f"private key: {private}")
    typer.echo(f"public key: {public}")
    typer.echo(f"key id: {key_id(load_public_key(public))}")


def sign(bundle: Annotated[str, typer.Argument(help="A bundle directory, or a dataset name "
                                                    "whose ACTIVE bundle is signed.")],
         key: Annotated[Path, typer.Option("--key", help="The private key file.")],
         expires_in_days: Annotated[Optional[float], typer.Option(
             help="After this many days the signature expires and the bundle fails closed "
                  "(bundle_stale).")] = None,
         sequence: Annotated[Optional[int], typer.Option(
             help="Signed release sequence (default: the signing time in seconds).")] = None,
         bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """Verify a bundle and sign its manifest digest (writes manifest.sig beside it)."""
    from intakegate.bundle.signing import sign_bundle

    expires = None
    if expires_in_days is not None:
        if not expires_in_days > 0:
            raise typer.BadParameter("must be positive", param_hint="--expires-in-days")
        expires = (_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
                   + _dt.timedelta(days=expires_in_days))
    path = sign_bundle(_bundle_dir(bundle, bundles_dir), key, expires, sequence)
    typer.echo(f"signed: {path}" + (f" (expires {expires.isoformat()})" if expires else ""))


def verify(bundle: Annotated[str, typer.Argument(help="A bundle directory or a dataset name.")],
           trusted_key: Annotated[list[Path], typer.Option(
               "--trusted-key", help="A trusted public key (repeat for several).")],
           bundles_dir: BundlesRoot = Path("bundles")) -> None:
    """Check the signature (trusted key, digest, expiry) and then every file of the bundle."""
    from intakegate.bundle import BundleError
    from intakegate.bundle.signing import trust_policy, verify_signed_bundle

    try:
        trust = trust_policy(trusted_key)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    assert trust is not None  # at least one key is required by the option
    try:
        statement = verify_signed_bundle(_bundle_dir(bundle, bundles_dir), trust)
    except BundleError as exc:
        typer.echo(f"refused: {exc}")
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"verified: {statement.dataset}/{statement.bundle_version} manifest_sha256="
               f"{statement.manifest_sha256} key_id={statement.key_id} "
               f"expires_at={statement.expires_at or 'never'}")


def register(bundles_app: typer.Typer) -> None:
    bundles_app.command("keygen")(keygen)
    bundles_app.command("sign")(sign)
    bundles_app.command("verify")(verify)
