"""Label directions of an :class:`~core.analysis.Analysis`: is each one interpretable, and as what?

Two labellers share one interface: ``offline`` (default, no network; see
:mod:`core.label.offline`) and ``llm`` (an OpenAI-compatible endpoint; see
:mod:`core.label.llm`). Manual labels come from the dashboard and live in the same
store (:mod:`core.label.store`). Each direction is shown to a labeller as ``k`` tokens
of one end, as in the original post (15 tokens), and both ends are labelled: the sign
rule (:func:`core.svd.project.token_signs`) only decides which end is called "top". The
``bottom`` end is the most negative projections, strongest first: the top end of the
negated direction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.analysis import Analysis
from core.errors import SpecError
from core.label.offline import OfflineLabeller, OfflineParams, load_embedder
from core.label.store import ENDS, LabelRecord, reading
from core.progress import Progress, quiet
from core.query import check_component, directions, kind_result
from core.settings import HEAD_KINDS, Settings

LABELLERS = ("offline", "llm")


@dataclass(frozen=True)
class DirectionLabel:
    """One labeller's verdict on one direction.

    Attributes:
        matrix: matrix kind.
        layer: block index.
        head: head for per-head kinds, else ``None``.
        index: singular-vector index.
        control: whether it is a random-control direction.
        labeller: ``offline`` or ``llm:<model>``.
        tokens: the tokens of ``end`` the labeller saw, strongest first.
        interpretable: the yes/no verdict.
        label: the concept or theme ("" if none).
        score: offline z-score; ``None`` for the LLM.
        detail: labeller-specific extras (percentile, LLM responses, ...).
        end: which end of the direction was labelled (``top`` or ``bottom``).
    """

    matrix: str
    layer: int
    head: int | None
    index: int
    control: bool
    labeller: str
    tokens: tuple[str, ...]
    interpretable: bool
    label: str
    score: float | None
    detail: dict[str, Any]
    end: str = "top"

    def to_json(self) -> dict[str, Any]:
        return {
            "matrix": self.matrix,
            "layer": self.layer,
            "head": self.head,
            "index": self.index,
            "control": self.control,
            "end": self.end,
            "labeller": self.labeller,
            "interpretable": self.interpretable,
            "label": self.label,
            "score": None if self.score is None else round(self.score, 4),
            "tokens": list(self.tokens),
            **self.detail,
        }

    def to_record(self, model: str, weights_hash: str, settings: Settings) -> LabelRecord:
        """The store record of this verdict, made under ``settings``'s reading."""
        return LabelRecord(
            model=model,
            weights_hash=weights_hash,
            matrix=self.matrix,
            layer=self.layer,
            head=self.head,
            index=self.index,
            labeller=self.labeller,
            interpretable=self.interpretable,
            label=self.label,
            score=self.score,
            tokens=", ".join(self.tokens),
            control=self.control,
            end=self.end,
            **reading(settings),
        )


