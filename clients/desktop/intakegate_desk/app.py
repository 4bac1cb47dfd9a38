"""`intakegate-desk`: start the desktop client, or render one state to a PNG and exit.

    intakegate-desk --bundle refund-intake
    intakegate-desk --bundle B --ticket TEXT --screenshot out.png       # one decision
    intakegate-desk --bundle B --open tickets/ --screenshot queue.png    # the queue view

Bad arguments and a missing PySide6 are one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from intakegate_desk import __version__

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr and exit 2 (no usage dump, no traceback)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see intakegate-desk --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="intakegate-desk", description="Route support tickets on this machine with an "
        "intakegate bundle: each ticket goes to guarded_agent or to a person (human_review_now).")
    parser.add_argument("--bundle", help="A bundle directory, or a dataset name (its ACTIVE "
                                         "bundle). Without it every ticket goes to a person.")
    parser.add_argument("--bundles-dir", help="Root of the bundles (--bundles-dir, then "
                                              "INTAKEGATE_BUNDLES, then ./bundles).")
    parser.add_argument("--artifact", default="onnx-int8",
                        help="onnx-int8 | onnx-fp32 | torch-fp32 (default onnx-int8)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--ticket", help="Route this ticket text at start.")
    parser.add_argument("--open", dest="open_path", type=Path,
                        help="A folder of .txt/.eml tickets or a JSONL export to route at start.")
    parser.add_argument("--screenshot", type=Path,
                        help="Write a PNG of the window once routing is done, then exit.")
    parser.add_argument("--tab", choices=("ticket", "queue"),
                        help="Tab to show (default: the one the start action fills).")
    parser.add_argument("--size", default="1180x760", help="Window size WxH (default 1180x760).")
    parser.add_argument("--version", action="version", version=f"intakegate-desk {__version__}")
    args = parser.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if w < 200 or h < 200:
            raise ValueError
    except ValueError:
        parser.error(f"--size {args.size!r}: use WIDTHxHEIGHT, e.g. 1180x760")
    args.width, args.height = w, h
    if args.open_path is not None and not args.open_path.exists():
        parser.error(f"--open {args.open_path}: no such file or folder")
    return args


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    args = parse_args(argv)
    try:
        from PySide6.QtWidgets import QApplication  # noqa: F401 - checks the extra
    except ImportError:
        sys.stderr.write("error: 'PySide6' is needed here but is not installed. Install it "
                         "with: pip install 'intakegate[desktop]'\n")
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from intakegate_desk.session import Session
    from intakegate_desk.window import MainWindow

    if args.screenshot is not None and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no display
    app = QApplication.instance() or QApplication(sys.argv[:1])
    try:
        session = Session.open(args.bundle, args.artifact, args.device, args.bundles_dir)
    except (ValueError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    window = MainWindow(session)
    window.resize(args.width, args.height)
    window.show()
    jobs = []
    if args.ticket is not None:
        jobs.append(window.route_ticket(_typed(args.ticket)))
    if args.open_path is not None:
        jobs.append(window.open_path(args.open_path))
    if args.tab is not None:
        window.tabs.setCurrentIndex(0 if args.tab == "ticket" else 1)
    if args.screenshot is None:
        return app.exec()
    loop = QEventLoop()
    poll = QTimer()
    settle: list[int] = []

    def check() -> None:  # polling: a job may finish before any connection is made
        if all(j.isFinished() for j in jobs):
            settle.append(1)
            if len(settle) > 3:  # a few turns of the loop for the last queued signals
                loop.quit()

    poll.timeout.connect(check)
    poll.start(50)
    QTimer.singleShot(300_000, loop.quit)
    loop.exec()
    poll.stop()
    app.processEvents()
    ok = window.grab().save(str(args.screenshot))
    window.close()
    if not ok:
        sys.stderr.write(f"error: could not write {args.screenshot}\n")
        return EXIT_BAD_INPUT
    print(f"wrote {args.screenshot}")
    return 0


def _typed(text: str) -> object:
    from intakegate_desk.tickets import typed

    return typed(text, 1)


if __name__ == "__main__":
    main()
