"""The Runs view of the Training pane: the run library, overlaid curves, and A/B experiments (issue 9)."""
