"""Stage commands, registered by their own stages and imported only when one is run.

`intakegate --help` lists every command from the table below without importing a stage (so
neither the runtime nor torch loads); running `intakegate route ...` imports only
`intakegate.runtime.cli_commands` and asks it to `register` its commands. A test checks that
each short help here matches the stage's own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class Stage:
    module: str
    commands: tuple[tuple[str, str], ...]  # (name, short help), in help order


STAGES = (
    Stage("intakegate.train.cli_commands", (
        ("baselines", "Fit the keyword rule and TF-IDF + LR on train; report them on "
                      "validation."),
        ("train", "Fine-tune, choose the threshold on validation, gate, report on test once, "
                  "write a bundle."),
    )),
    Stage("intakegate.export.cli_commands", (
        ("export", "Export ONNX and Core ML artifacts into a bundle; re-gate each on the exact "
                   "receipt."),
    )),
    Stage("intakegate.runtime.cli_commands", (
        ("route", "Route tickets: JSONL in (id, text) gives JSONL out, one line per line, in "
                  "order."),
        ("serve", "Keep one router loaded and answer protocol v1 on stdin/stdout (no port)."),
        ("shadow", "Shadow traffic: compare proposed routes with human decisions."),
    )),
    Stage("intakegate.benchmarks.cli_commands", (
        ("bench", "Latency, throughput, cold start and memory per artifact, beside each "
                  "artifact's receipt."),
    )),
)
_BY_NAME = {name: stage for stage in STAGES for name, _ in stage.commands}
_HELP = {name: text for stage in STAGES for name, text in stage.commands}


def load_stage(stage: Stage) -> dict[str, Any]:
    """Import a stage and collect the click commands its `register(app)` adds."""
    module = importlib.import_module(stage.module)
    scratch = typer.Typer()
    module.register(scratch)
    group = typer.main.get_group(scratch)
    return dict(group.commands)  # type: ignore[attr-defined]


class StageGroup(TyperGroup):
    """The root group: own commands plus the stages' commands, loaded on first use."""

    _resolving = False

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(self.commands)
        return names + [n for n in _BY_NAME if n not in self.commands]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        stage = _BY_NAME.get(cmd_name)
        if stage is None:
            return None
        if not self._resolving:  # help listing: a stand-in with the stage's short help
            return TyperCommand(cmd_name, help=_HELP[cmd_name], short_help=_HELP[cmd_name])
        for name, command in load_stage(stage).items():
            self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        self._resolving = True
        try:
            return super().resolve_command(ctx, args)
        finally:
            self._resolving = False
