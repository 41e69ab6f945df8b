"""The Generation pane: step through next-token prediction one token at a time.

pane.py wires the widgets (chart.py, controls.py, text_view.py, vocab_search.py) to a GenerationSession that runs on
a worker thread (app/jobs.py's JobRunner); distribution.py computes what the chart shows from cached logits; model_source.py
loads or builds the model.
"""
