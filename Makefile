# EmoJudge: `make demo` runs the main job on the embedded default, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export EMOJUDGE_HOME ?= $(CURDIR)/.emojudge
export DAGSTER_HOME ?= $(EMOJUDGE_HOME)/dagster
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install demo test ui lint bench sql clean llama-server cluster-install cluster-demo cluster-test deploy-check

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
	$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install -q --only-binary llama-cpp-python --find-links $(LLAMA_WHEELS) -e ".[dev]"
	$(BIN)/pip install -q --no-deps "resemblyzer==0.1.4"
	touch $@

# llama-cpp-python (the local judge) compiled for a fixed, portable ISA instead of its default -march=native:
# x86-64 with AVX2/FMA/F16C/BMI2 (every AMD EPYC and Intel Xeon of the last decade), no AVX-512, no AMX. A native
# build made on an Intel Xeon with AMX dies under these VMs on its first request (ldtilecfg in
# ggml_backend_amx_mul_mat: the kernel does not grant the tile state), and one made on an AMD box would carry
# whatever that box has into pip's shared wheel cache. The wheel is built once, without pip's cache, into a folder
# named after the build, and installed from there only (--only-binary); bench/RESULTS.md has the measured choice.
LLAMA_CPP_VERSION ?= 0.3.36
LLAMA_ISA ?= x86-64-v3
LLAMA_WHEELS := $(CURDIR)/.cache/wheels/llama-$(LLAMA_ISA)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
.PHONY: llama-wheel
llama-wheel:
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) for $(LLAMA_ISA) (once, about 10 minutes on 2 cores)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(BIN)/pip wheel -q --no-deps \
			--no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) "llama-cpp-python==$(LLAMA_CPP_VERSION)"; }

demo: install
	$(BIN)/emojudge demo

test: install
	$(BIN)/python -m pytest -q -m "not slow_fault and not cluster"

# The fault suite (docs/reliability.md): bad inputs, SIGKILLs then reruns, concurrent runs and readers, judge faults.
reliability: install
	$(BIN)/python -m pytest -q -m reliability

# The Dagster UI and daemon on the CLI's instance: `emojudge ui` creates DAGSTER_HOME and its dagster.yaml first (a
# fresh clone works before any demo), then runs `dg dev` on this project ([tool.dg]); make ui DEV=dagster: dagster dev.
DEV ?= dg
ui: install
	$(BIN)/emojudge ui --host 127.0.0.1 --port 3000 --dev $(DEV)

# The warehouse read-only in the DuckDB CLI (duckdb-cli, same version as the duckdb package); a query file on stdin
# runs it and exits: make sql < sql/examples/per_class_f1.sql
# The readers' snapshot (republished after every write session), so a session left open never holds up a run.
# PROFILE=cluster: the DuckLake warehouse (EMOJUDGE_LAKE_CATALOG, EMOJUDGE_LAKE_DATA) attached read-only while
# workers write, its extensions loaded from the installed packages.
sql: install
	@$(if $(filter cluster,$(PROFILE)),EMOJUDGE_WAREHOUSE=ducklake) $(BIN)/emojudge sql

# llama.cpp's own llama-server for the local judge (one process, parallel slots, continuous batching): built for the
# portable ISA above (not for this CPU) from the llama.cpp sources vendored in the installed llama-cpp-python's sdist
# (pip download, or LLAMA_CPP_SDIST=path/to/llama_cpp_python-X.tar.gz), no CUDA, no curl, no OpenSSL; needs cmake and
# a C++ compiler, 5-15 minutes on 2 cores. Not removed by make clean. Use it with EMOJUDGE_LLAMA_SERVER=$(LLAMA_SERVER).
LLAMA_SERVER_DIR ?= $(CURDIR)/.cache/llama-server
LLAMA_SERVER := $(LLAMA_SERVER_DIR)/bin/llama-server
LLAMA_CPP_SDIST ?=
JOBS ?= 2
llama-server: $(LLAMA_SERVER)
	@echo "built $(LLAMA_SERVER): export EMOJUDGE_LLAMA_SERVER=$(LLAMA_SERVER)"

$(LLAMA_SERVER):
	@test -x $(BIN)/python || { echo "error: no $(BIN)/python: run make install first" >&2; exit 1; }
	@command -v cmake >/dev/null || { echo "error: llama-server needs cmake and a C++ compiler" >&2; exit 1; }
	rm -rf $(LLAMA_SERVER_DIR)/src && mkdir -p $(LLAMA_SERVER_DIR)/src
	version=$$($(BIN)/python -c 'from importlib.metadata import version; print(version("llama-cpp-python"))') && \
	sdist="$(LLAMA_CPP_SDIST)" && \
	if [ -z "$$sdist" ]; then \
		$(BIN)/python -m pip download -q --no-binary :all: --no-deps -d $(LLAMA_SERVER_DIR) "llama-cpp-python==$$version" && \
		sdist=$(LLAMA_SERVER_DIR)/llama_cpp_python-$$version.tar.gz; \
	fi && \
	tar xzf "$$sdist" -C $(LLAMA_SERVER_DIR)/src --strip-components=1
	cmake -S $(LLAMA_SERVER_DIR)/src/vendor/llama.cpp -B $(LLAMA_SERVER_DIR)/build -DCMAKE_BUILD_TYPE=Release \
		-DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
		-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $(LLAMA_CMAKE_ARGS)
	cmake --build $(LLAMA_SERVER_DIR)/build --target llama-server -j$(JOBS)
	install -D $(LLAMA_SERVER_DIR)/build/bin/llama-server $@

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_features.py
	$(BIN)/python bench/bench_prosody.py

clean:
	rm -rf $(EMOJUDGE_HOME)

# The cluster (docs/scale-out.md): the cluster extra (dagster-postgres, dagster-celery, the DuckLake and postgres
# extensions as packages) and redis-server from Debian where it can be installed; PostgreSQL is the installed server.
cluster-install: install
	$(BIN)/pip install -q --only-binary llama-cpp-python --find-links $(LLAMA_WHEELS) -e ".[dev,cluster]"
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q redis-server >/dev/null; } || \
		echo "warning: no redis-server (apt-get install redis-server)" >&2
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get install -y -q postgresql >/dev/null; } || \
		echo "warning: no PostgreSQL server binaries (apt-get install postgresql)" >&2

# PostgreSQL, Redis and two Celery workers on 127.0.0.1 in a temporary folder; two evaluation sets materialised
# through them, then an inbox episode scored by a dagster-daemon's sensor run on the same workers; one `cluster: ...`
# line and one `episode ...` line; everything it started is stopped.
cluster-demo: cluster-install
	$(BIN)/python -m emojudge_pipeline.cluster.demo

# A worker SIGKILLed mid-step (retried on the other), tables equal to a single-machine run, a reader held open.
cluster-test: cluster-install
	$(BIN)/python -m pytest -q -m cluster tests/test_cluster.py

# The deployment examples (deploy/): YAML lint and Dagster's instance-config validation (not run here).
deploy-check: cluster-install
	$(BIN)/yamllint -d "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}" deploy/k8s
	$(BIN)/python -c "from dagster._core.instance.config import dagster_instance_config as c; c('deploy/k8s', 'dagster.yaml')"
