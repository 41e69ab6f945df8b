"""The Generation pane's state, without Qt: the loaded model, the session's snapshot, the busy/pending state machine,
the pending load or prompt, Run's limits, and the outcome line. The pane renders it and forwards the user's actions.

In the manner of napari's models: plain Python with events (:class:`Event`, callbacks run synchronously on the
thread that changed the state, which is the UI thread in the app). Every model forward runs as a job through the
``submit(kind, fn, on_done)`` function the state is given (in the app, :meth:`app.jobs.JobRunner.submit`; in
headless tests, :func:`run_inline`). One job at a time: the session is never used by two threads at once, and the
UI only ever reads the :class:`Snapshot` a job returns.

    >>> state = GenerationState(run_inline)
    >>> state.busy
    False
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from app.events import Event
from app.failure import JobFailed, is_user_error
from app.generation.model_source import LoadedModel, ModelSource, load_source
from engine.decoding import DecodeSettings, probabilities


@dataclass
class Snapshot:
    """What the UI shows, copied out of the session by the job that changed it."""

    ids: list[int]  # prompt + generated ids
    prompt_len: int
    logits: torch.Tensor  # (V,) next-token logits
    history: list  # engine.session.StepRecord per generated token
    context_note: str
    forward_count: int
    last_probs: torch.Tensor | None = None  # (V,) the distribution the last generated token was chosen from


def snapshot_of(session) -> Snapshot:
    """Copy what the UI shows out of the session (in the worker thread: this also runs the decoding stages of the last
    step, so the UI thread never recomputes a 150k-token distribution just to show where the last draw fell)."""
    last_probs = None
    if session.history:
        rec = session.history[-1]
        if rec.logits_before is not None:
            last_probs = probabilities(rec.logits_before, rec.settings or DecodeSettings(), session.ids[: rec.index])
    return Snapshot(list(session.ids), session.prompt_len, session.logits.detach().clone(), list(session.history),
                    session.context_note, session.forward_count, last_probs)


def draw_generator(seed: int, position: int) -> torch.Generator:
    """The draw of generated token number ``position`` depends only on the seed and the position, so undo + step
    draws the same token again and a whole run replays from its seed."""
    return torch.Generator().manual_seed((seed * 1_000_003 + position) % 2**63)


class _InlineJob:
    kind = "inline"

    @staticmethod
    def is_stale() -> bool:
        return False

    @staticmethod
    def progress(value) -> None:
        pass


def run_inline(kind: str, fn: Callable, on_done: Callable) -> int:
    """A ``submit`` that runs the job at once on the calling thread (headless tests, scripts)."""
    try:
        result = fn(_InlineJob())
    except Exception as exc:  # noqa: BLE001 - delivered as the runner delivers it
        result = JobFailed(exc)
    on_done(result)
    return 1


@dataclass
class Prompt:
    """What the session is set to: the text in the prompt box, and the chat template's rendering of it (or None)."""

    text: str
    rendered: str | None = None  # the chat prompt: special tokens are allowed in it

    @property
    def model_text(self) -> str:
        return self.rendered if self.rendered is not None else self.text


