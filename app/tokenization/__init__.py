"""The Tokenization pane: how text becomes tokens, encodings compared, ids decoded, a BPE trained by the user."""

from app.tokenization.pane import TokenizationPane

__all__ = ["TokenizationPane"]
