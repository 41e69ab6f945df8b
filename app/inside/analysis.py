"""What the Inside pane shows, computed in its worker thread from a model, its tokenizer and token ids. No Qt here.

``analyse`` runs the model once and returns an :class:`Analysis` of plain data; it keeps the pass (an
``engine.interpret.Trace``) so that picking another layer, position or token later costs only that part's work
(``attention_of``, ``lens_chunk``, ``head_of``, ``neighbours_of``), never a second forward pass.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.tokenizers.text import render_bytes

TOP_K = 5  # predictions shown when hovering a token
LENS_FIRST = 16  # lens positions computed with the text's first pass, ending at the chosen one (what is in view)
LENS_CHUNK = 24  # lens positions per later job: about 0.3 s for GPT-2 on one thread, so other jobs wait little
LENS_CELL = 10  # characters of a token in a lens cell
HEAD_K = 12  # rows of the head's table
NEIGHBOURS = 12


@dataclass
class Analysis:
    """One text through one model: every position's prediction, and the pass kept for the other views."""
    ids: list[int]  # the ids the model saw (the last block_size of the text's)
    skipped: int  # ids before the window (the text was longer than the context)
    labels: list[str]  # visible text of each id
    pieces: list[str]  # each id's share of the decoded text (may be "" for part of a character)
    shown: list[str]  # the pieces as the text view shows them ("" drawn as a thin marker, to hover)
    spans: list[tuple[int, int]]  # where each shown piece lies in that text, in UTF-16 units: (start, length)
    losses: list[float]  # T-1: position t's loss on id t+1
    probs: list[float]
    ranks: list[int]
    buckets: list[int]
    top: list[list[tuple[int, float]]]  # T rows of (id, probability), the model's guesses after each position
    entropy: list[float]
    mean_loss: float
    perplexity: float
    bits_per_char: float
    n_layer: int
    n_head: int
    trace: object = field(repr=False)  # engine.interpret.Trace: only touched in the worker thread

    def release(self):
        """Drop the kept pass (call in the worker: freeing its tensors takes a while)."""
        self.trace = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def window_note(self) -> str:
        if not self.skipped:
            return ""
        return (f"the text is {self.skipped + self.n} tokens; the model sees at most {self.n}, so these are the last "
                f"{self.n} (the window slides, as in the Generation pane)")


def token_pieces(tokenizer, ids) -> list[str]:
    """Each id's share of the decoded text: complete characters its bytes finish ("" for the start of an emoji)."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(tokenizer.token_bytes(i)) for i in ids]


def analyse(model, tokenizer, ids, k: int = TOP_K) -> Analysis:
    """Run ``model`` over ``ids`` (sliding to the last ``block_size``) and score every position."""
    from engine import interpret

    ids = list(ids)
    start = interpret.context_window(ids, model.config.block_size)
    seen = ids[start:]
    t = interpret.trace(model, seen)
    p = interpret.predictions(t.logits, seen, k=k)
    labels = [render_bytes(tokenizer.token_bytes(i), whitespace="chips") for i in seen]
    pieces = token_pieces(tokenizer, seen)
    shown = [piece if piece else "·" for piece in pieces]
    lengths = [len(s.encode("utf-16-le", "surrogatepass")) // 2 for s in shown]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist() if lengths else []
    n_chars = sum(len(s) for s in pieces[1:])
    return Analysis(
        ids=seen, skipped=start, labels=labels, pieces=pieces, shown=shown, spans=list(zip(starts, lengths)),
        losses=p.losses.tolist(), probs=p.probs.tolist(), ranks=p.ranks.tolist(), buckets=p.buckets().tolist(),
        top=[list(zip(i.tolist(), q.tolist())) for i, q in zip(p.top_ids, p.top_probs)],
        entropy=p.entropy.tolist(), mean_loss=p.mean_loss, perplexity=p.perplexity,
        bits_per_char=p.bits_per_char(n_chars), n_layer=model.config.n_layer, n_head=model.config.n_head,
        trace=t.without_logits())  # scored: freeing them later would cost the UI thread


THUMB = 96  # thumbnails are at most this many cells across


@dataclass
class LayerAttention:
    """One layer's attention weights, with what drawing them needs computed here rather than on the UI thread."""
    layer: int
    maps: np.ndarray  # (n_head, T, T) float32: query rows, key columns
    tops: list[float]  # per head: the weight drawn brightest (see colour_top)
    thumbs: np.ndarray  # (n_head, t, t) with t <= THUMB: each cell the largest weight of the block it covers
    thumb_colours: np.ndarray | None = None  # (n_head, t, t, 4) uint8 RGBA: thumbs through the colour map, ready
    colours: np.ndarray | None = None  # (n_head, T, T, 4) uint8 RGBA: the maps coloured, ready to paint


