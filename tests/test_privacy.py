"""No silent files (issue 13; RELIABILITY P2): routing writes nothing outside the bundle and the
folder the user chose. onnxruntime's telemetry database under `~/.cache/Microsoft/...` was the
case found; the test runs every runtime path with an empty HOME and looks for anything new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime_helpers import cached_onnx_bundle, copy_bundle

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from intakegate.runtime import LiveRouter, Router
bundle, shadow = sys.argv[1], sys.argv[2]
for artifact in ("onnx-fp32", "onnx-int8", "torch-fp32"):
    router = Router.load(bundle, artifact=artifact, device="cpu", timeout_s=5.0,
                         shadow_log=shadow if artifact == "onnx-int8" else None)
    assert router.ready, router.health()
    router.route("Where is my package?")
    router.route_batch(["refund please", "", None])
    router.route_bytes(b"hello")
    router.close()
live = LiveRouter(bundle, artifact="onnx-fp32", device="cpu")
live.route("hi")
live.reload()
print("routed")
"""


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


def test_routing_with_an_empty_home_creates_nothing(onnx_bundle: Path, tmp_path: Path) -> None:
    home, work, chosen = tmp_path / "home", tmp_path / "work", tmp_path / "chosen"
    for folder in (home, work, chosen):
        folder.mkdir()
    bundle = copy_bundle(onnx_bundle, tmp_path, "bundle")
    before = tree(bundle)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "ORT_", "HF_", "TRANSFORMERS_", "TORCH_"))}
    env.update(HOME=str(home), TMPDIR=str(chosen), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(bundle), str(chosen / "shadow.db")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "routed" in proc.stdout, proc.stderr
    assert tree(home) == set(), f"files under HOME: {sorted(tree(home))}"
    assert tree(work) == set(), f"files in the working directory: {sorted(tree(work))}"
    assert tree(bundle) == before  # the router never writes into a bundle
    assert {p.split("/")[0] for p in tree(chosen)} <= {"shadow.db", "shadow.db-wal",
                                                        "shadow.db-shm", "shadow.db-journal"}


def test_the_cli_with_an_empty_home_creates_nothing(onnx_bundle: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    request = json.dumps({"id": 1, "text": "Where is my package?"}) + "\n"
    proc = subprocess.run([sys.executable, "-m", "intakegate.cli", "serve", str(onnx_bundle),
                           "--stdio"], input=request, cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    messages = [json.loads(line) for line in proc.stdout.splitlines()]
    assert messages[0]["op"] == "ready", proc.stderr  # protocol v1: the ready event first
    assert [m["id"] for m in messages[1:]] == [1], proc.stderr
    assert tree(home) == set() and tree(work) == set()


def test_without_the_setting_onnxruntime_would_write_its_database(tmp_path: Path) -> None:
    """The reproduction: importing onnxruntime bare creates the telemetry files (so the tests
    above are not vacuous); importing intakegate.runtime first does not."""
    bare, ours = tmp_path / "bare", tmp_path / "ours"
    bare.mkdir()
    ours.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_"))}
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env={**env, "HOME": str(bare)},
                   check=True, timeout=60)
    subprocess.run([sys.executable, "-c", "import intakegate.runtime, onnxruntime"],
                   env={**env, "HOME": str(ours)}, check=True, timeout=60)
    assert tree(ours) == set()
    if not tree(bare):
        pytest.skip("this onnxruntime build writes no telemetry files at all")
    assert any(p.endswith("onnxruntime.db") for p in tree(bare))
