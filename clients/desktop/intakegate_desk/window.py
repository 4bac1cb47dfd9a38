"""The main window: bundle status always on top, a ticket tab and a queue tab.

Everything the agent must not miss is stated in words, not only colour: the route, "a person
must see this", and a fail-closed banner when no verified bundle serves.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from intakegate.routing import Reason
from intakegate.runtime.decision import Decision
from intakegate.vocab import Route
from intakegate_desk.export import export_jsonl
from intakegate_desk.highlight import display_text, segment_span
from intakegate_desk.queue import Filter, count
from intakegate_desk.session import BundleInfo, Routed, Session
from intakegate_desk.tickets import Loaded, Ticket, load_path, typed
from intakegate_desk.worker import RoutingJob

PERSON = QColor("#b45309")
AGENT = QColor("#15803d")
PERSON_BG = "#fef3c7"
AGENT_BG = "#dcfce7"
HIGHLIGHT = QColor("#fde047")
ALL = "all"


def route_words(route: Route) -> str:
    if route is Route.GUARDED_AGENT:
        return "guarded_agent: may enter the guarded automation workflow"
    return "human_review_now: a person must see this ticket"


class ScoreBar(QWidget):
    """The score on a 0..1 scale with the threshold marked: the decision at a glance."""

    def __init__(self) -> None:
        super().__init__()
        self.score: float | None = None
        self.threshold: float | None = None
        self.route = Route.HUMAN_REVIEW_NOW
        self.setMinimumHeight(22)

    def set(self, score: float | None, threshold: float | None, route: Route) -> None:
        self.score, self.threshold, self.route = score, threshold, route
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        w, h = self.width() - 2, self.height() - 2
        p.setPen(QColor("#9ca3af"))
        p.setBrush(QColor("#f3f4f6"))
        p.drawRect(1, 1, w, h)
        if self.score is not None:
            p.setBrush(AGENT if self.route is Route.GUARDED_AGENT else PERSON)
            p.setPen(Qt.PenStyle.NoPen)
            p.drawRect(2, 2, max(1, int((w - 2) * min(max(self.score, 0.0), 1.0))), h - 2)
        if self.threshold is not None:
            x = 1 + int(w * min(max(self.threshold, 0.0), 1.0))
            p.setPen(QColor("#111827"))
            p.drawLine(x, 0, x, h + 2)
        p.end()


class DecisionPanel(QFrame):
    """Route, reason, detail, score against threshold, deciding segment, provenance."""

    def __init__(self) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.badge = QLabel("No ticket routed yet")
        self.badge.setWordWrap(True)
        self.badge.setObjectName("badge")
        self.badge.setStyleSheet("font-size: 16px; font-weight: bold; padding: 8px;")
        self.reason = QLabel("-")
        self.detail = QLabel("-")
        self.detail.setWordWrap(True)
        self.score = QLabel("-")
        self.bar = ScoreBar()
        self.segment = QLabel("-")
        self.segment.setWordWrap(True)
        self.provenance = QLabel("-")
        self.provenance.setWordWrap(True)
        for label in (self.reason, self.detail, self.score, self.segment, self.provenance):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Reason", self.reason)
        form.addRow("Detail", self.detail)
        form.addRow("Score", self.score)
        form.addRow("", self.bar)
        form.addRow("Deciding segment", self.segment)
        form.addRow("Decided by", self.provenance)
        layout = QVBoxLayout(self)
        layout.addWidget(self.badge)
        layout.addLayout(form)
        layout.addStretch(1)

    def show_decision(self, text: object, d: Decision) -> None:
        person = d.route is Route.HUMAN_REVIEW_NOW
        self.badge.setText(route_words(d.route))
        self.badge.setStyleSheet(
            "font-size: 16px; font-weight: bold; padding: 8px; border-radius: 4px; "
            f"color: {(PERSON if person else AGENT).name()}; "
            f"background: {PERSON_BG if person else AGENT_BG};")
        self.reason.setText(d.reason.value)
        self.detail.setText(d.detail or "-")
        if d.score is None:
            self.score.setText("no score" + (f" (threshold {d.threshold:.4f})"
                                             if d.threshold is not None else ""))
        else:
            side = "below" if d.threshold is not None and d.score < d.threshold else "at or above"
            self.score.setText(f"{d.score:.4f} {side} threshold "
                               f"{d.threshold:.4f}" if d.threshold is not None else
                               f"{d.score:.4f}")
        self.bar.set(d.score, d.threshold, d.route)
        span = segment_span(text, d.segment)
        if d.segment is None:
            self.segment.setText("not reported by this router")
        elif span is None:
            self.segment.setText(f"{d.segment.kind} #{d.segment.index} (span outside the text)")
        else:
            snippet = span.text if len(span.text) <= 160 else span.text[:157] + "..."
            self.segment.setText(f"{d.segment.kind} #{d.segment.index}, characters "
                                 f"{d.segment.start}-{d.segment.end}, score "
                                 f"{d.segment.score:.4f}: \u201c{snippet}\u201d (highlighted)")
        digest = (d.manifest_sha256 or "")[:12]
        self.provenance.setText(f"{d.bundle_version or 'no verified bundle'}"
                                f"{'  ·  manifest ' + digest if digest else ''}  ·  "
                                f"{d.artifact} on {d.device}")


def paint_segment(editor: QPlainTextEdit, text: object, d: Decision | None) -> bool:
    """Highlight the deciding segment in `editor` (which shows `display_text(text)`)."""
    span = segment_span(text, d.segment) if d is not None else None
    if span is None:
        editor.setExtraSelections([])
        return False
    cursor = QTextCursor(editor.document())
    cursor.setPosition(span.start)
    cursor.setPosition(span.end, QTextCursor.MoveMode.KeepAnchor)
    selection = QTextEdit.ExtraSelection()
    fmt = QTextCharFormat()
    fmt.setBackground(HIGHLIGHT)
    fmt.setFontUnderline(True)
    selection.cursor = cursor  # type: ignore[attr-defined]
    selection.format = fmt  # type: ignore[attr-defined]
    editor.setExtraSelections([selection])
    return True


class QueueModel(QAbstractTableModel):
    """All routed tickets; the view shows the rows that match the current filter."""

    HEADERS = ("#", "Ticket", "Route", "Reason", "Score", "Threshold", "Source")

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Routed] = []
        self.visible: list[int] = []
        self.filter = Filter()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.visible)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()  # noqa: N802
                    ) -> int:
        return len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        k = self.visible[index.row()]
        item = self.items[k]
        d = item.decision
        if role == Qt.ItemDataRole.DisplayRole:
            return (str(k + 1), str(item.ticket.id), d.route.value, d.reason.value,
                    "-" if d.score is None else f"{d.score:.4f}",
                    "-" if d.threshold is None else f"{d.threshold:.4f}",
                    item.ticket.source)[index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            return AGENT if d.route is Route.GUARDED_AGENT else PERSON
        return None

    def add(self, chunk: list[Routed]) -> None:
        base = len(self.items)
        self.items.extend(chunk)
        new = [base + i for i, item in enumerate(chunk) if self.filter.matches(item)]
        if new:
            self.beginInsertRows(QModelIndex(), len(self.visible),
                                 len(self.visible) + len(new) - 1)
            self.visible.extend(new)
            self.endInsertRows()

    def set_filter(self, f: Filter) -> None:
        self.beginResetModel()
        self.filter = f
        self.visible = [k for k, item in enumerate(self.items) if f.matches(item)]
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.items, self.visible = [], []
        self.endResetModel()

    def item_at(self, row: int) -> Routed | None:
        return self.items[self.visible[row]] if 0 <= row < len(self.visible) else None


class BundleBar(QFrame):
    """Always visible: version, manifest digest, artifact, device, threshold and health, or
    the fail-closed banner."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("bundlebar")
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.health = QLabel()
        self.health.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.title)
        layout.addWidget(self.health)

    def show_info(self, info: BundleInfo) -> None:
        self.title.setText(("Bundle  " if info.ready else "") + info.headline())
        counts = ", ".join(f"{k} {v}" for k, v in sorted(info.decisions.items())) or "none yet"
        if info.ready:
            self.health.setText(f"ready  ·  self-test {info.selftest or '-'}  ·  decisions this "
                                f"session: {counts}  ·  source {info.shown_source}")
            self.setStyleSheet("#bundlebar { background: #eff6ff; border: 1px solid #93c5fd; }")
        else:
            self.health.setText(f"not ready  ·  every decision: human_review_now / "
                                f"{info.reason}  ·  decisions this session: {counts}")
            self.setStyleSheet("#bundlebar { background: #fee2e2; border: 2px solid #b91c1c; "
                               "color: #7f1d1d; font-weight: bold; }")


