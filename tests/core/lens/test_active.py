"""Active directions against hand dot products: inputs and outputs hooked from a plain
Hugging Face forward pass, singular vectors from a dense ``torch.linalg.svd``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.errors import SpecError
from core.lens import (
    active_directions,
    direction_values,
    prompt_activations,
    run_prompt,
    with_tokens,
)
from tests.core.reference import centres, component, module, out_matrix
from tests.tiny_models import ARCHS

PROMPT = "a cat and a dog ran across the green field"


def hooked(model, ids, layer: int, processing: str) -> dict[str, torch.Tensor]:
    """What ``layer``'s matrices receive and its writers multiply, from hooks."""
    got: dict[str, torch.Tensor] = {}

    def save(name, pre=False):
        def hook(mod, args, output=None):
            t = args[0] if pre else output
            got[name] = (t[0] if isinstance(t, tuple) else t)[0].detach().double()

        return hook

    hs = [
        module(model, "ln1", layer).register_forward_hook(save("ln1")),
        module(model, "ln2", layer).register_forward_hook(save("ln2")),
        module(model, "ln1", layer).register_forward_pre_hook(save("ln1_in", True)),
        module(model, "ln2", layer).register_forward_pre_hook(save("ln2_in", True)),
        module(model, "attn_out", layer).register_forward_pre_hook(save("z", True)),
        module(model, "mlp_out", layer).register_forward_hook(save("mlp_out")),
    ]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
    finally:
        for h in hs:
            h.remove()
    if processing == "post":  # the bare normalisation of each norm's own input
        for name in ("ln1", "ln2"):
            x = got.pop(f"{name}_in")
            ln = module(model, name, layer)
            if centres(model):
                got[name] = F.layer_norm(x, x.shape[-1:], eps=ln.eps)
            else:
                got[name] = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ln.variance_epsilon)
    return got


def reference_values(a, model, ids, layer: int, side: str, processing: str):
    """``{(kind, head): (values [pos, rank], keep [rank], slack [pos, rank])}`` by hand;
    each singular pair's sign is taken from the analysis's (the sign rule is the cache's
    convention, tested elsewhere).

    ``slack`` bounds what the two vectors' own difference may move a value: by
    Cauchy-Schwarz ``|x.u - x.v| <= |x| |u - v|``. A pair with a small spectral gap (0.2%
    in one tiny NeoX head) is found a little apart by a float32 build and a float64 dense
    SVD (|u - v| ~ 4e-5), and that difference, not the dot product, sets the tolerance.
    """
    got = hooked(model, ids, layer, processing)
    heads = model.config.num_attention_heads
    dh = got["z"].shape[-1] // heads
    out = {}
    kinds = (
        ["ov", "mlp_in", *(["mlp_gate"] if a.meta.gated else [])]
        if side == "read"
        else [
            "ov",
            "mlp_out",
        ]
    )
    for kind in kinds:
        for head in range(heads) if kind == "ov" else (None,):
            W = component(model, kind, layer, head, processing)
            U, S, Vh = torch.linalg.svd(W, full_matrices=False)
            d = a.svd.kinds[kind].decomposition
            c = d.index(layer, head)
            r = d.rank
            if side == "read":
                vecs = U[:, :r]
                mine = d.U[c].double()
                x = got["ln1" if kind == "ov" else "ln2"]
            else:
                vecs = Vh[:r].T
                mine = d.V[c].double()
                if kind == "ov":
                    x = (
                        got["z"][:, head * dh : (head + 1) * dh]
                        @ out_matrix(model, layer, head).double()
                    )
                else:
                    x = got["mlp_out"]  # what the MLP adds to the stream, bias included
            cos = (vecs * mine).sum(0)
            keep = ~d.degenerate[c]
            assert (cos.abs()[keep] > 0.999).all(), cos
            slack = x.norm(dim=-1, keepdim=True) * (vecs * cos.sign() - mine).norm(dim=0)
            out[(kind, head)] = (x @ vecs) * cos.sign(), keep, slack
    return out


