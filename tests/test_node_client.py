"""The Node.js client (clients/node) against the real server and a tiny bundle built here:
its integration tests run under `node --test` (skipped when Node is not installed; `.ci/run`
installs it and also runs the client's own tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime_helpers import cached_onnx_bundle

NODE = shutil.which("node")
CLIENT = Path(__file__).resolve().parents[1] / "clients" / "node"


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_client_against_the_real_server(onnx_bundle: Path) -> None:
    cli = Path(sys.executable).with_name("intakegate")
    env = {**os.environ, "INTAKEGATE_BIN": str(cli), "INTAKEGATE_TEST_BUNDLE": str(onnx_bundle)}
    proc = subprocess.run([NODE, "--test", str(CLIENT / "tests" / "integration.test.js")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# pass 2" in proc.stdout and "# skipped 0" in proc.stdout
