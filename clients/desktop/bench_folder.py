"""Time a 1,000-ticket folder through intakegate-desk, as an agent would open it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python clients/desktop/bench_folder.py --bundle B \
        [--bundles-dir D] [--tickets 1000] [--artifact onnx-int8]

Writes N .txt tickets (the shipped refund-intake texts, cycled) into a temporary folder, opens
the main window, routes the folder through the same path as File > Open folder (loading and
routing on the worker thread, chunks shown as they finish), and prints one JSON line: seconds
from open to the last row shown, tickets/s, and the longest gap of a 20 ms UI timer while it
ran (how long the window could not have answered a click).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def write_folder(folder: Path, n: int) -> None:
    from intakegate.contract.dataset import load_dataset

    texts = [r.text for r in load_dataset("refund-intake").rows]
    for k in range(n):
        (folder / f"{k:05d}.txt").write_text(texts[k % len(texts)], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--bundles-dir")
    parser.add_argument("--artifact", default="onnx-int8")
    parser.add_argument("--tickets", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from intakegate_desk.session import Session
    from intakegate_desk.window import MainWindow
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    session = Session.open(args.bundle, args.artifact, "auto", args.bundles_dir)
    info = session.info()
    window = MainWindow(session)
    window.resize(1180, 760)
    window.show()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_folder(folder, args.tickets)
        timer.start(20)
        start = time.perf_counter()
        window.open_path(folder)
        while window.progress.isVisible():
            app.processEvents()
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [0.0]
    c = len(window.model.items)
    print(json.dumps({
        "tickets": c, "seconds": round(elapsed, 3), "tickets_per_s": round(c / elapsed, 1),
        "max_ui_gap_ms": round(1000 * max(gaps), 1),
        "bundle_version": info.bundle_version, "artifact": info.artifact, "device": info.device,
        "ready": info.ready, "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count()}))
    window.close()


if __name__ == "__main__":
    main()
