# finetune-sweeps: `make sweep` and `make test` are all a user needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: install sweep finetune submit test test-fast lint bench docs clean

install: $(STAMP)

# torch goes in first and pinned: an unpinned resolve pulls several GB of CUDA wheels.
# torchvision is pinned to that torch's release; the registries carry only CUDA builds of it,
# whose compiled ops do not load with the CPU torch, so a start-up hook (see
# trainables/tasks/torchvision_cpu.py) lets it import anyway.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 torchvision==0.28.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m trainables.tasks.torchvision_cpu
	touch $(STAMP)

sweep: install
	$(BIN)/python -m sweeps run sweeps/examples/laptop.yaml

finetune: install
	$(BIN)/python -m trainables.finetune $(or $(CONFIG),trainables/examples/demo.yaml)

# make submit SPEC=sweeps/examples/cluster.yaml ADDRESS=http://127.0.0.1:8265 [ARGS=--no-wait]
submit: install
	RAY=$(BIN)/ray cluster/submit.sh $(or $(SPEC),sweeps/examples/laptop.yaml) \
		$(if $(ADDRESS),--address $(ADDRESS)) $(ARGS)

test: install
	$(BIN)/python -m pytest -q -rs --durations=25 tests

# The unit tier: no Ray, no faults, no fuzzing (< 3 minutes on 2 cores). `make test` runs all.
test-fast: install
	$(BIN)/python -m pytest -q -m "not integration and not chaos" tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/loop_throughput.py

# The documentation site (docs/, mkdocs.yml) into site/; any warning fails it (not --quiet:
# it hides warnings from --strict). The spec reference and the module index are generated
# on every build (docs/hooks/generated_pages.py).
docs: install $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,docs]'
	touch $(DOCS_STAMP)

clean:
	rm -rf $(VENV) results site .pytest_cache .mypy_cache .ruff_cache build *.egg-info
