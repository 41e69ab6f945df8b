"""The Generation pane: step through next-token prediction one token at a time.

state.py holds the pane's state without Qt (the model, the session's snapshot, the busy/pending state machine, Run's
limits) and runs every model forward as a job on app/jobs.py's JobRunner; pane.py renders it and forwards the user's
actions; widgets.py builds the widgets (chart.py, controls.py, picker.py, text_view.py, vocab_search.py);
run_control.py drives Run; distribution.py computes what the chart shows from cached logits, through fast_stages.py
(the engine's decoding stages without whole-vocabulary sorts); model_source.py loads or builds the model.
"""
