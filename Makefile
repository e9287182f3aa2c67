# Mugle: `make run` serves the demo, `make test` runs the whole suite. Both work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA      ?= data/demo
ARTIFACTS ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run data train serve test test-fast lint bench eval eval-structures eval-structures-pooled docker-test system-deps clean

# torch goes first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	touch $@

install: $(STAMP)

data: $(STAMP)
	@test -f $(DATA)/song_meta.json || $(BIN)/mugle demo-data --out $(DATA)

train: data
	$(BIN)/mugle train --data $(DATA) --out $(ARTIFACTS)

serve: $(STAMP)
	$(BIN)/mugle serve --artifacts $(ARTIFACTS) --host $(HOST) --port $(PORT)

run: $(STAMP)
	@if [ -e $(ARTIFACTS)/current ]; then \
	  echo "artifacts found in $(ARTIFACTS); serving them (delete $(ARTIFACTS)/current to retrain)"; \
	else \
	  $(MAKE) --no-print-directory train; \
	fi
	$(BIN)/mugle serve --artifacts $(ARTIFACTS) --host $(HOST) --port $(PORT)

# Debian packages the browser and nginx tests drive (root only; the tests skip without them).
system-deps:
	@bash scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -ra

# Everything but tests/system (servers, browser, nginx, kill signals, load): the quick check while working.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow"

# Static checks: style, types (config in pyproject.toml), and the direction of imports between packages.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m mypy
	$(BIN)/python scripts/check_imports.py
	$(BIN)/python scripts/check_doc_paths.py

bench: $(STAMP)
	@bash scripts/bench.sh

eval: $(STAMP)
	$(BIN)/mugle evaluate --data $(DATA) --artifacts $(ARTIFACTS)

# Train and evaluate the default demo and three catalogs of other structure; table in docs/eval/structures.md.
eval-structures: $(STAMP)
	$(BIN)/python benchmarks/eval_structures.py --work build/eval-structures

# The same sweep on training splits 1 and 2 as well (another held-out set, validation split and fit each), and
# every catalog's verdict pooled over the three splits: docs/eval/structures-pooled.md. About two hours.
eval-structures-pooled: eval-structures
	$(BIN)/python benchmarks/eval_structures.py --work build/eval-structures-seed1 --seed 1
	$(BIN)/python benchmarks/eval_structures.py --work build/eval-structures-seed2 --seed 2
	$(BIN)/python benchmarks/pool_splits.py --work build/eval-structures --work build/eval-structures-seed1 \
		--work build/eval-structures-seed2 --out docs/eval/structures-pooled.md

docker-test:
	@bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) data build .pytest_cache
