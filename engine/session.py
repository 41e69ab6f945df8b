"""Step-by-step generation: a prompt, one token at a time, undo, forced tokens and a sliding context window.

The Generation pane drives a GenerationSession (in a worker thread for big models). The session owns the token ids,
the KV cache and the next-token logits; decoding settings are applied per step, so changing a control only re-runs
``engine.decoding`` on ``session.logits``, never the model (``forward_count`` proves it)::

    session = GenerationSession(model, tokenizer)
    session.set_prompt("To be")
    record = session.step(DecodeSettings(temperature=0.8), torch.Generator().manual_seed(0))
    assert session.undo() is record

Vocabulary: ``session.logits`` has ``tokenizer.n_vocab`` entries. A model's vocabulary may be padded past the
tokenizer's (GPT-2's 50257 -> 50304); those padded ids cannot be decoded to text, so they are left out and never drawn.

Empty prompt: the model needs at least one token to predict from, so an empty prompt becomes the tokenizer's
``start_id`` (the one start-token rule, shared with the trainer's samples): the model's beginning-of-sequence token
(a Llama's ``<s>``), else ``<|endoftext|>`` (what GPT-2 saw between documents), else a newline, else id 0. That token
counts as the prompt (``prompt_len`` 1).

Context window: the model sees at most ``block_size`` tokens. Once the text is longer, each step feeds the model the
last ``block_size`` tokens from scratch (a fresh cache), which is exact for every position scheme; ``context_note``
says so.
"""

from dataclasses import dataclass, field

import torch

from engine.decoding import DecodeSettings, probabilities, sample, top_tokens
from engine.errors import UserError

LOGITS_BUDGET = 256 * 2**20  # bytes of past logits kept for undo and re-showing old steps (older ones recomputed)


@dataclass
class StepRecord:
    token_id: int  # the token appended
    prob: float  # its probability under the final distribution it was chosen from
    u: float | None  # the uniform draw of sample() (None when the token was forced)
    logits_before: torch.Tensor | None  # (V,) float32 logits it was chosen from; None once dropped for memory
    settings: DecodeSettings | None  # decoding settings of the step (None: forced without settings)
    alternatives: list[tuple[int, float]] = field(default_factory=list)  # top (id, prob) of that distribution
    index: int = 0  # position of the token in session.ids
    forced: bool = False  # chosen by hand rather than sampled
    window_start: int = 0  # first id the model saw when it produced logits_before (> 0 once the window slid)