def colour_top(m: np.ndarray) -> float:
    """The weight drawn brightest: the 99th percentile of the causal triangle (the first rows, which attend to a
    handful of keys only, would otherwise set the scale and leave the rest dark)."""
    rows, cols = np.tril_indices(m.shape[0])
    values = m[rows, cols]
    return max(1e-6, float(np.quantile(values, 0.99))) if values.size else 1.0


def max_pool(maps: np.ndarray, size: int = THUMB) -> np.ndarray:
    """(n, T, T) -> (n, t, t), t = ceil(T / b) <= size, each cell the maximum of a b x b block."""
    n, T, _ = maps.shape
    b = -(-T // size)
    if b == 1:
        return maps
    t = -(-T // b)
    padded = np.zeros((n, t * b, t * b), dtype=maps.dtype)
    padded[:, :T, :T] = maps
    return padded.reshape(n, t, b, t, b).max(axis=(2, 4))


def colourise(values: np.ndarray, tops: list[float], lut: np.ndarray) -> np.ndarray:
    """(n, ...) values, each of the n scaled from 0 to its top, through ``lut`` (256, 4) uint8 -> (n, ..., 4)."""
    scale = np.asarray(tops, dtype=np.float32).reshape((-1,) + (1,) * (values.ndim - 1))
    index = np.clip(values / scale * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(lut[index])


def attention_of(a: Analysis, layer: int, lut: np.ndarray | None = None) -> LayerAttention:
    """Layer ``layer``'s maps; with a colour ``lut`` (256, 4) its thumbnails come coloured, ready to paint."""
    maps = a.trace.attention(layer).numpy()
    tops = [colour_top(m) for m in maps]
    thumbs = max_pool(maps)
    if lut is None:
        return LayerAttention(layer, maps, tops, thumbs)
    return LayerAttention(layer, maps, tops, thumbs, colourise(thumbs, tops, lut),
                          colourise(maps, tops, lut))


def short(label: str, n: int = LENS_CELL) -> str:
    return label if len(label) <= n else label[:n - 1] + "…"


def label_source(vocab_labels: list, tokenizer):
    """id -> visible text, from the pane's vocabulary labels when they are ready, else from the tokenizer."""
    def label(i: int) -> str:
        if 0 <= i < len(vocab_labels) and vocab_labels[i] is not None:
            return vocab_labels[i]
        try:
            return render_bytes(tokenizer.token_bytes(i), whitespace="chips")
        except ValueError:
            return f"<id {i}>"
    return label


def lens_headers(a: Analysis) -> list[str]:
    """The lens's column titles: each position's token and the token that follows it in the text."""
    return [f"{p}: {short(a.labels[p])}\n→ {short(a.labels[p + 1]) if p + 1 < a.n else '?'}" for p in range(a.n)]


@dataclass
class LensChunk:
    """The logit lens at some positions, with each cell's text made here (off the UI thread)."""
    positions: list[int]
    top_ids: np.ndarray  # (n_layer, P) int64: the top token if the model stopped after this layer
    top_probs: np.ndarray  # (n_layer, P) float32
    final_probs: np.ndarray  # (n_layer, P): the probability this layer gives the final choice (the last row's top)
    texts: list[list[str]]  # [layer][column]: the top token, shortened, and the final choice's probability
    top_labels: list[list[str]]  # [layer][column]: the top token in full (for hover)


def lens_chunk(a: Analysis, positions, label) -> LensChunk:
    """The lens of ``a`` at ``positions``; ``label(id)`` gives a token's visible text (see ``label_source``)."""
    from engine import interpret

    lens = interpret.lens_at(a.trace, positions)
    top_ids = lens.top_ids.numpy()
    final = lens.final_probs.float().numpy()
    full = [[label(int(i)) for i in row] for row in top_ids]
    texts = [[f"{short(t)}\n{100 * p:.0f}%" for t, p in zip(row, probs)] for row, probs in zip(full, final)]
    return LensChunk(list(lens.positions), top_ids, lens.top_probs.float().numpy(), final, texts, full)


def next_lens_positions(done, chosen: int, visible: tuple[int, int], size: int = LENS_CHUNK) -> list[int]:
    """The positions the next lens job computes: those in view first, then the nearest to the chosen one.

    ``done``: per position, whether it has its lens already; ``visible``: the first and last position in view.

    >>> next_lens_positions([False] * 10, 9, (6, 9), size=4)
    [6, 7, 8, 9]
    >>> next_lens_positions([False] * 6 + [True] * 4, 9, (6, 9), size=3)
    [3, 4, 5]
    """
    todo = [p for p in range(max(0, visible[0]), min(len(done), visible[1] + 1)) if not done[p]]
    if len(todo) < size:
        rest = sorted((p for p, ok in enumerate(done) if not ok and p not in todo), key=lambda p: abs(p - chosen))
        todo += rest[:size - len(todo)]
    return sorted(todo[:size])


@dataclass
class HeadRow:
    id: int
    logit: float
    prob: float


@dataclass
class HeadSummary:
    position: int
    hidden: list[float]  # the final norm's output at the position
    hidden_norm: float
    logsumexp: float
    rows: list[HeadRow]  # the top HEAD_K by probability
    vocab: int
    logit_range: tuple[float, float]


def head_of(a: Analysis, position: int, k: int = HEAD_K) -> HeadSummary:
    from engine import interpret

    v = interpret.head_view(a.trace, min(max(position, 0), a.n - 1), k=k)
    rows = [HeadRow(int(i), float(v.logits[i]), float(v.probs[i])) for i in v.top_ids]
    return HeadSummary(v.position, v.hidden.tolist(), float(v.hidden.norm()), v.logsumexp, rows, v.logits.numel(),
                       (float(v.logits.min()), float(v.logits.max())))


@dataclass
class Embeddings:
    """The model's embedding table in two dimensions, and its position scheme as one or more pictures."""
    coords: object  # numpy (N, 2)
    explained: tuple[float, float]
    scheme: str  # "learned" | "rope" | "alibi"
    pictures: list  # numpy (rows, cols) each: the scheme's table; ALiBi has one per head
    picture_titles: list[str]  # one per picture
    picture_axes: tuple[str, str]  # (x, y) axis titles
    levels: tuple[float, float] | None = None  # one colour scale for every picture (None: each its own)


POSITION_PICTURE_LEN = 128  # positions drawn for RoPE and ALiBi (learned draws its whole table)


def embeddings_of(model, n_valid: int) -> Embeddings:
    from engine import interpret

    coords, explained = interpret.embedding_pca(model, n_valid=n_valid)
    pos = model.config.pos
    n = min(POSITION_PICTURE_LEN, model.config.block_size)
    levels = None
    if pos == "learned":
        pictures = [interpret.position_similarity(model).numpy()]
        titles = ["learned positions: cosine similarity of every pair of position embeddings"]
        axes = ("position", "position")
    elif pos == "rope":
        pictures = [interpret.rope_angles(model, n).cos().T.numpy()]  # (pairs, positions)
        titles = ["RoPE: cos of the angle each frequency pair of q and k is turned by at each position "
                  "(pair 0 turns fastest)"]
        axes = ("position", "frequency pair")
    else:
        bias = interpret.alibi_biases(model, n)  # (n_head, n, n), -inf above the diagonal: drawn empty
        bias = torch.where(torch.isinf(bias), torch.full_like(bias, float("nan")), bias)
        pictures = list(bias.numpy())
        slopes = model.alibi_slopes.detach().float().cpu().tolist()
        low = float(np.nanmin(bias.numpy())) if n > 1 else -1.0
        levels = (low, 0.0)  # one scale: heads differ only by their slope, which a per-head scale would hide
        titles = [f"ALiBi head {h} of {len(slopes)}: added to a query's score for each earlier key, −{slope:.3g} × "
                  f"distance (0 bright, {low:.1f} dark: one scale for all heads)" for h, slope in enumerate(slopes)]
        axes = ("key position", "query position")
    return Embeddings(coords.numpy(), tuple(float(e) for e in explained), pos, pictures, titles, axes, levels)


def neighbours_of(model, token_id: int, n_valid: int, k: int = NEIGHBOURS) -> list[tuple[int, float]]:
    from engine import interpret

    return interpret.nearest_tokens(model, token_id, k=k, n_valid=n_valid)
