"""The Tokenization pane (``pane.TokenizationPane``): how text becomes tokens, encodings compared, ids decoded, a BPE
trained by the user.

Nothing is imported here, so that the Qt-free modules of this package (``analysis``, ``encodings``, ``jobs``,
``bpe_training``) can be imported without Qt: the BPE training process imports ``bpe_training`` alone.
"""
