"""The Training pane: a form, live curves and samples over training processes it starts or a run folder it follows.

The training processes run ``engine.train`` (spawned, see :mod:`app.training.runner`); nothing of this package, and
so no Qt, is imported in them.
"""