class GenerationState:
    """One loaded model and its generation session, changed only through jobs.

    Events (arguments in brackets):
      busy(bool)                   a job started / the last one finished
      progress(str)                what the running load is doing
      loaded(LoadedModel)          a model is ready (its snapshot follows in ``changed``)
      changed(str, record)         the snapshot changed: reason "load" | "prompt" | "reset" | "step" | "force" |
                                   "undo"; record is the StepRecord stepped, forced or undone, else None
      outcome(str, JobFailed|None) a line to show the user ("" clears it); with a JobFailed that is not the user's
                                   mistake, also a bug to report
    """

    def __init__(self, submit: Callable):
        self.submit = submit
        self.loaded: LoadedModel | None = None
        self.session = None  # engine.session.GenerationSession: used only inside jobs
        self.snapshot: Snapshot | None = None
        self.prompt: Prompt | None = None  # what the session is set to
        self.prompt_error = ""  # why the model cannot read the prompt ("" if it can)
        self.outcome = ""
        self.busy_kind = ""  # the running job's kind, "" when idle
        self.loading: ModelSource | None = None  # the source being loaded
        self.pending_load: tuple[ModelSource, Prompt, str] | None = None  # asked for while busy
        self.pending_prompt: Prompt | None = None  # asked for while busy
        self._cancel_load = False
        self.events = type("Events", (), {})()
        for name in ("busy", "progress", "loaded", "changed", "outcome"):
            setattr(self.events, name, Event())

    # ---- reading ---------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.busy_kind)

    @property
    def ready(self) -> bool:
        """A model is loaded, its prompt is set, and no job runs: step, force and undo are possible."""
        return not self.busy and self.session is not None and self.snapshot is not None

    def label(self, token_id: int) -> str:
        """The visible text of a token of the loaded model."""
        labels = self.loaded.labels if self.loaded is not None else []
        label = labels[token_id] if 0 <= token_id < len(labels) else None
        return label if label is not None else f"<no token #{token_id}>"

    def token_bytes(self, token_id: int) -> bytes:
        tokenizer = self.loaded.tokenizer
        return tokenizer.token_bytes(token_id) if token_id < tokenizer.n_vocab else b""

    def generated_text(self) -> str:
        """The generated tokens as text (decoded together, so multi-byte characters split across tokens join)."""
        if self.snapshot is None or self.loaded is None:
            return ""
        return self.loaded.tokenizer.decode(self.snapshot.ids[self.snapshot.prompt_len:])

    # ---- actions -----------------------------------------------------------------------------------------------------
    def load(self, source: ModelSource, prompt: Prompt, precision: str = "auto") -> None:
        """Load a model and set the prompt; the current model stays until the new one is ready (or if it fails)."""
        if self.busy:
            self.pending_load = (source, prompt, precision)
            if self.busy_kind == "load":
                self._cancel_load = True  # the newer choice wins: stop reading the old one
            return
        self._cancel_load = False
        self.loading = source

        def job(job):
            from engine.session import GenerationSession

            cancel = lambda: self._cancel_load or job.is_stale()  # noqa: E731 - read by the engine's loader
            loaded = load_source(source, job.progress, precision=precision, cancel=cancel)
            if prompt.rendered is not None and not loaded.chat_template:
                prompt_now = Prompt(prompt.text)  # the new model has no chat template: the plain text
            else:
                prompt_now = prompt
            job.progress("Running the prompt…")
            session = GenerationSession(loaded.model, loaded.tokenizer)
            try:
                self._set_prompt(session, loaded, prompt_now)
            except Exception as exc:  # noqa: BLE001 - a prompt this model cannot read is shown, not a failed load
                if not is_user_error(exc):
                    raise
                return loaded, session, None, str(exc), prompt_now
            return loaded, session, snapshot_of(session), "", prompt_now

        self._start("load", job, self._on_loaded, lambda failure: self._on_load_failed(source, failure))

    def cancel_load(self) -> bool:
        """Stop the model being loaded (the previous one stays); False if none is loading."""
        if self.busy_kind != "load":
            return False
        self._cancel_load = True
        self.pending_load = None
        return True

    def set_prompt(self, prompt: Prompt, force: bool = False) -> None:
        """Start again from ``prompt`` (unchanged: nothing to do unless ``force``)."""
        if self.session is None or (not force and prompt == self.prompt and self.pending_prompt is None):
            return
        if self.busy:
            self.pending_prompt = prompt
            return
        session, loaded = self.session, self.loaded

        def job(job):
            self._set_prompt(session, loaded, prompt)
            return snapshot_of(session)

        self._start("prompt", job, lambda snap: self._on_prompt_set(snap, prompt, "prompt"),
                    lambda failure: self._on_prompt_failed(failure, prompt))

    def step(self, settings: DecodeSettings, seed: int) -> bool:
        """Draw one token; False (and nothing happens) unless ready."""
        if not self.ready:
            return False
        session, generator = self.session, draw_generator(seed, len(self.snapshot.history))
        self._start("step", lambda job: (session.step(settings, generator), snapshot_of(session)),
                    lambda result: self._on_stepped(result, "step"), self._on_job_failed)
        return True

    def force(self, token_id: int, settings: DecodeSettings) -> bool:
        """Append a token chosen by hand; False unless ready."""
        if not self.ready:
            return False
        session = self.session
        self._start("force", lambda job: (session.force(int(token_id), settings), snapshot_of(session)),
                    lambda result: self._on_stepped(result, "force"), self._on_job_failed)
        return True

    def undo(self) -> bool:
        """Take back the last generated token; False if there is none or a job runs."""
        if not self.ready or not self.snapshot.history:
            return False
        session = self.session
        self._start("undo", lambda job: (session.undo(), snapshot_of(session)),
                    lambda result: self._on_stepped(result, "undo"), self._on_job_failed)
        return True

    def reset(self, prompt: Prompt) -> None:
        """Back to the prompt: every generated token goes (the prompt is set again if it changed)."""
        if self.session is None:
            return
        if prompt != self.prompt or self.busy or self.snapshot is None:
            self.set_prompt(prompt, force=True)
            return
        session = self.session

        def job(job):
            session.reset()  # undo everything: no forward pass
            return snapshot_of(session)

        self._start("reset", job, lambda snap: self._on_prompt_set(snap, prompt, "reset"), self._on_job_failed)

    # ---- jobs ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _set_prompt(session, loaded: LoadedModel, prompt: Prompt) -> None:
        if prompt.rendered is not None:
            session.set_prompt(prompt.rendered, allowed_special="all")  # the template's own special tokens
        else:
            session.set_prompt(prompt.text)

    def _start(self, kind: str, fn: Callable, on_done: Callable, on_failed: Callable) -> None:
        self.busy_kind = kind
        self.events.busy.emit(True)

        def deliver(result):
            self.busy_kind = ""
            self.loading = None if kind == "load" else self.loading
            try:
                on_failed(result) if isinstance(result, JobFailed) else on_done(result)
            finally:
                self.events.busy.emit(False)
                self._next()

        self.submit(kind, fn, deliver)

    def _next(self) -> None:
        """After a job: start what was asked for meanwhile (a newer load wins over a newer prompt)."""
        if self.busy:
            return
        if self.pending_load is not None:
            (source, prompt, precision), self.pending_load = self.pending_load, None
            if self.pending_prompt is not None:
                prompt, self.pending_prompt = self.pending_prompt, None
            self.load(source, prompt, precision)
        elif self.pending_prompt is not None:
            prompt, self.pending_prompt = self.pending_prompt, None
            self.set_prompt(prompt)

    def _say(self, text: str, failure: JobFailed | None = None) -> None:
        if text or self.outcome:
            self.outcome = text
            self.events.outcome.emit(text, failure)

    def _on_loaded(self, result) -> None:
        loaded, session, snapshot, error, prompt = result
        self.loaded, self.session, self.snapshot, self.prompt_error, self.prompt = \
            loaded, session, snapshot, error, prompt
        self._say("")
        self.events.loaded.emit(loaded)
        self.events.changed.emit("load", None)

    def _on_load_failed(self, source: ModelSource, failure: JobFailed) -> None:
        from engine.errors import Cancelled

        what = "The previous model stays loaded." if self.loaded else "Choose another model above."
        if isinstance(failure.exc, Cancelled):
            if self.pending_load is None:  # cancelled by the user, not replaced by a newer choice
                self._say(f"Loading {source.title()} was cancelled. {what}")
            return
        name = "the model" if source.path else source.title()  # a checkpoint's error already names its file
        self._say(f"Could not load {name}: {failure.message}\n{what}", failure)

    def _on_stepped(self, result, reason: str) -> None:
        record, snapshot = result
        self.snapshot = snapshot
        self._say("")  # the user has moved on from the last error
        self.events.changed.emit(reason, record)

    def _on_prompt_set(self, snapshot: Snapshot, prompt: Prompt, reason: str) -> None:
        self.snapshot, self.prompt_error, self.prompt = snapshot, "", prompt
        self._say("")
        self.events.changed.emit(reason, None)

    def _on_prompt_failed(self, failure: JobFailed, prompt: Prompt) -> None:
        if failure.expected:
            self.snapshot, self.prompt_error, self.prompt = None, failure.message, prompt
            self.events.changed.emit("prompt", None)
        else:
            self._on_job_failed(failure)

    def _on_job_failed(self, failure: JobFailed) -> None:
        self._say(failure.message, failure)


