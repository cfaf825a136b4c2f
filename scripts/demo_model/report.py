#!/usr/bin/env python
"""Measurements for models/demo-gpt2/MODEL_CARD.md, printed as Markdown.

Reproduce the whole demo model (corpus -> tokenizer -> weights) with:

    apt-get update && apt-get install -y dict-gcide wordnet-base fortunes
    .venv/bin/python scripts/demo_model/build_corpus.py \
        && .venv/bin/python scripts/demo_model/train_tokenizer.py \
        && .venv/bin/python scripts/demo_model/train.py --preset cpu --minutes 60

then (optional, for the model card):

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/demo_model/report.py > /tmp/demo_report.md

Sections: held-out loss per source (trained vs. the same config at a seeded
random initialisation, recomputed here on the committed held-out samples),
greedy continuations of a few prompts, and the SVD directions of the OV
(per head), MLP-in and MLP-out matrices scored by the project's offline
labeller (core.label.sweep.sweep_offline: coherence z-score of the top tokens against
random token sets; random Gaussian control matrices alongside), with the most
and least clear directions listed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

# one thread: on a shared, oversubscribed CPU, OpenMP barriers of 2+ threads crawl
torch.set_num_threads(int(os.environ.get("DEMO_THREADS", "1")))

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PROMPTS = [
    "The meaning of the word",
    "A small dog",
    "To be, or not to be",
    "Love is",
    "Water, n. The",
    "happy (adjective):",
]


def heldout_losses(model_dir: Path, n_ctx: int):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    torch.manual_seed(0)
    rand = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).eval()
    rows = []
    for f in sorted((model_dir / "heldout").glob("*.txt")):
        ids = []
        for d in f.read_text(encoding="utf-8").split("\n\n"):
            if d.strip():
                ids += tok(d.strip("\n"), add_special_tokens=False)["input_ids"] + [
                    tok.eos_token_id
                ]
        n = len(ids) // n_ctx
        x = torch.tensor(ids[: n * n_ctx]).view(n, n_ctx)
        with torch.no_grad():
            lt = (
                sum(
                    float(model(x[i : i + 16], labels=x[i : i + 16]).loss) * len(x[i : i + 16])
                    for i in range(0, n, 16)
                )
                / n
            )
            lr = (
                sum(
                    float(rand(x[i : i + 16], labels=x[i : i + 16]).loss) * len(x[i : i + 16])
                    for i in range(0, n, 16)
                )
                / n
            )
        rows.append((f.stem, f.stat().st_size, n * n_ctx, lt, lr))
    return tok, model, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(REPO / "models" / "demo-gpt2"))
    ap.add_argument("--cache-dir", default="/tmp/demo_report_cache")
    ap.add_argument("--n", type=int, default=10, help="directions per component")
    ap.add_argument("--k", type=int, default=10, help="top tokens per direction")
    ap.add_argument("--kinds", default="ov,mlp_in,mlp_out")
    ap.add_argument("--json-out", default="/tmp/demo_report.json")
    args = ap.parse_args(argv)
    model_dir = Path(args.model)
    cfg = json.loads((model_dir / "config.json").read_text())

    tok, model, rows = heldout_losses(model_dir, cfg["n_positions"])
    print("## Held-out loss (committed samples, nats/token)\n")
    print("| source | sample bytes | tokens scored | trained | random init | difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, size, ntok, lt, lr in rows:
        print(f"| {name} | {size:,} | {ntok:,} | {lt:.3f} | {lr:.3f} | {lt - lr:+.3f} |")
    print()

    print("## Greedy continuations (24 new tokens)\n")
    gens = []
    for p in PROMPTS:
        enc = tok(p, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=24, do_sample=False, pad_token_id=tok.eos_token_id
            )
        text = tok.decode(out[0, enc["input_ids"].shape[1] :])
        gens.append((p, text))
        shown = text.replace("\n", " \u21b5 ").replace("|", "\\|")
        print(f"- **{p}**{shown}")
    print()

    from core.analysis import open_analysis
    from core.label.sweep import sweep_offline
    from core.settings import Settings

    kinds = tuple(args.kinds.split(","))
    a = open_analysis(
        Settings(model=str(model_dir), cache_dir=Path(args.cache_dir), device="cpu", kinds=kinds)
    )
    labels = sweep_offline(a, kinds=kinds, n=args.n, k=args.k, control=True)
    real = [d for d in labels if not d.control]
    ctrl = [d for d in labels if d.control]
    print(
        f"## SVD directions (offline labeller, first {args.n} directions per component, "
        f"top {args.k} tokens, processing=post)\n"
    )
    print(
        "| matrix | directions | interpretable (z >= 1.5) | mean z | control: directions | "
        "control interpretable | control mean z |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kd in kinds:
        r = [d for d in real if d.matrix == kd]
        c = [d for d in ctrl if d.matrix == kd]
        if not r:
            continue
        mz = sum(d.score for d in r) / len(r)
        cz = sum(d.score for d in c) / len(c) if c else float("nan")
        print(
            f"| {kd} | {len(r)} | {sum(d.interpretable for d in r)} | {mz:.2f} | {len(c)} | "
            f"{sum(d.interpretable for d in c)} | {cz:.2f} |"
        )
    print()

    def row(d):
        comp = f"head {d.head}" if d.head is not None else "-"
        toks = " ".join(repr(t.replace("Ġ", " "))[1:-1] for t in d.tokens)
        return f"| {d.matrix} | {d.layer} | {comp} | {d.index} | {d.score:.2f} | {d.label} | `{toks}` |"

    srt = sorted(real, key=lambda d: d.score, reverse=True)
    hdr = "| matrix | layer | head | index | z | nearest concept | top tokens |\n|---|---:|---|---:|---:|---|---|"
    print("### Most clear\n")
    print(hdr)
    for d in srt[:10]:
        print(row(d))
    print("\n### Least clear\n")
    print(hdr)
    for d in srt[-6:]:
        print(row(d))
    print()
    Path(args.json_out).write_text(
        json.dumps(
            dict(
                heldout=[
                    dict(source=n, bytes=s, tokens=t, trained=lt, random_init=lr)
                    for n, s, t, lt, lr in rows
                ],
                generations=gens,
                labels=[d.to_json() for d in labels],
            ),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
