#!/usr/bin/env python
"""Train the embedded demo GPT-2 (transformers.GPT2LMHeadModel) in one command.

Reproduce the whole demo model (corpus -> tokenizer -> weights) with:

    apt-get update && apt-get install -y dict-gcide wordnet-base fortunes
    .venv/bin/python scripts/demo_model/build_corpus.py \
        && .venv/bin/python scripts/demo_model/train_tokenizer.py \
        && .venv/bin/python scripts/demo_model/train.py --preset cpu --minutes 60

Presets
  --preset cpu : 4 layers, d_model 256, 4 heads (d_head 64), context 128,
                 vocab 8192; one CPU thread, fixed wall-clock budget
                 (--minutes).  This is what produced the committed stopgap.
  --preset gpu : 6 layers, d_model 384, 6 heads (d_head 64), context 256,
                 vocab 8192, ~100M tokens (--tokens), bf16 autocast on CUDA.
                 The intended demo model, for a session with a GPU:
                 ``train.py --preset gpu`` (no --minutes needed).

Training stops at whichever of --minutes / --tokens comes first; the learning
rate follows linear warmup then cosine decay over *progress*, the larger of the
elapsed-time and the consumed-token fractions, so a wall-clock budget still gets
a full decay.  AdamW (betas 0.9/0.95, wd 0.1 on matrices), grad clip 1.0, no
dropout.  Batches are random windows from one stream of all training
documents (shuffled across sources, each followed by <|endoftext|>).

Held-out loss is tracked per source on the committed samples
models/demo-gpt2/heldout/<source>.txt (documents separated by blank lines, each
scored as ``doc + <|endoftext|>`` in non-overlapping windows of the context
length).  Checkpoints (model + optimizer + progress) go to
<run-dir>/ckpt.pt every --ckpt-minutes; ``--resume`` continues from it.

At the end the model is written in fp16 safetensors to --out
(default models/demo-gpt2) with the tokenizer, generation_config.json and
training_summary.json (settings, throughput, loss curve, held-out losses at
initialisation and at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
EOT = "<|endoftext|>"

PRESETS = {
    "cpu": dict(
        n_layer=4,
        n_embd=256,
        n_head=4,
        n_ctx=128,
        batch_size=16,
        lr=2e-3,
        warmup_steps=200,
        tokens=10**12,
        minutes=60.0,
        threads=1,
        eval_minutes=5.0,
    ),
    "gpu": dict(
        n_layer=6,
        n_embd=384,
        n_head=6,
        n_ctx=256,
        batch_size=64,
        lr=1.5e-3,
        warmup_steps=500,
        tokens=100_000_000,
        minutes=10**6,
        threads=0,
        eval_minutes=2.0,
    ),
}


def log(msg, fh=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if fh:
        fh.write(line + "\n")
        fh.flush()


def read_docs(path):
    text = Path(path).read_text(encoding="utf-8")
    return [d.strip("\n") for d in text.split("\n\n") if d.strip()]


def tokenize_train(workdir: Path, tok, cache: Path, seed: int, fh=None) -> np.ndarray:
    if cache.exists():
        arr = np.load(cache)
        log(f"loaded cached token stream {cache} ({len(arr):,} tokens)", fh)
        return arr
    files = sorted(workdir.glob("*.train.txt"))
    if not files:
        sys.exit(f"error: no *.train.txt in {workdir}; run build_corpus.py first.")
    docs = []
    for f in files:
        d = read_docs(f)
        log(f"  {f.name}: {len(d):,} docs", fh)
        docs.extend(d)
    random.Random(seed).shuffle(docs)
    eot = tok.convert_tokens_to_ids(EOT)
    chunks = []
    t0 = time.time()
    B = 4096
    for i in range(0, len(docs), B):
        enc = tok(docs[i : i + B], add_special_tokens=False)["input_ids"]
        for ids in enc:
            ids.append(eot)
            chunks.append(np.asarray(ids, dtype=np.uint16))
    arr = np.concatenate(chunks)
    np.save(cache, arr)
    log(f"tokenized {len(docs):,} docs -> {len(arr):,} tokens in {time.time() - t0:.0f}s", fh)
    return arr


def heldout_sets(tok, heldout_dir: Path, n_ctx: int):
    """{source: LongTensor[n_windows, n_ctx]} from the committed held-out samples."""
    eot = tok.convert_tokens_to_ids(EOT)
    out = {}
    for f in sorted(heldout_dir.glob("*.txt")):
        ids = []
        for d in read_docs(f):
            ids.extend(tok(d, add_special_tokens=False)["input_ids"])
            ids.append(eot)
        n = len(ids) // n_ctx
        if n == 0:
            continue
        out[f.stem] = torch.tensor(ids[: n * n_ctx], dtype=torch.long).view(n, n_ctx)
    return out


@torch.no_grad()
def evaluate(model, sets, device, bs=32):
    model.eval()
    res = {}
    for name, x in sets.items():
        tot, cnt = 0.0, 0
        for i in range(0, len(x), bs):
            xb = x[i : i + bs].to(device)
            logits = model(xb).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), xb[:, 1:].reshape(-1), reduction="sum"
            )
            tot += loss.item()
            cnt += xb[:, 1:].numel()
        res[name] = tot / cnt
    res["mean"] = sum(res.values()) / len(res)
    model.train()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--minutes", type=float, help="wall-clock training budget")
    ap.add_argument("--tokens", type=float, help="token budget")
    ap.add_argument("--batch-size", type=int, help="sequences per step")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup-steps", type=int)
    ap.add_argument("--threads", type=int, help="torch threads (0 = torch default)")
    ap.add_argument("--eval-minutes", type=float, help="held-out eval interval")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument(
        "--workdir", default="/tmp/demo_corpus", help="corpus + tokenizer from the other scripts"
    )
    ap.add_argument("--run-dir", default="/tmp/demo_train", help="checkpoints, token cache, log")
    ap.add_argument("--out", default=str(REPO / "models" / "demo-gpt2"))
    ap.add_argument("--heldout-dir", default=None, help="default <out>/heldout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument(
        "--max-steps", type=int, default=None, help="debug: stop after N steps, no export"
    )
    ap.add_argument(
        "--checkpoints",
        default=None,
        help="also save Hugging Face checkpoints at log-spaced steps (0, 1, 2, 4, ...) and "
        "the last into DIR/step-NNNNNN (a series for `python -m core trajectory`)",
    )
    args = ap.parse_args(argv)

    P = dict(PRESETS[args.preset])
    for k in ("minutes", "tokens", "batch_size", "lr", "warmup_steps", "threads", "eval_minutes"):
        v = getattr(args, k)
        if v is not None:
            P[k] = v
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if P["threads"]:
        torch.set_num_threads(int(P["threads"]))
        with contextlib.suppress(RuntimeError):  # only settable before first parallel work
            torch.set_num_interop_threads(1)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    workdir, run_dir, out = Path(args.workdir), Path(args.run_dir), Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    heldout_dir = Path(args.heldout_dir) if args.heldout_dir else out / "heldout"
    fh = open(run_dir / "train.log", "a")  # noqa: SIM115 (open for the whole run)
    log(
        f"preset {args.preset}: {json.dumps(P)} device={device} threads={torch.get_num_threads()}",
        fh,
    )

    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok_dir = workdir / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        sys.exit(f"error: no tokenizer in {tok_dir}; run train_tokenizer.py first.")
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    eot = tok.convert_tokens_to_ids(EOT)

    data = tokenize_train(workdir, tok, run_dir / f"train_tokens_{len(tok)}.npy", args.seed, fh)
    data_t = torch.from_numpy(data.astype(np.int64))
    sets = heldout_sets(tok, heldout_dir, P["n_ctx"])
    log(
        "held-out windows: " + ", ".join(f"{k}={v.shape[0]}x{v.shape[1]}" for k, v in sets.items()),
        fh,
    )

    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=P["n_ctx"],
        n_embd=P["n_embd"],
        n_layer=P["n_layer"],
        n_head=P["n_head"],
        n_inner=4 * P["n_embd"],
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model params {n_params / 1e6:.2f}M ({model.transformer.wte.weight.numel() / 1e6:.2f}M embedding, tied)",
        fh,
    )

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=P["lr"],
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    ckpt_path = run_dir / "ckpt.pt"
    step, tokens_seen, elapsed_prev = 0, 0, 0.0
    history, init_eval = [], None
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, tokens_seen, elapsed_prev = ck["step"], ck["tokens"], ck["elapsed"]
        history, init_eval = ck["history"], ck["init_eval"]
        torch.set_rng_state(ck["rng"])
        log(
            f"resumed from {ckpt_path} at step {step}, {tokens_seen:,} tokens, {elapsed_prev / 60:.1f} min",
            fh,
        )
    else:
        init_eval = evaluate(model, sets, device)
        log(
            "held-out loss at init: " + json.dumps({k: round(v, 4) for k, v in init_eval.items()}),
            fh,
        )

    budget_s = P["minutes"] * 60
    B, T = P["batch_size"], P["n_ctx"]
    tok_per_step = B * T
    use_amp = device.startswith("cuda")
    gen = torch.Generator().manual_seed(args.seed + step)

    def progress(elapsed):
        return min(1.0, max(elapsed / budget_s, tokens_seen / P["tokens"]))

    def lr_at(elapsed):
        if step < P["warmup_steps"]:
            return P["lr"] * (step + 1) / P["warmup_steps"]
        return P["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(elapsed))))

    def save_ckpt(elapsed):
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            dict(
                model=model.state_dict(),
                opt=opt.state_dict(),
                step=step,
                tokens=tokens_seen,
                elapsed=elapsed,
                history=history,
                init_eval=init_eval,
                preset=args.preset,
                P=P,
                rng=torch.get_rng_state(),
            ),
            tmp,
        )
        os.replace(tmp, ckpt_path)

    series_dir = Path(args.checkpoints) if args.checkpoints else None
    if series_dir is not None and step in log_steps(step + 1):
        save_series_checkpoint(model, tok, series_dir, step)

    model.train()
    t_start = time.time() - elapsed_prev
    last_eval = last_ckpt = time.time()
    loss_ema, t_window, tok_window = None, time.time(), 0
    while True:
        elapsed = time.time() - t_start
        if progress(elapsed) >= 1.0 or (args.max_steps and step >= args.max_steps):
            break
        lr = lr_at(elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(0, len(data_t) - T - 1, (B,), generator=gen)
        xb = torch.stack([data_t[i : i + T] for i in ix.tolist()]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = model(xb, labels=xb).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += tok_per_step
        tok_window += tok_per_step
        if series_dir is not None and _is_power_of_two(step):
            save_series_checkpoint(model, tok, series_dir, step)
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        if step % 50 == 0:
            now = time.time()
            tps = tok_window / (now - t_window)
            t_window, tok_window = now, 0
            log(
                f"step {step} tok {tokens_seen / 1e6:.2f}M loss {lv:.3f} ema {loss_ema:.3f} gn {gn:.2f} "
                f"lr {lr:.2e} {tps:,.0f} tok/s elapsed {elapsed / 60:.1f}m prog {progress(elapsed):.3f}",
                fh,
            )
        if time.time() - last_eval > P["eval_minutes"] * 60:
            ev = evaluate(model, sets, device)
            history.append(
                dict(
                    step=step,
                    tokens=tokens_seen,
                    minutes=round(elapsed / 60, 2),
                    train_loss_ema=round(loss_ema, 4),
                    **{k: round(v, 4) for k, v in ev.items()},
                )
            )
            log("EVAL " + json.dumps(history[-1]), fh)
            last_eval = time.time()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save_ckpt(time.time() - t_start)
            last_ckpt = time.time()
    elapsed = time.time() - t_start
    final = evaluate(model, sets, device)
    history.append(
        dict(
            step=step,
            tokens=tokens_seen,
            minutes=round(elapsed / 60, 2),
            train_loss_ema=round(loss_ema or float("nan"), 4),
            **{k: round(v, 4) for k, v in final.items()},
        )
    )
    log("FINAL " + json.dumps(history[-1]), fh)
    save_ckpt(elapsed)
    if series_dir is not None and not _is_power_of_two(step):
        save_series_checkpoint(model, tok, series_dir, step)
    if args.max_steps:
        log(f"--max-steps given: not exporting. {tokens_seen / elapsed:,.0f} tok/s overall", fh)
        return

    # full held-out split from the work dir (larger than the committed sample), if present
    full_sets = {}
    for f in sorted(workdir.glob("*.heldout.txt")):
        name = f.name.split(".")[0]
        s = heldout_sets_from_file(tok, f, T)
        if s is not None:
            full_sets[name] = s
    full_eval = evaluate(model, full_sets, device) if full_sets else {}

    # ---- export
    out.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "pytorch_model.bin"):
        if (out / f).exists():
            (out / f).unlink()
    model_cpu = model.to("cpu").half()
    model_cpu.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    # transformers 5 writes its own class name and load-time flags; keep the config portable
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    for k in ("is_local", "local_files_only"):
        tc.pop(k, None)
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    GenerationConfig(
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, do_sample=False, max_new_tokens=64
    ).save_pretrained(str(out))
    summary = dict(
        preset=args.preset,
        settings=P,
        device=device,
        torch_threads=torch.get_num_threads(),
        n_params=n_params,
        steps=step,
        tokens_trained=tokens_seen,
        minutes=round(elapsed / 60, 2),
        tokens_per_second=round(tokens_seen / max(elapsed, 1e-9), 1),
        train_stream_tokens=int(len(data)),
        epochs=round(tokens_seen / len(data), 3),
        heldout_loss_init=init_eval,
        heldout_loss_final=final,
        full_heldout_split_loss_final=full_eval,
        history=history,
        finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.copy(run_dir / "train.log", run_dir / f"train_{int(time.time())}.log")
    log(
        f"exported to {out}: "
        + json.dumps(
            {k: summary[k] for k in ("steps", "tokens_trained", "minutes", "tokens_per_second")}
        ),
        fh,
    )


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def log_steps(n_steps: int) -> list[int]:
    """The steps below ``n_steps`` saved by ``--checkpoints``: 0 and the powers of two
    (log-spaced, as Pythia's early checkpoints; the last step is saved as well)."""
    return [s for s in range(n_steps) if s == 0 or _is_power_of_two(s)]


def save_series_checkpoint(model, tok, directory: Path, step: int) -> Path:
    """Write the model at ``step`` (fp16 safetensors, as the export) with its tokenizer
    into ``directory/step-NNNNNN``."""
    import copy

    out = Path(directory) / f"step-{step:06d}"
    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).to("cpu").half().save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    for k in ("is_local", "local_files_only"):
        tc.pop(k, None)
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    return out


def heldout_sets_from_file(tok, path, n_ctx):
    eot = tok.convert_tokens_to_ids(EOT)
    ids = []
    for d in read_docs(path):
        ids.extend(tok(d, add_special_tokens=False)["input_ids"])
        ids.append(eot)
    n = len(ids) // n_ctx
    if n == 0:
        return None
    return torch.tensor(ids[: n * n_ctx], dtype=torch.long).view(n, n_ctx)


if __name__ == "__main__":
    main()