def layer_spans(spec: str) -> list[tuple[int, int]]:
    """``"all"`` -> ``[]``; ``"3"``, ``"0,2,5"`` or ``"4-7"`` -> inclusive ``(first, last)``
    spans, read without knowing the model (so a bad spec fails before any loading).

    Raises:
        SpecError: malformed, or a range that runs backwards.
    """
    if spec.strip().lower() == "all":
        return []
    spans: list[tuple[int, int]] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                spans.append((int(a), int(b)))
            else:
                spans.append((int(part), int(part)))
    except ValueError as exc:
        raise SpecError(f"Cannot read layers {spec!r}; use 'all', '3', '0,2,5' or '4-7'.") from exc
    for first, last in spans:
        if first > last:
            raise SpecError(f"The layer range {first}-{last} runs backwards; write {last}-{first}.")
    return spans


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``"all"``, ``"3"``, ``"0,2,5"`` or ``"4-7"`` (inclusive) as a sorted list of layers.

    Raises:
        SpecError: malformed, a backwards range, or a layer out of range (checked on the
            ends of each range before it is built, so a huge range costs nothing).
    """
    spans = layer_spans(spec)
    if not spans:
        return list(range(n_layers))
    for a, b in spans:
        for x in (a, b):
            if not 0 <= x < n_layers:
                raise SpecError(
                    f"Layer {x} is out of range; this model has layers 0 to {n_layers - 1}."
                )
    return sorted({x for a, b in spans for x in range(a, b + 1)})


def check_ends(ends: Sequence[str]) -> tuple[str, ...]:
    """``ends`` in :data:`~core.label.store.ENDS` order, each once.

    Raises:
        SpecError: an unknown end, or none.
    """
    bad = [e for e in ends if e not in ENDS]
    if bad or not ends:
        what = repr(bad[0]) if bad else "none"
        raise SpecError(f"Unknown end {what}; use top, bottom or both.")
    return tuple(e for e in ENDS if e in ends)


def token_sets(
    analysis: Analysis,
    kind: str,
    layers: Sequence[int],
    n: int,
    k: int = 15,
    heads: Sequence[int] | None = None,
    control: bool = False,
    end: str = "top",
) -> Iterator[tuple[int, int | None, int, tuple[str, ...]]]:
    """``(layer, head, index, k raw tokens of end)`` for the first ``n`` directions of
    each component: the ``top`` end's largest projections, or the ``bottom`` end's most
    negative ones (strongest first). A control has one component per layer (reported
    with head ``None``).
    """
    check_ends([end])
    has_gate = analysis.meta.gated
    per_head = kind in HEAD_KINDS
    # A model without a gate is told so, not told to rebuild a cache that cannot hold one.
    check_component(analysis.meta, kind, 0, 0 if per_head else None, has_gate)
    kind_result(analysis, kind, control)
    for layer in layers:
        if control or not per_head:
            comps: list[int | None] = [0 if per_head else None]
        else:
            comps = list(heads) if heads is not None else list(range(analysis.meta.n_heads))
        for head in comps:
            check_component(analysis.meta, kind, layer, head, has_gate)
            for d in directions(analysis, kind, layer, head, n=n, k=k, control=control):
                toks = d.top if end == "top" else d.bottom
                yield layer, None if control else head, d.index, tuple(t for t, _, _ in toks)


def offline_labeller(
    analysis: Analysis,
    params: OfflineParams = OfflineParams(),
    device: str = "cpu",
    concepts: Sequence[str] | None = None,
) -> OfflineLabeller:
    """An offline labeller whose null sets are drawn from ``analysis``'s vocabulary
    (concept embeddings cached under the analysis's cache directory).
    """
    return OfflineLabeller(
        load_embedder(device), analysis.tokens.raw, params, concepts, analysis.settings.cache_dir
    )


def offline_judge(analysis: Analysis) -> Callable[[Sequence[tuple[str, ...]]], list[bool]]:
    """The offline labeller as a judge (``core.decompose.report.Judge``): token sets to
    interpretable verdicts, in order.
    """
    labeller = offline_labeller(analysis)

    def judge(sets: Sequence[tuple[str, ...]]) -> list[bool]:
        return [s.interpretable for s in labeller.score_many(sets, name=False)]

    return judge


def label_offline(
    labeller: OfflineLabeller,
    items: Sequence[tuple[int, int | None, int, tuple[str, ...]]],
    kind: str,
    control: bool = False,
    end: str = "top",
) -> list[DirectionLabel]:
    """Offline verdicts for ``items`` from :func:`token_sets` (of ``end``)."""
    scores = labeller.score_many([toks for *_, toks in items])
    return [
        DirectionLabel(
            matrix=kind,
            layer=layer,
            head=head,
            index=index,
            control=control,
            labeller="offline",
            tokens=toks,
            interpretable=s.interpretable,
            label=s.label,
            score=s.z,
            detail={"percentile": round(s.percentile, 4), "alternatives": list(s.alternatives)},
            end=end,
        )
        for (layer, head, index, toks), s in zip(items, scores)
    ]


def label_llm(
    labeller: Any,
    items: Sequence[tuple[int, int | None, int, tuple[str, ...]]],
    kind: str,
    control: bool = False,
    progress: Progress = quiet,
    end: str = "top",
) -> list[DirectionLabel]:
    """LLM verdicts for ``items`` of ``end`` (``labeller`` is a
    :class:`~core.label.llm.LLMLabeller`).
    """
    out = []
    for i, (layer, head, index, toks) in enumerate(items):
        progress(i / max(1, len(items)), f"LLM labelling {kind} L{layer} #{index}")
        v = labeller.label(toks)
        out.append(
            DirectionLabel(
                matrix=kind,
                layer=layer,
                head=head,
                index=index,
                control=control,
                labeller=labeller.name,
                tokens=toks,
                interpretable=v.interpretable,
                label=v.label,
                score=None,
                detail={"response": v.response, "verifier_response": v.verifier_response},
                end=end,
            )
        )
    progress(1.0, "done")
    return out


#: Blocks the statistics compare: OV heads, MLP in and MLP out (as in the post).
SWEEP_KINDS: tuple[str, ...] = ("ov", "mlp_in", "mlp_out")


def sweep_offline(
    analysis: Analysis,
    kinds: Sequence[str] = SWEEP_KINDS,
    layers: Sequence[int] | None = None,
    n: int = 30,
    k: int = 15,
    control: bool = True,
    labeller: OfflineLabeller | None = None,
    progress: Progress = quiet,
    ends: Sequence[str] = ENDS,
) -> list[DirectionLabel]:
    """Offline verdicts on ``ends`` (default both) of the first ``n`` directions of every
    component of ``kinds`` (those the cache entry holds), and of their random controls
    when ``control``.
    """
    ends = check_ends(ends)
    lab = labeller or offline_labeller(analysis)
    have = [kd for kd in kinds if kd in analysis.svd.kinds]
    groups = [(c, e) for c in ([False, True] if control else [False]) for e in ends]
    out: list[DirectionLabel] = []
    steps = max(1, len(have) * len(groups))
    for i, kind in enumerate(have):
        n_layers = 1 if kind == "embed" else analysis.meta.n_layers
        ls = list(layers) if layers is not None else list(range(n_layers))
        for j, (c, e) in enumerate(groups):
            what = f"labelling {'control ' if c else ''}{kind} ({e} ends)"
            progress((i * len(groups) + j) / steps, what)
            items = list(token_sets(analysis, kind, ls, n, k, None, c, e))
            out += label_offline(lab, items, kind, c, e)
    progress(1.0, "done")
    return out


def store_labels(analysis: Analysis, labels: Sequence[DirectionLabel]) -> int:
    """Write verdicts to ``<cache_dir>/labels.sqlite``; returns how many."""
    from core.label.store import LabelStore

    meta = analysis.meta
    with LabelStore.in_cache(analysis.settings.cache_dir) as store:
        return store.put(
            r.to_record(meta.name, meta.weights_hash, analysis.settings) for r in labels
        )