@dataclass
class RunLimits:
    """When Run stops by itself: after ``max_new`` tokens (0: never) or once the text it generated contains one of
    the ``stop`` sequences.

    >>> RunLimits(max_new=3).stop_reason(3, "abc")
    'stopped after 3 new tokens (the maximum)'
    >>> RunLimits(stop=("\\n\\n",)).stop_reason(5, "Hi.\\n\\nBye")
    'stopped at the stop sequence ↵↵'
    """

    max_new: int = 0
    stop: tuple[str, ...] = ()

    def stop_reason(self, generated: int, text: str) -> str:
        """Why a run that has generated ``generated`` tokens making ``text`` stops now, or ""."""
        from engine.tokenizers.text import render_bytes

        if self.max_new and generated >= self.max_new:
            return f"stopped after {generated} new tokens (the maximum)"
        for s in self.stop:
            if s and s in text:
                return f"stopped at the stop sequence {render_bytes(s.encode('utf-8'), whitespace='chips')}"
        return ""


class RateMeter:
    """Tokens per second over the last few steps of a run (what Run really delivers)."""

    def __init__(self, window: int = 10):
        self.window = window
        self.times: list[float] = []

    def reset(self) -> None:
        self.times.clear()

    def tick(self, now: float | None = None) -> None:
        self.times.append(time.perf_counter() if now is None else now)
        del self.times[:-self.window]

    def rate(self) -> float | None:
        """Steps per second, or None before two steps."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def parse_stop_sequences(text: str) -> tuple[str, ...]:
    r"""'\n\n | END' -> ('\n\n', 'END'): separated by |, \n and \t escapes, \| for a bar, spaces around trimmed."""
    parts, cur, i = [], "", 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur += {"n": "\n", "t": "\t", "|": "|", "\\": "\\"}.get(text[i + 1], "\\" + text[i + 1])
            i += 2
            continue
        if c == "|":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return tuple(p.strip(" ") for p in parts if p.strip(" "))
