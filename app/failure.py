"""A failed job, as one object (Qt-free: the panes' state objects use it too)."""

import traceback


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's mistake (bad input, a file that cannot be read), to be shown, not reported:
    an engine.errors.UserError (CheckpointError, HFModelError, TokenizerError, ChatTemplateError, ...). Any other
    exception, a ValueError raised inside torch or numpy included, is a bug."""
    from engine.errors import UserError

    return isinstance(exc, UserError)


class JobFailed:
    """What a job delivers instead of its result when it raised."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.message = str(exc) or type(exc).__name__
        self.expected = is_user_error(exc)  # the user's mistake: show it; else a bug: report it
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def __repr__(self):
        return f"JobFailed({type(self.exc).__name__}: {self.message})"
