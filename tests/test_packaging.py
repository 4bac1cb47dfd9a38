"""Packaging: the runtime stays torch-free and nothing is installed under bare names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "optimum", "coremltools", "sklearn")


def test_runtime_import_pulls_no_heavy_library() -> None:
    code = ("import sys, intakegate.runtime, intakegate.receipt.gate, intakegate.routing; "
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


# What a process that routes from a bundle must never load: the training and export stacks,
# plotting, the python `onnx` package (onnxruntime reads the bytes), schema validation, the CLI
# framework (typer pulls pydantic), and the stages the runtime must not depend on.
NOT_FOR_ROUTING = (*HEAVY, "matplotlib", "onnx", "jsonschema", "pydantic", "typer", "PySide6",
                   "intakegate.train", "intakegate.export", "intakegate.benchmarks",
                   "intakegate.contract", "intakegate.receipt.threshold")


def test_import_of_the_runtime_package_defers_the_router() -> None:
    """`import intakegate.runtime` is cheap (PEP 562): numpy, onnxruntime and tokenizers load
    only when `Router` (or another public name) is first used."""
    code = ("import sys, intakegate.runtime as rt; "
            "before = [m for m in ('numpy', 'onnxruntime', 'tokenizers', 'intakegate.bundle') "
            "if m in sys.modules]; rt.Router; print(before, 'intakegate.runtime.router' in "
            "sys.modules, set(rt.__all__) <= set(dir(rt)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True True"


def test_routing_from_a_bundle_loads_no_stage_or_heavy_library(
        tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A new process that loads an onnx-int8 bundle and routes a ticket imports only the
    runtime's own dependencies (the cold start a desktop client pays at every launch)."""
    from tests.runtime_helpers import cached_onnx_bundle

    bundle = cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")
    code = ("import json, sys\nfrom intakegate.runtime import Router\n"
            "r = Router.load(sys.argv[1], artifact='onnx-int8', device='cpu')\n"
            "d = r.route('FastShip delivered after the return window closed.')\n"
            f"print(json.dumps([r.ready, d.reason.value, [m for m in {NOT_FOR_ROUTING!r} "
            "if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True,
                         text=True, check=True)
    ready, reason, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert ready and reason in ("threshold", "below_threshold"), out.stderr[-500:]
    assert loaded == [], loaded


def test_every_exported_runtime_name_loads_lazily() -> None:
    """`__all__` is a literal list for linters; it must name exactly the lazy table."""
    import intakegate.runtime as runtime

    assert sorted(runtime.__all__) == sorted(runtime._WHERE)
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None
