"""Regenerate the README's screenshots of intakegate-desk (docs/images/desk-*.png).

    .venv/bin/python clients/desktop/screenshots.py --bundle refund-intake --bundles-dir bundles

The ticket, queue and fail-closed pictures are `intakegate-desk ... --screenshot` runs against
the bundle given (the fail-closed one against a copy with one extra file, which the router
refuses as tampered). The highlight picture routes a multi-request ticket and draws the segment
the router reports as deciding (`Decision.segment`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "images"
EXAMPLES = REPO / "clients" / "desktop" / "examples" / "tickets"
TICKET = ("FastShip delivered my tablet after the return window closed. The portal rejected my "
          "return. Please make an exception.")


def desk(*args: str) -> None:
    cmd = [sys.executable, "-m", "intakegate_desk", "--size", "1100x680", *args]
    subprocess.run(cmd, check=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def highlight(bundle_dir: Path, out: Path) -> None:
    from intakegate_desk.session import Session
    from intakegate_desk.tickets import typed
    from intakegate_desk.window import MainWindow
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    session = Session.open(str(bundle_dir))
    text = ("Hi, thanks for the tracking link yesterday.\n\nThe parcel finally came, but after "
            "the return window closed and the portal rejected my return. Please make an "
            "exception, I was travelling.\n\nBest, Sam")
    [shown] = session.route([typed(text, 1)])
    window = MainWindow(session)
    window.resize(1100, 680)
    window.show()
    window.editor.setPlainText(text)
    window.show_typed(shown)
    window.refresh_bundle()
    app.processEvents()
    window.grab().save(str(out))
    window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory or dataset name")
    parser.add_argument("--bundles-dir")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from intakegate.bundle import resolve_bundle
    from intakegate.bundle.root import resolve_root

    bundle_dir = resolve_bundle(args.bundle, resolve_root(args.bundles_dir).path).path
    OUT.mkdir(parents=True, exist_ok=True)
    base = ["--bundle", str(bundle_dir)]
    desk(*base, "--ticket", TICKET, "--screenshot", str(OUT / "desk-ticket.png"))
    desk(*base, "--open", str(EXAMPLES), "--screenshot", str(OUT / "desk-queue.png"))
    with tempfile.TemporaryDirectory() as tmp:
        tampered = Path(tmp) / bundle_dir.name
        shutil.copytree(bundle_dir, tampered)
        (tampered / "docs" / "notes.md").write_text("an unlisted file\n")
        desk("--bundle", str(tampered), "--ticket", "Where is my package? Tracking has not "
             "moved since Monday.", "--screenshot", str(OUT / "desk-fail-closed.png"))
    highlight(bundle_dir, OUT / "desk-highlight.png")
    print(f"wrote {OUT}/desk-{{ticket,queue,fail-closed,highlight}}.png")


if __name__ == "__main__":
    main()
