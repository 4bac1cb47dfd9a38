"""Scoring on every core changes no score: the re-gate and the scoring path, side by side.

A receipt is only worth its pin if it is computed the way tickets are served; threads may make a
1,000-row re-gate faster, never make it say something else.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from intakegate.bundle import Artifact
from intakegate.export.regate import check_bundle
from intakegate.parallel import map_in_order
from tests.runtime_helpers import cached_onnx_bundle


def test_results_come_back_in_input_order_whatever_finishes_first() -> None:
    rng = random.Random(3)
    delays = [rng.random() / 500 for _ in range(60)]
    threads: set[int] = set()

    def slow_square(k: int) -> int:
        threads.add(threading.get_ident())
        time.sleep(delays[k])
        return k * k

    seen: list[int] = []
    out = map_in_order(slow_square, list(range(60)), workers=4,
                       done=lambda n, total: seen.append(n))
    assert out == [k * k for k in range(60)]
    assert seen == list(range(1, 61))  # progress counts up, under a lock
    assert len(threads) > 1


def test_the_first_failure_is_raised_after_every_thread_stopped() -> None:
    started: list[int] = []

    def fail_on_seven(k: int) -> int:
        started.append(k)
        if k == 7:
            raise ValueError("row 7")
        return k

    with pytest.raises(ValueError, match="row 7"):
        map_in_order(fail_on_seven, list(range(500)), workers=3)
    assert len(started) < 500  # items not yet started are skipped


@pytest.mark.parametrize("artifact", [Artifact.ONNX_INT8, Artifact.ONNX_FP32])
def test_regate_scores_are_identical_on_one_thread_and_on_several(
        tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory, artifact: Artifact) -> None:
    """`intakegate gate --workers N` (default: one per core, at most what the runtime allows)."""
    bundle = cached_onnx_bundle(tiny_bundle, tmp_path_factory.getbasetemp(), "rt-tiny-onnx")
    runs = {}
    for workers in (1, 3):
        _, (gate,) = check_bundle(bundle, [artifact], workers=workers)
        assert gate.details is not None and gate.run is not None
        runs[workers] = gate.run.rows
        assert gate.eligible, gate.reason
    assert runs[1] == runs[3]  # every fixture's score, to the bit
    assert len(runs[1]) > 100
