"""The A/B experiment panel: choose an experiment, run it in the background (progress, cancel), open one written by
``llm-train --experiment``, and compare its arms in a table (for positions: validation loss at 1x, 2x, 4x context)."""

import math
import os
import time

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout)

from app.experiments.runner import ExperimentProcess
from app.paths import runs_dir
from app.jobs import JobFailed, JobRunner
from engine.experiments.extrapolation import read_csv, table
from engine.experiments.library import summarize

KINDS = {"positions": "positions", "precision": "precision", "processes": "processes"}
KIND_TIPS = {"positions": "learned vs RoPE vs ALiBi positions, then validation loss at 1x, 2x, 4x the context",
             "precision": "fp32 vs bf16 autocast (and fp16 with its loss scaler where CUDA exists)",
             "processes": "1 vs 2 DDP processes at the same global batch"}
PRESETS = ("tiny", "shakespeare-char-cpu")
COMPARE_COLUMNS = ("best val", "ms/step", "tok/s")  # + "skipped" (AMP steps) for precision, + val loss per context


class ExperimentPanel(QGroupBox):
    """Start / cancel / open an experiment and show its comparison table."""

    sig_experiment = Signal(str)
    """An experiment folder was started or opened: the view adds its arms to the library and overlays them."""

    def __init__(self, parent=None):
        super().__init__("A/B experiment", parent)
        self.process = ExperimentProcess(self)
        self.jobs = JobRunner(self, torch_threads=None)
        self.jobs.sig_done.connect(self._on_job_done)
        self.folder: str | None = None  # the experiment shown
        self.kind = "positions"
        self.n_arms = 3
        self.max_iters = 0
        self._arms_done: list[str] = []

        self.kind_choice = QComboBox()
        for i, (key, label) in enumerate(KINDS.items()):
            self.kind_choice.addItem(label, key)
            self.kind_choice.setItemData(i, KIND_TIPS[key], Qt.ItemDataRole.ToolTipRole)
        self.kind_choice.setToolTip("; ".join(f"{k}: {v}" for k, v in KIND_TIPS.items()))
        self.preset_choice = QComboBox()
        self.preset_choice.addItems(PRESETS)
        self.preset_choice.setToolTip("Settings every arm starts from (tiny: seconds per arm on a CPU)")
        self.corpus = QLineEdit("shakespeare")
        self.corpus.setToolTip("A built-in corpus (shakespeare, kjv) or the path of a UTF-8 text file")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(300)
        self.steps.setSingleStep(100)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Compare", self.kind_choice)
        form.addRow("Preset", self.preset_choice)
        form.addRow("Corpus", self.corpus)
        form.addRow("Steps", self.steps)

        self.start_button = QPushButton("Run")
        self.start_button.setToolTip("Train every arm, one after another, in a background process")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the arm being trained (it saves a checkpoint) and skip the rest")
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Open an experiment folder written by llm-train --experiment")
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.open_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.status = QLabel("Each arm is a normal run folder; the curves overlay live.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(90)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)

        self.start_button.clicked.connect(self._on_start_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(self._on_open_clicked)
        self.process.sig_progress.connect(self._on_progress)
        self.process.sig_ended.connect(self._on_ended)
        self._update_buttons()

    # ---- running -------------------------------------------------------------------------------------------------
    def start(self, kind: str, steps: int, preset: str = "tiny", corpus: str = "shakespeare", folder: str | None = None,
              extra: dict | None = None) -> str:
        """Run an experiment into folder (default: a new one in the runs directory) -> the folder."""
        if self.process.running:
            raise RuntimeError("an experiment is already running")
        if kind not in KINDS:
            raise ValueError(f"unknown experiment {kind!r}")
        folder = folder or default_folder_name(kind)
        settings = {"corpus": corpus, "out_dir": folder, "max_iters": steps, "lr_decay_iters": steps,
                    **(extra or {})}
        self.kind, self.max_iters, self.folder, self._arms_done = kind, steps, folder, []
        self.n_arms = 2 if kind != "positions" else 3
        self.progress.setRange(0, self.n_arms * steps)
        self.progress.setValue(0)
        self.table.setRowCount(0)
        self.process.start(kind, settings, preset)
        self._set_status(f"Starting the {kind} experiment in {folder}…")
        self._update_buttons()
        self.sig_experiment.emit(folder)
        return folder

    @Slot()
    def _on_start_clicked(self) -> None:
        corpus = self.corpus.text().strip()
        if not corpus:
            self._set_status("Name a corpus (shakespeare, kjv) or a text file first.")
            return
        try:
            self.start(self.kind_choice.currentData(), self.steps.value(), self.preset_choice.currentText(), corpus)
        except (RuntimeError, ValueError) as err:
            self._set_status(str(err))

    @Slot()
    def cancel(self) -> None:
        if not self.process.running:
            return
        self.process.cancel()
        self._set_status("Cancelling: the arm being trained saves a checkpoint… (Cancel again to kill)")

    @Slot(str, int)
    def _on_progress(self, arm: str, step: int) -> None:
        if self._arms_done[-1:] != [arm]:
            self._arms_done.append(arm)
        done = (len(self._arms_done) - 1) * self.max_iters + min(step, self.max_iters)
        self.progress.setValue(min(done, self.progress.maximum()))
        self._set_status(f"Training arm {len(self._arms_done)} of {self.n_arms} ({arm}): step {step:,} / "
                         f"{self.max_iters:,}")

    @Slot(int, str)
    def _on_ended(self, code: int, error: str) -> None:
        if code == 0:
            self.progress.setValue(self.progress.maximum())
            self._set_status(f"Done: {self.folder}")
        elif code == 130:
            self._set_status("Cancelled; the arms trained so far are kept.")
        else:
            tail = error or next((line for line in reversed(self.process.lines) if line.strip()), "")
            self._set_status(f"The experiment failed (exit code {code}): {tail}")
        self.show_experiment(self.folder)
        self._update_buttons()

    # ---- showing -------------------------------------------------------------------------------------------------
    @Slot()
    def _on_open_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an experiment folder", str(runs_dir()))
        if folder:
            self.open(folder)

    def open(self, folder: str) -> bool:
        """Show an experiment folder written by the CLI (or by this panel) -> whether it is one."""
        from engine.experiments.plan import read_experiment

        try:
            experiment = read_experiment(folder)
        except ValueError as err:
            self._set_status(str(err))
            return False
        self.kind = experiment.kind
        self.folder = folder
        self.show_experiment(folder)
        self.sig_experiment.emit(folder)
        self._set_status(f"{experiment.kind}: {', '.join(a.name for a in experiment.arms)} in {folder}")
        return True

    def show_experiment(self, folder: str | None) -> None:
        """Fill the comparison table from the arms' folders (and extrapolation.csv for positions), read in a worker
        thread (an arm's metrics.jsonl can hold 100 000 steps)."""
        if folder:
            self.jobs.submit("compare", lambda job: _comparison(folder))

    def _on_job_done(self, kind: str, result) -> None:
        if isinstance(result, JobFailed):
            self._set_status(result.message)
            return
        experiment, summaries, rows, problem = result
        if problem:
            self._set_status(problem)
        _, contexts, cells = table(rows)
        amp = experiment.kind == "precision"
        headers = ["arm", *COMPARE_COLUMNS] + (["skipped"] if amp else []) + [f"@{c}" for c in contexts]
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(experiment.arms))
        for i, (arm, s) in enumerate(zip(experiment.arms, summaries)):
            values = [arm.name, _num(s.best_val, 4), _num(s.ms_per_step, 1), _num(s.tokens_per_s, 0)]
            if amp:
                values.append(str(s.skipped_steps) if s.steps else "")
            for c in contexts:
                loss = cells.get((arm.name, c), math.nan)
                values.append("refused" if (arm.name, c) in cells and math.isnan(loss) else _num(loss, 4))
            for j, text in enumerate(values):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if text == "refused":
                    item.setToolTip("The model refused this length: learned positions stop at their table")
                self.table.setItem(i, j, item)
        for j, c in enumerate(contexts, len(headers) - len(contexts)):
            self.table.horizontalHeaderItem(j).setToolTip(f"validation loss over windows of {c} tokens")
        self.table.resizeColumnsToContents()

    def table_text(self) -> list[list[str]]:
        """The comparison table as text, header first (for tests and export)."""
        header = [self.table.horizontalHeaderItem(j).text() for j in range(self.table.columnCount())]
        return [header] + [[self.table.item(i, j).text() if self.table.item(i, j) else ""
                            for j in range(self.table.columnCount())] for i in range(self.table.rowCount())]

    def _update_buttons(self) -> None:
        running = self.process.running
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.kind_choice, self.preset_choice, self.corpus, self.steps, self.open_button):
            w.setEnabled(not running)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def shutdown(self) -> None:
        self.process.shutdown()
        self.jobs.close()


def _comparison(folder: str):
    """(experiment, the arms' summaries, extrapolation rows, problem) of an experiment folder (worker thread)."""
    from engine.experiments.plan import read_experiment

    experiment = read_experiment(folder)
    summaries = [summarize(experiment.arm_dir(arm)) for arm in experiment.arms]
    rows, problem = [], ""
    if experiment.extrapolation_path.exists():
        try:
            rows = read_csv(experiment.extrapolation_path)
        except (OSError, ValueError) as err:
            problem = str(err)
    return experiment, summaries, rows, problem


def _num(x: float, digits: int) -> str:
    return f"{x:,.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else ""


def default_folder_name(kind: str) -> str:
    return os.path.join(str(runs_dir()), f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
