"""The Inside pane: embeddings, attention, the logit lens and every position's prediction, on the Generation pane's
model."""