class MainWindow(QMainWindow):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.setWindowTitle("intakegate desk")
        self.jobs: set[RoutingJob] = set()
        self.last_typed: Routed | None = None
        self.typed_count = 0
        self.bundle_bar = BundleBar()
        self.tabs = QTabWidget()
        self.tabs.addTab(self._ticket_tab(), "Ticket")
        self.tabs.addTab(self._queue_tab(), "Queue")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.bundle_bar)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._menus()
        self.refresh_bundle()

    # ----------------------------------------------------------------------------- layout

    def _ticket_tab(self) -> QWidget:
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Type or paste a ticket, then Route (Ctrl+Enter).")
        self.editor.textChanged.connect(lambda: self.editor.setExtraSelections([]))
        self.route_button = QPushButton("Route (Ctrl+Enter)")
        self.route_button.clicked.connect(self.route_typed)
        left = QWidget()
        box = QVBoxLayout(left)
        box.addWidget(QLabel("Ticket text"))
        box.addWidget(self.editor, 1)
        box.addWidget(self.route_button)
        self.ticket_panel = DecisionPanel()
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.ticket_panel)
        split.setSizes([560, 520])
        return split

    def _queue_tab(self) -> QWidget:
        self.model = QueueModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        for column, width in enumerate((44, 150, 130, 150, 64, 72)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().currentRowChanged.connect(self._row_selected)
        open_folder = QPushButton("Open folder...")
        open_folder.clicked.connect(self.choose_folder)
        open_jsonl = QPushButton("Open JSONL...")
        open_jsonl.clicked.connect(self.choose_jsonl)
        export = QPushButton("Export JSONL...")
        export.clicked.connect(self.choose_export)
        self.route_filter = QComboBox()
        self.route_filter.addItems([ALL, *(r.value for r in Route)])
        self.reason_filter = QComboBox()
        self.reason_filter.addItems([ALL, *(r.value for r in Reason)])
        self.search = QLineEdit()
        self.search.setPlaceholderText("filter: id, file, reason, text")
        for widget in (self.route_filter, self.reason_filter):
            widget.currentTextChanged.connect(self.apply_filter)
        self.search.textChanged.connect(self.apply_filter)
        bar = QHBoxLayout()
        for widget in (open_folder, open_jsonl, export):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(QLabel("Route"))
        bar.addWidget(self.route_filter)
        bar.addWidget(QLabel("Reason"))
        bar.addWidget(self.reason_filter)
        bar.addWidget(self.search, 1)
        self.counts = QLabel("no tickets yet")
        self.counts.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b91c1c;")
        self.problems.setVisible(False)
        self.preview = QPlainTextEdit()
        self.preview.setReadOnly(True)
        self.queue_panel = DecisionPanel()
        lower = QSplitter()
        lower.addWidget(self.preview)
        lower.addWidget(self.queue_panel)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(lower)
        split.setSizes([330, 260])
        page = QWidget()
        box = QVBoxLayout(page)
        box.addLayout(bar)
        box.addWidget(self.counts)
        box.addWidget(self.progress)
        box.addWidget(self.problems)
        box.addWidget(split, 1)
        return page

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, shortcut, slot in (("Open bundle...", "Ctrl+B", self.choose_bundle),
                                     ("Open folder...", "Ctrl+O", self.choose_folder),
                                     ("Open JSONL...", "Ctrl+J", self.choose_jsonl),
                                     ("Export decisions...", "Ctrl+E", self.choose_export),
                                     ("Quit", "Ctrl+Q", self.close)):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(slot)
            file_menu.addAction(action)
        bundle_menu = self.menuBar().addMenu("&Bundle")
        reload_action = QAction("Reload bundle", self)
        reload_action.triggered.connect(self.reload_bundle)
        bundle_menu.addAction(reload_action)
        route_action = QAction("Route ticket", self)
        route_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        route_action.triggered.connect(self.route_typed)
        self.addAction(route_action)

    # ----------------------------------------------------------------------------- state

    def refresh_bundle(self) -> None:
        self.bundle_bar.show_info(self.session.info())

    def set_session(self, session: Session) -> None:
        old = self.session
        self.session = session
        self.refresh_bundle()
        if old is not session and not self.jobs:
            old.close()

    def reload_bundle(self) -> None:
        source = self.session.info().source
        if source:
            self.open_bundle(source)

    def open_bundle(self, bundle: str) -> None:
        self.setCursor(Qt.CursorShape.WaitCursor)
        try:
            self.set_session(Session.open(bundle, self.session.artifact, self.session.device))
        except (ValueError, ImportError) as exc:
            QMessageBox.warning(self, "intakegate desk", f"Cannot open the bundle: {exc}")
        finally:
            self.unsetCursor()

    # ----------------------------------------------------------------------------- routing

    def start(self, source: object, on_done: object = None) -> RoutingJob:
        job = RoutingJob(self.session, source)  # type: ignore[arg-type]
        self.jobs.add(job)
        job.finished.connect(lambda: self.jobs.discard(job))
        job.finished.connect(self.refresh_bundle)
        if on_done is not None:
            job.finished_in.connect(on_done)  # type: ignore[arg-type]
        job.start()
        return job

    def route_typed(self) -> RoutingJob | None:
        text = self.editor.toPlainText()
        self.typed_count += 1
        ticket = typed(text, self.typed_count)
        return self.route_ticket(ticket)

    def route_ticket(self, ticket: Ticket) -> RoutingJob:
        if self.editor.toPlainText() != display_text(ticket.text) and isinstance(ticket.text,
                                                                                 str):
            self.editor.blockSignals(True)
            self.editor.setPlainText(display_text(ticket.text))
            self.editor.blockSignals(False)
        self.route_button.setEnabled(False)
        job = self.start(lambda: Loaded((ticket,), ()))
        job.routed.connect(self._typed_done)
        return job

    def _typed_done(self, chunk: list[Routed]) -> None:
        self.route_button.setEnabled(True)
        if chunk:
            self.show_typed(chunk[0])

    def show_typed(self, item: Routed) -> None:
        """Show one decision on the ticket tab, with its deciding segment highlighted."""
        self.last_typed = item
        self.ticket_panel.show_decision(item.ticket.text, item.decision)
        paint_segment(self.editor, item.ticket.text, item.decision)

    def open_path(self, path: Path, on_done: object = None) -> RoutingJob:
        """Load a folder or JSONL export and route it into the queue, off the UI thread."""
        self.model.clear()
        self.problems.setVisible(False)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.tabs.setCurrentIndex(1)
        job = self.start(lambda: load_path(path), on_done)
        job.loaded.connect(self._loaded)
        job.routed.connect(self._queue_chunk)
        job.progress.connect(self._progress)
        job.finished_in.connect(lambda s: self._queue_done(s, path))
        return job

    def _loaded(self, batch: Loaded) -> None:
        if batch.problems:
            shown = "; ".join(str(p) for p in batch.problems[:3])
            more = f" (+{len(batch.problems) - 3} more)" if len(batch.problems) > 3 else ""
            self.problems.setText(f"{len(batch.problems)} problem(s) reading tickets: "
                                  f"{shown}{more}")
            self.problems.setVisible(True)

    def _queue_chunk(self, chunk: list[Routed]) -> None:
        self.model.add(chunk)
        self.counts.setText(count(self.model.items).summary())

    def _progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"routed {done} of {total}")

    def _queue_done(self, seconds: float, path: Path) -> None:
        self.progress.setVisible(False)
        self.counts.setText(f"{count(self.model.items).summary()}  ·  {path.name} in "
                            f"{seconds:.1f} s")
        if self.model.rowCount() and not self.table.currentIndex().isValid():
            self.table.selectRow(0)

    def apply_filter(self) -> None:
        route = self.route_filter.currentText()
        reason = self.reason_filter.currentText()
        self.model.set_filter(Filter("" if route == ALL else route,
                                     "" if reason == ALL else reason, self.search.text()))

    def _row_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        item = self.model.item_at(current.row())
        if item is None:
            return
        text = item.ticket.text
        self.preview.setPlainText(display_text(text) if isinstance(text, str) else
                                  f"<{type(text).__name__}: not text>")
        self.queue_panel.show_decision(text, item.decision)
        paint_segment(self.preview, text, item.decision)

    # ----------------------------------------------------------------------------- dialogs

    def choose_bundle(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a bundle directory")
        if folder:
            self.open_bundle(folder)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of .txt / .eml tickets")
        if folder:
            self.open_path(Path(folder))

    def choose_jsonl(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open a JSONL export", "",
                                              "JSONL (*.jsonl *.ndjson);;All files (*)")
        if name:
            self.open_path(Path(name))

    def choose_export(self) -> None:
        if not self.model.items:
            QMessageBox.information(self, "intakegate desk", "The queue is empty.")
            return
        name, _ = QFileDialog.getSaveFileName(self, "Export decisions", "decisions.jsonl",
                                              "JSONL (*.jsonl)")
        if name:
            n = export_jsonl(self.model.items, Path(name))
            self.statusBar().showMessage(f"exported {n} decisions to {name}", 8000)

    def closeEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        for job in list(self.jobs):
            job.cancel()
            job.wait(5000)
        self.session.close()
        super().closeEvent(event)  # type: ignore[arg-type]
