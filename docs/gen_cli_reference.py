"""Write the CLI reference page, docs/reference/cli.md, from the `intakegate` typer app.

    .venv/bin/python docs/gen_cli_reference.py                  # rewrite docs/reference/cli.md
    .venv/bin/python docs/gen_cli_reference.py --output FILE    # write it elsewhere
    .venv/bin/python docs/gen_cli_reference.py --options-json   # every command and its options

Why not `typer intakegate.cli.app utils docs` alone: the root group (intakegate/cli/stages.py)
imports a stage's commands only when one of them runs. For `--help`, and so for typer's tool, it
lists stand-ins that carry the short help and no arguments or options, so typer's tool renders
baselines, train, export, route, serve, shadow and bench as bare names. This script first loads
every stage's commands into the click group (each stage's `cli_commands` module is light: no
torch, no runtime), then renders the whole tree with typer's own Markdown renderer
(`typer.cli.get_docs_for_click`), as plain text. tests/test_docs.py regenerates the page and
fails when the committed one differs, and checks every `intakegate ...` command line in the
README and the docs against `--options-json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "reference" / "cli.md"
HEADER = ("<!-- Generated from the typer app by `.venv/bin/python docs/gen_cli_reference.py`. "
          "Do not edit by hand. -->\n\n")


def full_group() -> Any:
    """The root click group with every stage's commands loaded."""
    import typer

    from intakegate.cli import app
    from intakegate.cli.stages import STAGES, load_stage

    group = typer.main.get_command(app)
    for stage in STAGES:
        for name, command in load_stage(stage).items():
            group.commands.setdefault(name, command)  # type: ignore[attr-defined]
    return group


def options() -> dict[str, Any]:
    """Every command path (`""` for the root, `"bundles sign"`) with its subcommands and the
    option names it accepts (both spellings of a flag pair, short names included)."""
    out: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        names = sorted({*(n for p in command.params for n in (*p.opts, *p.secondary_opts)
                          if n.startswith("-")), "--help"})
        subcommands = sorted(getattr(command, "commands", {}))
        out[path] = {"options": names, "commands": subcommands}
        for name in subcommands:
            walk(command.commands[name], f"{path} {name}".strip())

    walk(full_group(), "")
    return out


def render() -> str:
    """The reference page: every command, with its arguments and options."""
    import typer
    from typer.cli import get_docs_for_click

    group = full_group()
    ctx = typer.Context(group, info_name="intakegate")
    body = get_docs_for_click(obj=group, ctx=ctx, name="intakegate", title="CLI reference")
    return HEADER + body.strip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=PAGE, help=f"default: {PAGE}")
    parser.add_argument("--options-json", action="store_true",
                        help="print every command and its options as JSON instead")
    args = parser.parse_args()
    if args.options_json:
        print(json.dumps(options(), indent=1, sort_keys=True))
        return
    args.output.write_text(render(), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
