# EmoJudge: `make demo` runs the main job on the embedded default, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export EMOJUDGE_HOME ?= $(CURDIR)/.emojudge
export DAGSTER_HOME ?= $(EMOJUDGE_HOME)/dagster
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install demo test ui lint bench clean

install: $(VENV)/.installed

# torch first: the CUDA build where an NVIDIA driver answers, else the CPU build (a local wheel where pip's
# find-links has one, otherwise PyTorch's CPU index), so pip never pulls multi-GB CUDA packages onto a CPU box.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	if nvidia-smi -L >/dev/null 2>&1; then \
		$(BIN)/pip install -q "torch>=2.3"; \
	else \
		$(BIN)/pip install -q "torch==2.13.0+cpu" || \
		$(BIN)/pip install -q "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "resemblyzer==0.1.4"
	touch $@

demo: install
	$(BIN)/emojudge demo

test: install
	$(BIN)/python -m pytest -q

ui: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_prosody.py

clean:
	rm -rf $(EMOJUDGE_HOME)
