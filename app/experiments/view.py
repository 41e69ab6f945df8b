"""The Runs view: the library of run folders above, the overlay of the checked runs and the A/B experiment panel below.

Wiring only: the table's data (:mod:`library`), the plot (:mod:`overlay`), the experiment (:mod:`panel`). Run
folders are summarised and their curves read in worker threads; while a run is going (or an experiment), the view
re-reads them every second (curves) and every few seconds (summaries) as long as it is shown.
"""

import os

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QHeaderView, QInputDialog, QLabel, QMessageBox,
                               QSplitter, QTableView, QToolBar, QVBoxLayout, QWidget)

from app.experiments import library
from app.experiments.library import RunTableModel
from app.experiments.overlay import OverlayPlot
from app.experiments.panel import ExperimentPanel
from app.paths import runs_dir
from app.settings import app_settings
from app.jobs import JobFailed, JobRunner
from engine.experiments.curves import CurvesReader

LIVE_MS = 1000  # curves of running runs are re-read this often
RESCAN_MS = 4000  # summaries, while something runs


class RunsView(QWidget):
    """The run library, the overlay of the checked runs, and A/B experiments."""

    title = "Runs"

    sig_resume = Signal(str)
    """The user wants to continue this run folder (the Training pane resumes it)."""
    sig_use_checkpoint = Signal(str)
    """The user wants this checkpoint (a run's ckpt.pt) in the Generation pane."""

    def __init__(self, reporter=None, parent=None):
        super().__init__(parent)
        self.reporter = reporter
        self.settings = app_settings()
        self.model = RunTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self._readers: dict[str, CurvesReader] = {}  # touched only in the curves worker's thread
        self._curves: dict[str, object] = {}  # path -> RunCurves last read
        self._scanned_once = False
        self._check_after_scan: set[str] = set()  # experiment arms to check once the scan finds them
        self.scans = JobRunner(self, torch_threads=None)
        self.scans.sig_done.connect(self._on_scanned)
        self.reads = JobRunner(self, torch_threads=None)
        self.reads.sig_done.connect(self._on_curves_read)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Tick runs to overlay their curves")

        # a tool bar, not a row of buttons: in a narrow window what does not fit goes behind its » menu
        self.buttons = {}
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for key, text, tip in (("refresh", "Refresh", "Read the run folders again"),
                               ("add", "Add folder…", "Add a run or experiment folder from elsewhere to the list"),
                               ("resume", "Resume", "Continue the selected run in the Train tab"),
                               ("use", "Use in Generation", "Open the run's checkpoint in the Generation pane"),
                               ("rename", "Rename…", "Rename the selected run's folder"),
                               ("delete", "Delete…", "Move the selected run's folder to the trash"),
                               ("open", "Open folder", "Show the run folder in the file manager")):
            action = QAction(text, self)
            action.setToolTip(tip)
            self.buttons[key] = action
            bar.addAction(action)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(bar)
        top_layout.addWidget(self.table, 1)
        top_layout.addWidget(self.status)
        self.overlay = OverlayPlot()
        self.panel = ExperimentPanel()
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.overlay)
        bottom.addWidget(self.panel)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        bottom.setCollapsible(0, False)
        bottom.setSizes([600, 400])
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(bottom)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([220, 380])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self._live = QTimer(self)
        self._live.setInterval(LIVE_MS)
        self._live.timeout.connect(self._on_live_tick)
        self._rescan = QTimer(self)
        self._rescan.setInterval(RESCAN_MS)
        self._rescan.timeout.connect(self.refresh)

        self.buttons["refresh"].triggered.connect(self.refresh)
        self.buttons["add"].triggered.connect(self._on_add_clicked)
        self.buttons["rename"].triggered.connect(self._on_rename_clicked)
        self.buttons["delete"].triggered.connect(self._on_delete_clicked)
        self.buttons["open"].triggered.connect(self.open_selected_folder)
        self.buttons["resume"].triggered.connect(self.resume_selected)
        self.buttons["use"].triggered.connect(self.use_selected)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.model.dataChanged.connect(self._on_checks_changed)
        self.model.modelReset.connect(self._update_buttons)
        self.overlay.sig_export_png.connect(self._on_export_png)
        self.overlay.sig_export_csv.connect(self._on_export_csv)
        self.panel.sig_experiment.connect(self._on_experiment)
        self.panel.process.sig_ended.connect(lambda *_: self.refresh())
        self._update_buttons()

    # ---- library -------------------------------------------------------------------------------------------------
    def remember(self, folder: str) -> None:
        """A folder the user started, followed or opened: listed from now on (the settings keep it)."""
        library.remember(self.settings, folder)
        if self.isVisible():
            self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Read every known run folder again (in a worker thread)."""
        folders = library.remembered_folders(self.settings)
        self.scans.submit("scan", lambda job: library.scan(folders, job.is_stale))

    def _on_scanned(self, kind: str, result) -> None:
        if isinstance(result, JobFailed):
            self._set_status(f"Cannot read the run folders: {result.message}")
            return
        selected = self.selected()
        self.model.set_summaries(result)
        for path in list(self._check_after_scan):
            if self.model.row_of(path) >= 0:
                self.model.set_checked(path, True)
                self._check_after_scan.discard(path)
        if selected is not None:
            self.select(selected.path)
        self._scanned_once = True
        running = any(s.state == "running" for s in result) or self.panel.process.running
        if running and self.isVisible():
            self._rescan.start()
        else:
            self._rescan.stop()
        n = len(result)
        self._set_status(f"{n} run{'s' if n != 1 else ''} in {runs_dir()}"
                         + (" and the folders you opened" if library.remembered_folders(self.settings) else "")
                         + ". Tick runs to overlay them.")
        self._read_curves()

    def select(self, path: str) -> None:
        row = self.model.row_of(path)
        if row >= 0:
            self.table.selectRow(self.proxy.mapFromSource(self.model.index(row, 0)).row())

    def selected(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.model.summary(self.proxy.mapToSource(rows[0]).row()) if rows else None

    def _update_buttons(self, *_) -> None:
        s = self.selected()
        idle = s is not None and s.state != "running"
        for key in ("rename", "delete"):
            self.buttons[key].setEnabled(idle)
        self.buttons["open"].setEnabled(s is not None)
        self.buttons["resume"].setEnabled(idle and s.has_checkpoint)
        self.buttons["use"].setEnabled(s is not None and s.has_checkpoint)

    # ---- actions -------------------------------------------------------------------------------------------------
    @Slot()
    def _on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a run or experiment folder", str(runs_dir()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        from engine.experiments.library import find_runs, is_run_folder

        if not (is_run_folder(folder) or find_runs(folder)):
            self._set_status(f"{folder} holds no run folder (config.json, metrics.jsonl or ckpt.pt).")
            return
        if os.path.isfile(os.path.join(folder, "experiment.json")):
            self.panel.open(folder)  # lists and overlays its arms
        else:
            self.remember(folder)
            self.refresh()

    @Slot()
    def _on_rename_clicked(self) -> None:
        s = self.selected()
        if s is None:
            return
        name, ok = QInputDialog.getText(self, "Rename run", "New folder name:", text=s.name)
        if ok and name and name != s.name:
            self.rename(s.path, name)

    def rename(self, path: str, new_name: str) -> str | None:
        """Rename a run folder -> its new path (None, with the reason shown, if it cannot be)."""
        try:
            new = library.rename_run(path, new_name)
        except ValueError as err:
            self._set_status(f"Cannot rename: {err}")
            return None
        if path in library.remembered_folders(self.settings):
            library.forget(self.settings, path)
            library.remember(self.settings, new)
        if path in self.model.checked:
            self.model.checked.discard(path)
            self._check_after_scan.add(new)
        self._set_status(f"Renamed to {new}.")
        self.refresh()
        return new

    @Slot()
    def _on_delete_clicked(self) -> None:
        s = self.selected()
        if s is not None:
            self.delete(s.path, self._confirm_permanent)

    def _confirm_permanent(self, path: str) -> bool:
        answer = QMessageBox.question(self, "Delete run", f"There is no trash for {path}.\n\nDelete the folder and "
                                      f"everything in it for good?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def delete(self, path: str, confirm_permanent) -> str:
        """Trash (or, confirmed, delete) a run folder -> "trashed", "deleted", "kept" or "failed"."""
        try:
            outcome = library.delete_run(path, confirm_permanent)
        except ValueError as err:
            self._set_status(f"Cannot delete: {err}")
            return "failed"
        if outcome != "kept":
            library.forget(self.settings, path)
            self.model.checked.discard(path)
            self._set_status(f"{'Moved to the trash' if outcome == 'trashed' else 'Deleted'}: {path}")
            self.refresh()
        return outcome

    @Slot()
    def open_selected_folder(self) -> None:
        s = self.selected()
        if s is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(s.path)):
            self._set_status(f"No file manager opened {s.path}.")

    @Slot()
    def resume_selected(self) -> None:
        s = self.selected()
        if s is not None and s.has_checkpoint and s.state != "running":
            self.sig_resume.emit(s.path)

    @Slot()
    def use_selected(self) -> None:
        s = self.selected()
        if s is not None and s.has_checkpoint:
            self.sig_use_checkpoint.emit(os.path.join(s.path, "ckpt.pt"))

    # ---- experiments ---------------------------------------------------------------------------------------------
    def _on_experiment(self, folder: str) -> None:
        """An experiment was started or opened: list its arms and overlay them (alone)."""
        from engine.experiments.plan import read_experiment

        self.remember(folder)
        from engine.experiments.plan import EXPERIMENTS, arms as experiment_arms

        try:
            experiment = read_experiment(folder)
            arm_dirs = [str(experiment.arm_dir(arm)) for arm in experiment.arms]
        except ValueError:  # just started: experiment.json is not written yet; every arm name it may use
            names = {arm.name for kind in EXPERIMENTS for arm in experiment_arms(kind, cuda=True)}
            arm_dirs = [os.path.join(folder, name) for name in sorted(names)]
        self.model.checked.clear()
        self._check_after_scan = set(arm_dirs)
        self._rescan.start()
        self.refresh()

    # ---- curves --------------------------------------------------------------------------------------------------
    def _on_checks_changed(self, *_) -> None:
        self._read_curves()

    def _read_curves(self) -> None:
        """Read (what is new in) the checked runs' metrics in the worker, then redraw."""
        paths = [s.path for s in self.model.checked_summaries()]
        readers = self._readers

        def work(job):  # the readers live in this one worker thread: only it touches them
            for path in [p for p in readers if p not in paths]:
                del readers[path]  # unchecked: read from the start next time
            for path in paths:
                readers.setdefault(path, CurvesReader(path)).update()
            # every run's curves (a stale job's result is dropped, so "what changed" would get lost); curves() is
            # cached by its reader: an unchanged run gives the same object, which the UI then leaves alone
            return {path: readers[path].curves() for path in paths}

        self.reads.submit("curves", work)
        live = any(s.state == "running" for s in self.model.checked_summaries()) or self.panel.process.running
        if live and self.isVisible():
            self._live.start()
        else:
            self._live.stop()

    def _on_live_tick(self) -> None:
        if not self.reads.busy_with("curves"):
            self._read_curves()

    def _on_curves_read(self, kind: str, result) -> None:
        if isinstance(result, JobFailed):
            self._set_status(f"Cannot read the curves: {result.message}")
            return
        fresh = {p: c for p, c in result.items()}
        changed = [p for p, c in fresh.items() if self._curves.get(p) is not c]
        self._curves = fresh
        names = self._names(list(fresh))
        shown = {names[p]: c for p, c in fresh.items()}
        if list(shown) != list(self.overlay.runs):
            self.overlay.set_runs(shown)
        else:
            for path in changed:
                self.overlay.update_run(names[path], fresh[path])

    def _names(self, paths: list[str]) -> dict:
        """Legend names: the table's, made unique."""
        names, used = {}, set()
        for path in paths:
            row = self.model.row_of(path)
            base = self.model.data(self.model.index(row, 0)) if row >= 0 else os.path.basename(path)
            name, k = base, 2
            while name in used:
                name, k = f"{base} ({k})", k + 1
            used.add(name)
            names[path] = name
        return names

    # ---- export --------------------------------------------------------------------------------------------------
    @Slot()
    def _on_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the comparison as PNG",
                                              os.path.join(str(runs_dir()), "comparison.png"), "PNG image (*.png)")
        if path:
            self.export_png(path)

    @Slot()
    def _on_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the comparison as CSV",
                                              os.path.join(str(runs_dir()), "comparison.csv"), "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_png(self, path: str) -> None:
        try:
            self.overlay.export_png(path)
        except OSError as err:
            self._set_status(f"Could not write {path}: {err}")

    def export_csv(self, path: str) -> None:
        try:
            n = self.overlay.export_csv(path)
        except OSError as err:
            self._set_status(f"Could not write {path}: {err}")
        else:
            self._set_status(f"Wrote {n:,} rows of {len(self.overlay.runs)} runs to {path}.")

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    # ---- life ----------------------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        self.refresh()

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().hideEvent(event)
        self._live.stop()
        self._rescan.stop()

    def shutdown(self) -> None:
        self._live.stop()
        self._rescan.stop()
        self.panel.shutdown()
        self.scans.close()
        self.reads.close()
