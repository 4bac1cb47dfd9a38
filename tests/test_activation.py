"""Activation is safe under threads and processes, and failed builds leave no staging folder
(issue 13: 8 threads activating in one process raised FileNotFoundError, one temp file name per
process; a failed train left `.staging-<version>/`; `bundles activate` on a full disk printed a
traceback)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from intakegate.bundle import (
    POINTER,
    BundleError,
    Pointer,
    activate,
    list_bundles,
    parse_pointer,
    rollback,
    verify_bundle,
)
from intakegate.runtime import Router
from tests.runtime_helpers import cached_onnx_bundle, copy_bundle, rewrite

DATASET = "refund-intake"


@pytest.fixture(scope="session")
def onnx_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")


@pytest.fixture()
def root(tmp_path: Path, onnx_bundle: Path) -> Path:
    root = tmp_path / "bundles"
    for name in ("a", "b"):
        copy_bundle(onnx_bundle, root / DATASET, name)
    rewrite(root / DATASET / "b", lambda m: m.update(notes=["copy b"]))
    return root


def _check_pointer(root: Path) -> Pointer:
    pointer = parse_pointer(root, DATASET)
    assert pointer is not None
    digests = {v: verify_bundle(root / DATASET / v).manifest_sha256 for v in ("a", "b")}
    for entry in (pointer.current, *pointer.previous):
        assert entry.manifest_sha256 == digests[entry.bundle_version]
    assert not [p.name for p in (root / DATASET).iterdir() if ".tmp-" in p.name]
    return pointer


def test_eight_threads_activating_in_one_process(root: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        start.wait()
        try:
            for i in range(6):
                activate(root, DATASET, "a" if (i + k) % 2 else "b")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    pointer = _check_pointer(root)
    assert len(pointer.previous) == 10  # 48 activations, none lost the history
    assert rollback(root, DATASET).bundle_version in ("a", "b")


ACTIVATOR = """
import sys
from intakegate.bundle import activate
root, dataset, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(8):
    activate(root, dataset, "a" if (i + k) % 2 else "b")
"""


def test_four_processes_activating_at_once(root: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", ACTIVATOR, str(root), DATASET, str(k)],
                              stderr=subprocess.PIPE, text=True) for k in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _check_pointer(root)
    assert Router.load(DATASET, artifact="onnx-fp32", bundles_root=root).ready


def test_activate_on_a_full_disk_prints_a_message_not_a_traceback(
        root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from intakegate import cli

    activate(root, DATASET, "a")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    monkeypatch.setattr(sys, "argv", ["intakegate", "bundles", "activate", DATASET, "b",
                                      "--bundles-dir", str(root)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "No space left on device" in err
    assert "Traceback" not in err
    assert parse_pointer(root, DATASET).bundle_version == "a"  # type: ignore[index]


def test_activate_repairs_a_truncated_pointer_and_listing_survives_it(root: Path) -> None:
    """One parser reads ACTIVE everywhere: a pointer cut to 0 bytes is `model_unavailable` for
    rollback, shows no bundle as active in the listing (no crash), and `activate` replaces it
    (with no history, since nothing in it can be trusted)."""
    activate(root, DATASET, "a")
    (root / DATASET / POINTER).write_bytes(b"")
    with pytest.raises(BundleError) as info:
        rollback(root, DATASET)
    assert info.value.code == "model_unavailable"
    assert not [b for b in list_bundles(root) if b["active"]]
    pointer = activate(root, DATASET, "b")
    assert pointer.previous == () and _check_pointer(root).bundle_version == "b"


def test_a_pointer_history_entry_without_a_digest_is_refused(root: Path) -> None:
    activate(root, DATASET, "a")
    activate(root, DATASET, "b")
    path = root / DATASET / POINTER
    obj = json.loads(path.read_text())
    del obj["previous"][0]["manifest_sha256"]
    path.write_text(json.dumps(obj))
    with pytest.raises(BundleError) as info:
        rollback(root, DATASET)
    assert info.value.code == "pointer_invalid" and "'a'" in str(info.value)


def test_a_failed_train_leaves_no_staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from intakegate.train import pipeline
    from tests.conftest import train_tiny_bundle

    def broken(*a: Any, **k: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_manifest", broken)
    with pytest.raises(OSError):
        train_tiny_bundle(tmp_path, "will-fail")
    assert not list((tmp_path / DATASET).glob(".staging-*"))
    assert not (tmp_path / DATASET / "will-fail").exists()


def test_a_failed_export_leaves_no_staging(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from intakegate.export import pipeline

    bundle = root / DATASET / "a"
    before = verify_bundle(bundle).manifest_sha256

    def broken(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt  # even an interrupt cleans up

    monkeypatch.setattr(pipeline, "_export_into", broken)
    with pytest.raises(KeyboardInterrupt):
        pipeline.export_bundle(bundle)
    assert [p.name for p in (root / DATASET).iterdir() if p.name.startswith(".")] == []
    assert verify_bundle(bundle).manifest_sha256 == before
