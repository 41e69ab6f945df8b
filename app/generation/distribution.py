"""What the probability chart shows, computed from cached logits: no Qt, no model forward.

``chart_data(logits, settings, ...)`` runs the decoding stages once and returns the rows of the chart (the top-N
tokens by the model's own probability, with the probability before and after the decoding controls and the stage that
cut each one), the entropies, and where the top-p nucleus ends.

    >>> data = chart_data(torch.tensor([2.0, 1.0, 0.0]), DecodeSettings(top_k=2), (), 3, str)
    >>> [(r.id, r.cut_by) for r in data.rows]
    [(0, ''), (1, ''), (2, 'top_k')]
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from app.generation.fast_stages import StageCache
from engine.decoding import DecodeSettings, entropy, probabilities
from engine.threads import one_torch_thread

STAGE_TITLES = {
    "repetition_penalty": "repetition penalty",
    "temperature": "temperature",
    "top_k": "top-k",
    "top_p": "top-p",
    "min_p": "min-p",
    "greedy": "greedy",
}

_CACHE = StageCache()  # the UI thread's: a control change reruns only the stages it changed


@dataclass
class Row:
    id: int
    label: str  # the token's bytes made visible (engine.tokenizers.text.render_bytes, as chips)
    raw: float  # probability under the raw softmax of the logits, before any decoding control
    final: float  # probability the sampler uses, after every stage
    cut_by: str = ""  # "" if the token can still be drawn, else the stage that removed it ("top_k", "greedy", ...)
    pre_cut: float = 0.0  # a cut token's probability just before the stage that cut it (after the stages before)
    extra: bool = False  # not in the top N, shown because it matters (the most likely token after the controls)


@dataclass
class ChartData:
    rows: list[Row]
    entropy_before: float  # bits, raw softmax
    entropy_after: float  # bits, the distribution the sampler uses
    n_kept: int  # tokens with a chance of being drawn
    vocab_size: int
    greedy: bool
    top_p_row: int | None = None  # the nucleus is rows[:top_p_row]; None if top-p is off or not a prefix of the rows
    top_p_info: dict = field(default_factory=dict)


def chart_data(logits: torch.Tensor, settings: DecodeSettings, previous_ids: Sequence[int], top_n: int,
               label: Callable[[int], str], extra_ids: Sequence[int] = ()) -> ChartData:
    """The chart rows for next-token ``logits`` (V,) under ``settings``.

    Rows are ordered by the raw probability, so they stay put while a control moves and only the bars change.
    """
    with one_torch_thread():
        return _chart_data(logits, settings, previous_ids, top_n, label, extra_ids)


def _chart_data(logits, settings, previous_ids, top_n, label, extra_ids) -> ChartData:
    staged = _CACHE.stages(logits, settings, previous_ids)
    first, last = staged[0], staged[-1]  # last: what engine.decoding.probabilities returns
    greedy = settings.temperature == 0

    n_vocab = first.logits64.numel()
    n = min(top_n, n_vocab)
    once = first.derived  # computed once per step: the raw distribution does not move with the controls
    if ("top", n) not in once:
        once["top", n] = torch.topk(first.probs, n).indices.tolist()
    if "entropy" not in once:
        once["entropy"] = entropy(first.probs)
    wanted = list(once["top", n])
    for extra in (last.best(), *extra_ids):
        if extra not in wanted and 0 <= extra < n_vocab:
            wanted.append(extra)

    raw_list = first.probs_at(wanted)
    final_list = last.probs_at(wanted)
    kept = [stage.kept_at(wanted) for stage in staged[1:]]  # kept[s][i]: row i survived stage s + 1
    before: dict[int, list[float]] = {}  # the probabilities of the rows before each stage that cut one of them
    rows = []
    for i, tid in enumerate(wanted):
        cut_by, pre_cut = "", 0.0
        for s, stage in enumerate(staged[1:]):
            if not kept[s][i]:
                if s not in before:
                    before[s] = staged[s].probs_at(wanted)
                cut_by, pre_cut = ("greedy" if stage.info.get("greedy") else stage.name), before[s][i]
                break
        else:
            if greedy and final_list[i] == 0.0:
                cut_by, pre_cut = "greedy", final_list[i]
        rows.append(Row(id=tid, label=label(tid), raw=raw_list[i], final=final_list[i], cut_by=cut_by,
                        pre_cut=pre_cut, extra=i >= n))

    data = ChartData(rows=rows, entropy_before=once["entropy"], entropy_after=last.entropy_bits(),
                     n_kept=last.n_possible(), vocab_size=n_vocab, greedy=greedy)
    for s, stage in enumerate(staged[1:] if not greedy else ()):  # greedy keeps one token: no nucleus to mark
        if stage.name == "top_p":
            data.top_p_info = dict(stage.info)
            n_in = sum(kept[s])
            if 0 < n_in < len(rows) and all(kept[s][:n_in]):
                data.top_p_row = n_in
    return data


def alternatives(logits: torch.Tensor, settings: DecodeSettings, previous_ids: Sequence[int],
                 k: int = 5) -> list[tuple[int, float, float]]:
    """The k most likely tokens of one step: [(id, probability after the controls, raw probability)]."""
    final = probabilities(logits, settings, list(previous_ids))
    raw = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(final + raw * 1e-9, min(k, final.numel())).indices.tolist()  # ties in `final` broken by raw
    return [(t, float(final[t]), float(raw[t])) for t in top]


def number_format(values, log: bool = False) -> Callable[[float], str]:
    """One format for every number a chart shows at once, chosen by the smallest non-zero one:
    percent with 1 decimal, with 3 decimals, or scientific for all; natural log-probabilities with 2 decimals.

    >>> [number_format([0.5, 0.02])(v) for v in (0.5, 0.02)]
    ['50.0%', '2.0%']
    >>> [number_format([0.5, 3e-5])(v) for v in (0.5, 3e-5)]
    ['50.000%', '0.003%']
    >>> [number_format([0.5, 3e-7])(v) for v in (0.5, 3e-7)]
    ['5.0e-01', '3.0e-07']
    """
    if log:
        return lambda p: f"{math.log(p):.2f}" if p > 0 else "−∞"
    smallest = min((v for v in values if v > 0), default=1.0)
    if smallest >= 0.000999:  # a hair below the bound: 0.001 computed as 0.000999... keeps its percent
        return lambda p: f"{p:.1%}" if p > 0 else "0"
    if smallest >= 0.00000999:
        return lambda p: f"{p:.3%}" if p > 0 else "0"
    return lambda p: f"{p:.1e}" if p > 0 else "0"


def percent(p: float) -> str:
    """A probability as text that never rounds a small one to zero: 0.25 -> '25.0%', 0.0005 -> '0.05%',
    3e-5 -> '3.0e-05'. GPT-2's 50k tokens each have about 0.002% under an untrained model: "0.0%" would say
    they cannot be drawn.
    """
    if p == 0:
        return "0%"
    if p < 0.0001:
        return f"{p:.1e}"
    return f"{p:.1%}" if p >= 0.001 else f"{p:.2%}"


def max_entropy_bits(vocab_size: int) -> float:
    """Entropy of the uniform distribution: what an untrained model is close to."""
    return math.log2(vocab_size)


@dataclass
class Segment:
    id: int
    x0: float  # where the token's slice of the cumulative distribution starts, in [0, 1]
    width: float  # its probability
    drawn: bool = False


@dataclass
class Strip:
    segments: list[Segment]
    u: float | None  # the uniform draw; None for a forced token
    title: str  # rich text
    labels: dict[int, str] = field(default_factory=dict)  # token text of the slices wide enough to label
    detail: str = ""  # what the strip shows, for its tooltip


def draw_strip(probs: torch.Tensor, token_id: int, u: float | None, label: Callable[[int], str], step: int,
               max_segments: int = 300) -> Strip:
    """Where a draw fell: each token's slice of [0, 1) in token-id order, the order ``engine.decoding.sample`` walks.

    Only the ``max_segments`` most likely tokens (and the drawn one) get a slice drawn; the rest stay background.
    """
    p = probs.double()
    total = float(p.sum())
    cdf = torch.cumsum(p, dim=0) / total  # (V,)
    n = min(max_segments, int((p > 0).sum()))
    ids = set(torch.topk(p, n).indices.tolist()) | {token_id}
    starts = (cdf - p / total).tolist() if p.numel() <= 4 * max_segments else None
    segments = []
    for i in sorted(ids):
        x0 = starts[i] if starts is not None else float(cdf[i]) - float(p[i]) / total
        segments.append(Segment(i, x0, float(p[i]) / total, drawn=i == token_id))
    chosen = _escape(label(token_id))
    prob = float(p[token_id]) / total
    shown = number_format([prob])(prob)  # as the chart would show it
    if u is None:
        title = (f"<b>◀ Previous step</b> (token {step + 1}) was forced: <b><tt>{chosen}</tt></b> "
                 f"({shown}); no draw")
        detail = "A token chosen by hand: nothing was drawn."
    else:
        title = (f"<b>◀ Previous step's draw</b> (token {step + 1}): u = {u:.3f} → <b><tt>{chosen}</tt></b> "
                 f"({shown})")
        detail = ("This strip is the distribution token {n} was drawn from, not the chart above: a uniform number "
                  "u in [0, 1) picks the token whose slice contains it. Slices are laid out in token-id order, the "
                  "order the sampler walks.").format(n=step + 1)
    labels = {s.id: label(s.id) for s in segments if s.width >= 0.02}
    return Strip(segments, u, title, labels, detail)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def step_tooltip(snap, step: int, label: Callable[[int], str]) -> str:
    """Rich text for hovering generated token ``step`` of a Snapshot: its probability, how it was chosen, and the
    most likely tokens at that step."""
    if snap is None or step >= len(snap.history):
        return ""
    rec = snap.history[step]
    logits = rec.logits_before  # read once: the worker may drop old logits to save memory
    if logits is not None:
        top = alternatives(logits, rec.settings or DecodeSettings(), snap.ids[: rec.index], k=6)
    else:  # logits dropped to save memory: the record's own top list, without raw probabilities
        top = [(tid, p, None) for tid, p in rec.alternatives[:6]]
    if rec.token_id not in [t[0] for t in top]:  # an unlikely draw or a forced token: show it too
        top.append((rec.token_id, rec.prob, None))
    rows = []
    for tid, p, raw in top:
        mark = "▶" if tid == rec.token_id else ""
        raw_text = f"raw {percent(raw)}" if raw is not None else ""
        rows.append(f"<tr><td>{mark}</td><td><tt>{_escape(label(tid))}</tt></td>"
                    f"<td align=right>&nbsp;{percent(p)}</td>"
                    f"<td align=right style='color:gray'>&nbsp;{raw_text}</td></tr>")
    how = "forced by hand" if rec.forced else f"drawn with u = {rec.u:.3f}"
    return (f"<b>Token {step + 1}: <tt>{_escape(label(rec.token_id))}</tt></b> — {percent(rec.prob)}, "
            f"{how}<br>Most likely tokens at that step (after the controls):<table>{''.join(rows)}</table>")
