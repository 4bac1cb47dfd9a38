"""The CLI layer: one root app, lazy stage commands (so `--help` imports no runtime and no
torch), `--version`, `python -m intakegate`, documented exit codes, and one-line errors for a
bad argument, a missing extra or a bundle that is not found (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from intakegate import __version__
from intakegate.bundle.root import resolve_root
from intakegate.cli import app
from intakegate.cli.errors import run
from intakegate.cli.exits import ExitCode
from intakegate.cli.stages import STAGES, load_stage

LIGHT = ("intakegate.runtime", "intakegate.train", "intakegate.export", "intakegate.benchmarks",
         "numpy", "onnxruntime", "tokenizers", "torch")


def py(*code_or_args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_help_lists_every_stage_without_importing_one() -> None:
    code = ("import sys, io, contextlib; from intakegate.cli import app; "
            "from intakegate.cli.errors import run\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): rc = run(app, ['--help'])\n"
            f"print(rc, sorted(m for m in sys.modules if m.startswith({LIGHT!r})))\n"
            "print(buf.getvalue())")
    out = py("-c", code)
    first, _, text = out.stdout.partition("\n")
    assert first == "0 []", out.stdout + out.stderr
    for stage in STAGES:
        for name, _ in stage.commands:
            assert name in text
    assert "Exit codes" in text


def test_stage_short_help_matches_the_stage_itself() -> None:
    for stage in STAGES:
        commands = load_stage(stage)
        for name, text in stage.commands:
            assert commands[name].get_short_help_str(300) == text, name


def test_version_and_python_dash_m() -> None:
    out = py("-m", "intakegate", "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"intakegate {__version__}"
    assert py("-m", "intakegate.cli", "--version").stdout.strip() == f"intakegate {__version__}"


@pytest.mark.parametrize("args, code, words", [
    (["route", "--nope", "x"], ExitCode.BAD_INPUT, "No such option"),
    (["rout"], ExitCode.BAD_INPUT, "No such command"),
    (["serve", "b", "--stdio", "--workers", "0"], ExitCode.BAD_INPUT, "--workers"),
    (["bundles", "path", "nothere", "--bundles-dir", "/nonexistent"], ExitCode.BAD_INPUT,
     "looked for nothere"),
    (["gate", "a.json", "b.json"], ExitCode.BAD_INPUT, "pass --receipt"),
])
def test_bad_arguments_are_one_line_errors(args: list[str], code: int, words: str) -> None:
    out = py("-m", "intakegate", *args)
    assert out.returncode == code, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_extra_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
            "from intakegate.cli import main\n"
            f"main(['train', '--base-model', 'tiny', '--bundles-dir', {str(tmp_path)!r}])")
    out = py("-c", code)
    assert out.returncode == ExitCode.BAD_INPUT
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 'torch' is needed here but is not installed. Install it with: "
                      "pip install 'intakegate[train]'"]
    assert "Traceback" not in out.stderr


def test_an_internal_error_is_one_line_and_exit_4(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    broken = typer.Typer()

    @broken.command()
    def boom() -> None:
        raise ZeroDivisionError("oops")

    @broken.command()
    def other() -> None:
        """A second command keeps `boom` a subcommand."""

    monkeypatch.delenv("INTAKEGATE_DEBUG", raising=False)
    assert run(broken, ["boom"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("error: internal error: ZeroDivisionError: oops")
    assert "Traceback" not in err


def test_bundles_root_order() -> None:
    assert resolve_root("x", {"INTAKEGATE_BUNDLES": "y"}).path == Path("x")
    assert resolve_root(None, {"INTAKEGATE_BUNDLES": "y"}).source == "INTAKEGATE_BUNDLES"
    assert resolve_root(None, {"INTAKEGATE_BUNDLES": ""}).path == Path("bundles")
    hint = resolve_root(None, {}).miss_hint("refund-intake")
    assert "ACTIVE" in hint and "--bundles-dir" in hint


def test_runtime_exit_codes_agree_with_the_cli_table() -> None:
    from intakegate.runtime import cli_commands

    assert cli_commands.EXIT_BAD_INPUT == ExitCode.BAD_INPUT
    assert cli_commands.EXIT_NOT_READY == ExitCode.NOT_READY
    assert app.info.cls is not None


@pytest.mark.parametrize("args, default", [
    (["train", "--help"], "[default: runs/reports]"),
    (["baselines", "--help"], "[default: runs/reports]"),
    (["data", "check", "--help"], "[default: runs/reports]"),
    (["bench", "--help"], "default runs/bench/<device-name>/<bundle_version>/"),
])
def test_run_outputs_default_to_runs(args: list[str], default: str) -> None:
    """Run outputs go under runs/ (ignored by git), never into the committed reports/ or
    benchmarks/results/ unless asked; each --help names that default."""
    out = subprocess.run([sys.executable, "-m", "intakegate", *args], check=False,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert default in text, out.stdout
    assert "benchmarks/results" not in text and "[default: reports]" not in text


def test_bench_writes_under_runs_by_default() -> None:
    from intakegate.benchmarks import machine
    from intakegate.benchmarks.runner import _out_dir

    assert _out_dir(None, "cpu", "v1") == Path("runs", "bench", machine.device_name("cpu"), "v1")
    assert _out_dir(Path("elsewhere"), "cpu", "v1") == Path("elsewhere")