class GenerationSession:
    """The state of one generation: ids, cache and next-token logits, with exact undo."""

    def __init__(self, model, tokenizer, *, use_cache: bool = True, n_alternatives: int = 10):
        """
        Args:
            model: a GPT; it is put in eval mode (no dropout while generating).
            tokenizer: the model's tokenizer; its n_vocab must not exceed the model's vocab_size.
            use_cache: keep a KV cache so a step costs one token's compute; False re-runs the whole window each step.
            n_alternatives: how many top (id, prob) pairs each StepRecord keeps for hover text.
        """
        if tokenizer.n_vocab > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.n_vocab} tokens but the model only "
                             f"{model.config.vocab_size}: they do not belong together")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.use_cache = use_cache
        self.n_alternatives = n_alternatives
        self.block_size = model.config.block_size
        self.n_vocab = tokenizer.n_vocab
        self.bos_id = tokenizer.start_id  # an empty prompt starts from it (Tokenizer.start_id: the one rule)
        self.device = next(model.parameters()).device

        self.prompt_text = ""
        self.ids: list[int] = []
        self.prompt_len = 0
        self.logits: torch.Tensor | None = None  # (V,) float32 next-token logits, on the CPU
        self.history: list[StepRecord] = []
        self.forward_count = 0
        self._cache = None  # KVCache holding ids[_cache_start:] or None (rebuilt at the next step)
        self._cache_start = 0
        self._keep_logits = max(1, LOGITS_BUDGET // (4 * self.n_vocab))  # how many records keep their logits

    # -- the state

    @property
    def generated_ids(self) -> list[int]:
        return self.ids[self.prompt_len:]

    @property
    def text(self) -> str:
        """The whole text: prompt and generated tokens."""
        return self.tokenizer.decode(self.ids)

    @property
    def window_start(self) -> int:
        """Index of the first id the model sees for the next token."""
        return max(0, len(self.ids) - self.block_size)

    @property
    def context_note(self) -> str:
        n = self.block_size
        if len(self.ids) < n:
            return ""
        return (f"context full ({n} tokens): the window slides, the model sees the last {n} "
                f"of {len(self.ids)} tokens")

    # -- actions

    def set_prompt(self, text: str, *, allowed_special=()):
        """Start over from text: encode it, run the model, and cache the next-token logits."""
        ids = self.tokenizer.encode(text, allowed_special=allowed_special)
        self.prompt_text = text
        self.ids = list(ids) if ids else [self.bos_id]
        self.prompt_len = len(self.ids)
        self.history = []
        self._cache = None
        self.logits = self._forward_window()

    def step(self, settings: DecodeSettings, generator: torch.Generator) -> StepRecord:
        """Sample the next token with settings (repetition penalty sees all ids so far) and append it."""
        self._check_started()
        probs = probabilities(self.logits, settings, self.ids)
        token, u = sample(probs, generator)
        record = StepRecord(token, float(probs[token]), u, self.logits, settings,
                            top_tokens(probs, self.n_alternatives), index=len(self.ids),
                            window_start=self.window_start)
        self._append(token, record)
        return record

    def force(self, token_id: int, settings: DecodeSettings | None = None) -> StepRecord:
        """Append a token chosen by hand. Its prob is under settings' final distribution (plain softmax if None)."""
        self._check_started()
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < self.n_vocab:
            raise UserError(f"token id {token_id!r} is not in the vocabulary (0..{self.n_vocab - 1})")
        probs = probabilities(self.logits, settings or DecodeSettings(), self.ids)
        record = StepRecord(token_id, float(probs[token_id]), None, self.logits, settings,
                            top_tokens(probs, self.n_alternatives), index=len(self.ids), forced=True,
                            window_start=self.window_start)
        self._append(token_id, record)
        return record

    def undo(self) -> StepRecord | None:
        """Take back the last generated token, restoring ids, cache and logits exactly; None at the prompt."""
        if not self.history:
            return None
        record = self.history.pop()
        self.ids.pop()
        if self._cache is not None and self._cache_start == 0 and self._cache.length > len(self.ids):
            self._cache.truncate(len(self.ids))
        else:
            self._cache = None  # it held a slid window: rebuilt at the next step
        if record.logits_before is not None:
            self.logits = record.logits_before
        else:  # dropped to save memory: recompute (equal up to float rounding, not bit for bit)
            self.logits = self._forward_window()
        return record

    def reset(self):
        """Back to the prompt, without running the model."""
        while self.undo() is not None:
            pass

    # -- the model

    def _check_started(self):
        if self.logits is None:
            raise ValueError("set a prompt first")

    def _append(self, token: int, record: StepRecord):
        self.ids.append(token)
        cache = self._cache
        if (self.use_cache and cache is not None and self._cache_start == 0
                and cache.length == len(self.ids) - 1 and len(self.ids) <= self.block_size):
            idx = torch.tensor([[token]], dtype=torch.long, device=self.device)
            self.logits = self._run(idx, cache)
        else:
            self.logits = self._forward_window()
        self.history.append(record)
        if len(self.history) > self._keep_logits:
            self.history[-self._keep_logits - 1].logits_before = None

    def _forward_window(self) -> torch.Tensor:
        """Run the model on the last block_size ids (a fresh cache when caching) -> next-token logits."""
        window = self.ids[-self.block_size:]
        self._cache_start = len(self.ids) - len(window)
        self._cache = self.model.new_cache(1, max_len=self.block_size) if self.use_cache else None
        idx = torch.tensor([window], dtype=torch.long, device=self.device)
        return self._run(idx, self._cache)

    @torch.no_grad()
    def _run(self, idx, cache) -> torch.Tensor:
        logits, _ = self.model(idx, cache=cache, last_only=True)
        self.forward_count += 1
        return logits[0, -1, :self.n_vocab].float().cpu()