def _singular_values(a, model, key, layer: int) -> torch.Tensor:
    """The dense SVD's singular values of one component (raw)."""
    kind, head = key
    return torch.linalg.svdvals(component(model, kind, layer, head, "raw"))


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("side", ["read", "write"])
def test_values_are_hand_dot_products(arch, processing, side, analyses, hf_models):
    a, model = analyses(arch, processing), hf_models(arch)
    run = run_prompt(a, PROMPT)
    for layer in range(a.meta.n_layers):
        mine = direction_values(prompt_activations(a, run.capture), layer, side)
        ref = reference_values(a, model, run.ids, layer, side, processing)
        assert set(mine) == set(ref)
        for key, (want, keep, slack) in ref.items():
            err = (mine[key].double() - want).abs()[:, keep]
            allowed = 1e-4 + 1e-4 * want.abs()[:, keep] + slack[:, keep]
            assert (err <= allowed).all(), (key, float((err - allowed).max()))


@pytest.mark.parametrize("arch", ARCHS)
def test_top_directions_are_the_largest(arch, analyses, hf_models):
    a, model = analyses(arch), hf_models(arch)
    run = run_prompt(a, PROMPT)
    layer, pos, n = a.meta.n_layers - 1, 3, 6
    for side in ("read", "write"):
        ref = reference_values(a, model, run.ids, layer, side, "raw")
        flat = sorted(
            (
                (float(v[pos, i]), k, i, float(sl[pos, i]))
                for k, (v, _, sl) in ref.items()
                for i in range(v.shape[1])
            ),
            key=lambda r: -abs(r[0]),
        )[:n]
        acts = prompt_activations(a, run.capture)
        got = active_directions(a, acts, layer, pos, side, n)
        assert [(g.kind, g.head, g.index) for g in got] == [(f[1][0], f[1][1], f[2]) for f in flat]
        for g, (v, _, _, sl) in zip(got, flat):
            assert g.value == pytest.approx(v, abs=1e-4 + sl, rel=1e-4)
            assert g.end == ("top" if v >= 0 else "bottom") and g.side == side
        # Ranked by |σ x activation| instead (the reading side only).
        S = {k: _singular_values(a, model, k, layer) for k in ref}
        scaled = sorted(
            (
                (abs(float(v[pos, i]) * float(S[k][i])), k, i)
                for k, (v, _, _) in ref.items()
                for i in range(v.shape[1])
            ),
            key=lambda r: -r[0],
        )[:n]
        got_s = active_directions(a, acts, layer, pos, side, n, by="scaled")
        want = flat if side == "write" else scaled
        assert [(g.kind, g.head, g.index) for g in got_s] == [
            (w[1][0], w[1][1], w[2]) for w in want
        ]
        # Each comes with its token ends, the ones the grid shows for that direction.
        for g, d in with_tokens(a, got, k=4):
            assert d.index == g.index and len(d.top) == 4


def test_bad_layer_position_side(analyses):
    a = analyses("gpt2")
    acts = prompt_activations(a, run_prompt(a, PROMPT).capture)
    with pytest.raises(SpecError, match="Layer 9 is out of range"):
        direction_values(acts, 9, "read")
    with pytest.raises(SpecError, match="Position 99 is out of range"):
        active_directions(a, acts, 0, 99, "read")
    with pytest.raises(SpecError, match="Unknown ranking"):
        active_directions(a, acts, 0, 0, "read", by="size")
    with pytest.raises(SpecError, match="Unknown side"):
        direction_values(acts, 0, "sideways")
    post = analyses("gpt2", "post")
    with pytest.raises(SpecError, match="captured for raw"):
        prompt_activations(post, run_prompt(a, PROMPT).capture)


def test_unprojected_directions_take_the_sign_rule(checkpoints, analyses, tmp_path):
    """A cache that projects only 2 directions per matrix gives the same activations as
    one that projects them all: the sign rule is applied to the rest on the fly."""
    from core.analysis import open_analysis
    from core.settings import Settings

    full = analyses("gpt2")
    part = open_analysis(
        Settings(
            model=str(checkpoints["gpt2"]),
            processing="raw",
            device="cpu",
            cache_dir=tmp_path,
            n_project=2,
        )  # fmt: skip
    )
    run = run_prompt(full, PROMPT)
    for side in ("read", "write"):
        a = direction_values(prompt_activations(full, run.capture), 1, side)
        b = direction_values(prompt_activations(part, run.capture), 1, side)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=str(key))
