#!/bin/bash
# Cached `python -m core search` before and after, interleaved with `import torch` in one loop.
#   BEFORE=/path/to/a/checkout/of/the/old/commit  (with .venv and its own warm cache/)
#   docs/bench/cached-search-before-after.sh [ROUNDS]   from the repository root
# Two warm-up rounds (-1, 0) are printed but not meant to be read: the first cache-only
# call of each tree writes its parts (index, null, word memo).
N=${1:-5}; Q="fire, flames"; AFTER=$PWD; BEFORE=${BEFORE:?set BEFORE}
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $s" | bc; }
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq -1 "$N"); do
  a=$(cd "$AFTER" && t .venv/bin/python -c "import torch")
  b=$(cd "$BEFORE" && t .venv/bin/python -m core search --model models/smollm2-135m --query "$Q" --json)
  c=$(cd "$AFTER" && t .venv/bin/python -m core search --model models/smollm2-135m --query "$Q" --json)
  d=$(cd "$BEFORE" && t .venv/bin/python -m core search --model default --query "$Q" --json)
  e=$(cd "$AFTER" && t .venv/bin/python -m core search --model default --query "$Q" --json)
  echo "round $i torch $a smol_before $b smol_after $c demo_before $d demo_after $e"
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
