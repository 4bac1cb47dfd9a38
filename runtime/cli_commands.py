"""Runtime commands for the `intakegate` CLI (route, serve, shadow). Light imports only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from intakegate.cli.options import BundlesDirOpt, bundles_root

EXIT_BAD_INPUT = 2
EXIT_NOT_READY = 3
BundleArg = Annotated[str, typer.Argument(help="A bundle directory, or a dataset name whose "
                                               "ACTIVE bundle is used.")]
ArtifactOpt = Annotated[str, typer.Option(
    help="onnx-int8 | onnx-int8-vnni | onnx-fp32 | torch-fp32")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | mps")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Inference threads (default: min(4, "
                                                        "CPU count)).")]
TimeoutOpt = Annotated[Optional[float], typer.Option(
    "--timeout", help="Seconds per inference; a late result is discarded and the ticket goes to "
                      "human_review_now (timeout).")]
ShadowOpt = Annotated[Optional[Path], typer.Option(
    "--shadow-log", help="Append every decision to this SQLite shadow log.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log more (stderr).")]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify-on-device", help="On a CPU family the int8 receipt does not cover, run the full "
                               "receipt here once (a pack made --with-fixtures), cache the "
                               "result, and route only if it passed.")]
CacheDirOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Where --verify-on-device caches its result (default: the user cache "
                        "directory).")]
TrustedKeyOpt = Annotated[Optional[list[Path]], typer.Option(
    "--trusted-key", help="A trusted publisher public key (repeat for several). Once given, an "
                          "unsigned bundle, a bad signature, an unknown key or an expired "
                          "signature fails closed.")]


def _logging(verbose: bool) -> None:
    import logging
    import sys

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S")


def _load(bundle: str, artifact: str, device: str, threads: Optional[int],
          bundles_dir: Optional[Path], timeout: Optional[float], shadow_log: Optional[Path],
          live: bool = False, trusted_keys: Optional[list[Path]] = None,
          verify_on_device: bool = False, cache_dir: Optional[Path] = None) -> object:
    """Build the router; a device that is not there or a bad option exits 2 with the fix.
    A bundle that is not found leaves the router fail-closed and says where it looked."""
    from intakegate.errors import MissingExtraError
    from intakegate.runtime.onnx_backend import DeviceUnavailable

    root = bundles_root(bundles_dir)
    options = {"threads": threads, "bundles_root": root.path, "timeout_s": timeout,
               "shadow_log": shadow_log, "trusted_keys": trusted_keys or None,
               "verify_on_device": verify_on_device, "cache_dir": cache_dir}
    try:
        if live:
            from intakegate.runtime.live import LiveRouter

            router: object = LiveRouter(bundle, artifact, device, **options)
        else:
            from intakegate.runtime.router import Router

            router = Router.load(bundle, artifact, device, **options)
    except (DeviceUnavailable, MissingExtraError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if not_found(router):
        typer.echo(f"error: bundle_not_found: {root.miss_hint(bundle)}", err=True)
    return router


def not_found(router: object) -> bool:
    detail = router.health().get("detail")  # type: ignore[attr-defined]
    return isinstance(detail, str) and detail.startswith("bundle_not_found")


def register(app: typer.Typer) -> None:
    """Add the runtime's commands to the main app."""

    @app.command("route")
    def route_cmd(
        bundle: BundleArg,
        texts: Annotated[Optional[list[str]], typer.Argument(help="Ticket texts.")] = None,
        input_path: Annotated[Optional[Path], typer.Option(
            "--input", help="JSONL with id and text per line ('-' for stdin).")] = None,
        artifact: ArtifactOpt = "onnx-int8",
        device: DeviceOpt = "auto",
        threads: ThreadsOpt = None,
        json_out: Annotated[bool, typer.Option("--json", help="JSONL answers for TEXT "
                                                             "arguments.")] = False,
        bundles_dir: BundlesDirOpt = None,
        timeout: TimeoutOpt = None,
        shadow_log: ShadowOpt = None,
        verbose: VerboseOpt = False,
        trusted_key: TrustedKeyOpt = None,
        verify_on_device: VerifyOpt = False,
        cache_dir: CacheDirOpt = None,
    ) -> None:
        """Route tickets: JSONL in (id, text) gives JSONL out, one line per line, in order.

        Exit 0 when the router is ready, 3 when it is in fail-closed mode (every answer is
        human_review_now with the load failure's reason), 2 on bad options.
        """
        import sys

        _logging(verbose)
        if bool(texts) == (input_path is not None):
            typer.echo("error: give TEXT arguments or --input FILE.jsonl (not both)", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        router = _load(bundle, artifact, device, threads, bundles_dir, timeout, shadow_log,
                       trusted_keys=trusted_key, verify_on_device=verify_on_device,
                       cache_dir=cache_dir)
        if input_path is not None:
            from intakegate.runtime.serve import route_lines

            def write(line: str) -> None:
                sys.stdout.write(line + "\n")

            if str(input_path) == "-":
                route_lines(router, sys.stdin.buffer, write)
            else:
                try:
                    handle = input_path.open("rb")
                except OSError as exc:
                    typer.echo(f"error: {input_path}: {exc.strerror}", err=True)
                    raise typer.Exit(EXIT_BAD_INPUT) from None
                with handle:
                    route_lines(router, handle, write)
            sys.stdout.flush()
        else:
            from intakegate.runtime.serve import dumps

            decisions = router.route_batch(list(texts or []),  # type: ignore[attr-defined]
                                           list(range(1, len(texts or []) + 1)))
            for d in decisions:
                if json_out:
                    typer.echo(dumps(d.to_wire()))
                else:
                    score = "none" if d.score is None else f"{d.score:.4f}"
                    thr = "none" if d.threshold is None else f"{d.threshold:.4f}"
                    typer.echo(f"{d.route.value} reason={d.reason.value} score={score} "
                               f"threshold={thr} bundle={d.bundle_version} "
                               f"artifact={d.artifact} device={d.device}"
                               + (f" segment={d.segment.kind}[{d.segment.start}:"
                                  f"{d.segment.end}]" if d.segment else "")
                               + (f" detail={d.detail}" if d.detail else ""))
        if not router.ready:  # type: ignore[attr-defined]
            raise typer.Exit(EXIT_NOT_READY)

    @app.command("serve")
    def serve_cmd(
        bundle: BundleArg,
        stdio: Annotated[bool, typer.Option("--stdio", help="Answer JSONL requests on stdin "
                                                            "and stdout.")] = False,
        artifact: ArtifactOpt = "onnx-int8",
        device: DeviceOpt = "auto",
        threads: ThreadsOpt = None,
        bundles_dir: BundlesDirOpt = None,
        timeout: TimeoutOpt = None,
        shadow_log: ShadowOpt = None,
        workers: Annotated[int, typer.Option(
            min=1, max=64, help="Requests handled at once; above 1, replies come as they "
                                "finish, tagged by id.")] = 1,
        max_line_bytes: Annotated[int, typer.Option(
            min=1024, help="Longest request line; longer ones get a line_too_long error."
        )] = 1 << 20,
        verbose: VerboseOpt = False,
        trusted_key: TrustedKeyOpt = None,
        verify_on_device: VerifyOpt = False,
        cache_dir: CacheDirOpt = None,
    ) -> None:
        """Keep one router loaded and answer protocol v1 on stdin/stdout (no port).

        The first line out is a `ready` event (protocol version, bundle version, manifest
        digest, artifact, device, threshold; or ready false with reason and detail). Then one
        reply per request line, each with `op` and the request `id`: route (`text`, or
        `tickets` for a list), health, reload (the reason on failure; the old bundle keeps
        serving), shutdown. Unknown ops and malformed lines get an `error` reply. The full
        protocol: docs/stdio-protocol.md and intakegate/schemas/stdio-v1.json.

        Exit 0 when stdin closes or after shutdown with every request answered; 1 when
        stdout was closed early or after a `fatal` event; 2 on bad options.
        """
        import sys

        _logging(verbose)
        if not stdio:
            typer.echo("error: only --stdio is supported (a desktop client embeds the router "
                       "through a pipe, not a port)", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        from intakegate.runtime.stdio import ServeOptions, StdioServer

        live = _load(bundle, artifact, device, threads, bundles_dir, timeout, shadow_log,
                     live=True, trusted_keys=trusted_key, verify_on_device=verify_on_device,
                     cache_dir=cache_dir)
        root = bundles_root(bundles_dir)
        missed = not_found(live)
        server = StdioServer(live, sys.stdin.buffer, sys.stdout.buffer, ServeOptions(
            workers, max_line_bytes, root.places_for(bundle) if missed else (),
            root.miss_hint(bundle) if missed else None))
        raise typer.Exit(server.run())

    shadow_app = typer.Typer(no_args_is_help=True, help="Shadow traffic: compare proposed "
                                                        "routes with human decisions.")
    app.add_typer(shadow_app, name="shadow")

    @shadow_app.command("report")
    def shadow_report_cmd(
        log: Annotated[Path, typer.Argument(help="The SQLite shadow log.")],
        decisions: Annotated[Path, typer.Option("--decisions", help="Human decisions JSONL "
                                                                    "(id, gold_route, slice).")],
        bundle: Annotated[Optional[str], typer.Option(
            help="Read the floors from this bundle instead of the log.")] = None,
        bundles_dir: BundlesDirOpt = None,
    ) -> None:
        """Missed-escalation rate per required slice against the shadow-monitor plan's floors.

        Exit 1 with "rollback recommended" when a required slice misses its floor.
        """
        from intakegate.runtime.shadow import render_report, shadow_report

        override = None
        if bundle is not None:
            from intakegate.bundle import resolve_bundle, verify_bundle
            from intakegate.runtime.shadow import bundle_floors

            root = bundles_root(bundles_dir).path
            override = bundle_floors(verify_bundle(resolve_bundle(bundle, root).path))
        report = shadow_report(log, decisions, override)
        for line in render_report(report):
            typer.echo(line)
        raise typer.Exit(1 if report.rollback_recommended else 0)
