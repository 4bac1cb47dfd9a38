"""Packaging: the runtime stays torch-free and nothing is installed under bare names."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "optimum", "coremltools", "sklearn")


def test_runtime_import_pulls_no_heavy_library() -> None:
    code = ("import sys, intakegate.runtime, intakegate.gate, intakegate.routing; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_export_runtime_are_not_top_level_packages() -> None:
    code = ("import importlib.util as u; "
            "print([n for n in ('train', 'export', 'runtime') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_cli_help_is_fast_and_light() -> None:
    code = ("import sys; from intakegate import cli; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
