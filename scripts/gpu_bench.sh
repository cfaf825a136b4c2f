#!/usr/bin/env bash
# One command for the GPU figures BENCHMARKS.md lacks: whole-model precompute of random
# GPT-2-small..XL-shaped models on the GPU, against TransformerLens's SVDInterpreter loop
# on the same GPU (python -m core bench, pages off), then the markdown tables. First, the
# decompositions' alternative routes side by side (scripts/gpu_paths.py; PATHS=0 skips it).
#
#   scripts/gpu_bench.sh                       # on a GPU machine: cuda, gpt2-small..gpt2-xl
#   DEVICE=cpu SHAPES=demo scripts/gpu_bench.sh   # the same script on a CPU (a smoke run)
#
# Needs python3 with torch and transformers. Whatever else the benchmark imports and the
# machine lacks (TransformerLens and the few packages it imports that a bare GPU image has
# not got) is installed from wheels in .whl/ when that folder exists: `make gpu-wheels`
# fetches them where pip can reach PyPI. Budget: under 10 minutes on one H100/H200; the
# reference loop and the dense OV SVDs are timed on REF_LAYERS layers and scaled.
#
# Environment: DEVICE (cuda), SHAPES (gpt2-small,smollm2-135m,gpt2-medium,gpt2-large,gpt2-xl),
# REF_LAYERS (1), REPEAT (2: each timing the median of 2, the first run of a process
# included in precompute_runs_s), QUERIES (20), OUT (docs/bench), PYTHON (python3), PATHS (1),
# NULL_WARM_UP (0), GRAM_EIGH (device; host puts the MLP Gram solves on CPU threads beside
# the OV heads, core/svd/gram.py), ROUTES (0; N: the whole precompute of gpt2-medium and
# gpt2-xl with each Gram route in turn, N pairs, before the benchmark; an estimated minute
# and a half for N=1, so with it name SHAPES=gpt2-medium,gpt2-xl to stay inside 10 minutes).
# The defaults are those of the 2026-12-04 H200 run that finished; with REPEAT=3
# REF_LAYERS=2 the first run there was killed at its time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SHAPES=${SHAPES:-gpt2-small,smollm2-135m,gpt2-medium,gpt2-large,gpt2-xl}
REF_LAYERS=${REF_LAYERS:-1}
REPEAT=${REPEAT:-2}
QUERIES=${QUERIES:-20}
GRAM_EIGH=${GRAM_EIGH:-device}
OUT=${OUT:-docs/bench}
# The search nulls' warm-up (55 nulls a shape) is left out unless NULL_WARM_UP=1: the
# 10-minute budget goes to the precompute and the loop.
WARM_UP=--no-null-warm-up
[ "${NULL_WARM_UP:-0}" = 1 ] && WARM_UP=--null-warm-up
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

if ! "$PY" -c "import transformer_lens.SVDInterpreter" >/dev/null 2>&1; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "error: TransformerLens is not installed and .whl/ holds no wheels; run" \
             "\`make gpu-wheels\` where pip reaches PyPI, then carry .whl/ here." >&2
        exit 2
    fi
    SITE=${TMPDIR:-/tmp}/svd-lens-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi

mkdir -p "$OUT"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
json="$OUT/$stamp-$DEVICE-$GRAM_EIGH.json"
echo "== $("$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')" >&2
if [ "${PATHS:-1}" = 1 ]; then
    echo "== decomposition routes -> $OUT/$stamp-$DEVICE-paths.jsonl" >&2
    # On a CPU (a smoke run) the routes are timed on a tiny shape.
    paths_shapes=gpt2-medium,gpt2-xl
    [ "$DEVICE" = cuda ] || paths_shapes=tiny
    "$PY" scripts/gpu_paths.py --device "$DEVICE" --shapes "$paths_shapes" | tee "$OUT/$stamp-$DEVICE-paths.jsonl" >&2
fi
if [ "${ROUTES:-0}" != 0 ]; then
    echo "== Gram routes, whole precompute -> $OUT/$stamp-$DEVICE-routes.jsonl" >&2
    route_shapes=gpt2-medium,gpt2-xl
    [ "$DEVICE" = cuda ] || route_shapes=tiny
    "$PY" scripts/gpu_paths.py --device "$DEVICE" --shapes "$route_shapes" --precompute "$ROUTES" \
        | tee "$OUT/$stamp-$DEVICE-routes.jsonl" >&2
fi
echo "== $SHAPES on $DEVICE -> $json" >&2
# Each shape's object also goes to stderr when it is done: a killed run keeps those.
"$PY" -m core bench --device "$DEVICE" --shapes "$SHAPES" --reference-layers "$REF_LAYERS" --repeat "$REPEAT" \
    --queries "$QUERIES" --gram-eigh "$GRAM_EIGH" "$WARM_UP" --no-pages --json > "$json"
"$PY" scripts/bench_report.py "$json"
