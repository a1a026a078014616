# mlops_nb: `make run` and `make test` are all the set-up a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the install stamp is named by pyproject.toml's content digest, not dated by its mtime: nbdev-export rewrites the
# file (same bytes, new mtime) on every check-sync, which made each `make test` reinstall everything
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-16)
PROFILE ?= default
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install sysdeps sysdeps-container run test test-slow check-sync lint nbtest pytest lab bench docs export readme outputs clean proto

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
	@echo "  benchmarks (make bench):"; for b in $(BENCHES); do \
	  printf "    %-26s %s\n" "$$b" "$$(sed -n 's/^"""\(.*\)/\1/p;T;q' $$b | sed 's/"""$$//')"; done

$(STAMP):
	@echo "installing the pinned dependencies into $(VENV) (pyproject.toml changed or first use; a few minutes on a fresh machine)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU build. Not -q: pip says what it collects and installs
	$(BIN)/python -m pip install -e ".[train,dev]" 2>&1 \
	  | grep --line-buffered -E '^(Collecting|Downloading|Installing|Successfully|ERROR|error)' ; test $${PIPESTATUS[0]} = 0
	rm -f $(VENV)/.installed*
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

run: install  ## run the pipeline on the bundled digits (PROFILE=default)
	$(BIN)/mlops-nb run --profile $(PROFILE)

test: install sysdeps check-sync lint nbtest pytest  ## the whole test suite (what CI runs)

# Debian packages the tests need: headless Chromium and its driver for the report test, wrk for the service's load bench
SYSDEPS := chromium chromium-driver wrk
sysdeps:  ## install the system packages the tests use (chromium, chromium-driver, wrk)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v wrk >/dev/null; then echo "chromium, chromedriver and wrk present"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSDEPS) >/dev/null \
	  && echo "installed $(SYSDEPS)"; fi

check-sync: install  ## nbdev-clean and nbdev-export must leave git status as it was
	@before=$$(git status --porcelain); \
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export && $(MAKE) -s readme; \
	after=$$(git status --porcelain); \
	if [ "$$before" != "$$after" ]; then echo "notebooks and mlops_nb/ are out of sync (or notebooks not clean):"; \
	  diff <(echo "$$before") <(echo "$$after"); exit 1; fi; echo "notebooks and library in sync"

lint: install  ## ruff (pinned): pyflakes' checks over the notebooks, the package, the tests and the benches ([tool.ruff])
	$(BIN)/ruff check .

# in a temporary folder of their own (TMPDIR), removed after: the examples' scratch folders and files go with it
nbtest: install  ## run the library notebooks (nbdev-test)
	@t=$$(mktemp -d -t mlops-nb-nbtest-XXXXXX) && WANDB_MODE=disabled TMPDIR=$$t $(BIN)/nbdev-test --n-workers 2; rc=$$?; rm -rf "$$t"; exit $$rc

# Two workers (pytest-xdist): the suite spends about half its time waiting (kernels starting, services, subprocesses),
# 1.17 cores busy on average in one process; training in two workers turns through `core_lease` as concurrent runs do.
# Groups (tests/conftest.py): each module whole on one worker, and the modules sharing the session's smoke workbook on
# one worker in file order, as in one process. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
pytest: install sysdeps  ## pytest: pipeline notebooks through papermill and nbval, CLI, data validation, DDP, W&B (PYTEST_WORKERS=2)
	$(BIN)/python -m pytest tests -n $(PYTEST_WORKERS) --dist loadfile --durations=25

export: install  ## notebooks -> mlops_nb/ and README.md
	$(BIN)/nbdev-export && $(MAKE) -s readme

# README.md is nbs/index.ipynb rendered to markdown. nbdev-readme would need quarto, which is a binary
# download (not on PyPI in a usable form), so nbconvert renders it instead.
# nbs/_settings.py first: the settings' documentation (the README's map, the settings page, settings.ini's comments) is
# generated from their models in nbs/00_core.config.ipynb
readme: install  ## README.md from nbs/index.ipynb, SECURITY.md from the threat model's page, the settings' generated documentation
	$(BIN)/python nbs/_settings.py
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown --TemplateExporter.exclude_input=True --output-dir . --output README nbs/index.ipynb
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown --TemplateExporter.exclude_input=True --output-dir . --output SECURITY nbs/explanations/threat_model.ipynb

# nbdev-docs needs Quarto, a binary download the quarto-cli package only fetches at install time: without it on the
# PATH, nbs/_docs.py renders nbdev's processed notebooks (nbdev-proc-nbs) with nbconvert instead, offline.
docs: install  ## the documentation site in _docs/: a page per notebook, every exported function's signature and docs
	$(BIN)/python nbs/_docs.py

# The library notebooks, explanations and tutorials keep their examples' outputs (the docs pages show them); nbdev-clean
# keeps outputs, so this is the only step that refreshes them: two notebooks at a time, each run in its own folder as nbdev-test runs it.
outputs: install  ## re-execute the library notebooks, explanations and tutorials in place, keeping their outputs
	cd nbs && ls [0-9]*.ipynb explanations/*.ipynb tutorials/*.ipynb | WANDB_MODE=disabled xargs -P2 -I{} sh -c \
	  '$(abspath $(BIN))/jupyter nbconvert --log-level=ERROR --to notebook --execute --inplace {} || echo "FAILED {}"'
	$(BIN)/nbdev-clean

lab: install  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab --notebook-dir=nbs $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# the benchmark scripts; bench/table.py is not one: it runs them and writes BENCHMARKS.md
BENCHES := $(sort $(filter-out bench/table.py,$(wildcard bench/*.py)))

# Debian packages the slow container test uses: podman with runc as its runtime, debootstrap for the image's base
CONTAINER_DEPS := podman runc debootstrap
sysdeps-container:  ## install podman, runc and debootstrap (the slow container test)
	@if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null; then echo "podman, runc and debootstrap present"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(CONTAINER_DEPS) >/dev/null \
	  && echo "installed $(CONTAINER_DEPS)"; fi

test-slow: install sysdeps sysdeps-container  ## the slow tests: the serving image built and run with podman, a full disk, the docs site, Spark
	@# the spark extra (pyspark, 400 MB) and Java 17+: only the slow Spark test needs them
	@command -v java >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq default-jre-headless >/dev/null && echo "installed default-jre-headless"; }
	$(BIN)/python -m pip install -q -e ".[spark]" 2>&1 | grep -E '^(ERROR|error)' ; test $${PIPESTATUS[0]} = 0
	$(BIN)/python -m pytest tests -m slow --durations=12

bench: install sysdeps  ## run every benchmark under bench/ and rewrite BENCHMARKS.md (slow; BENCH_ARGS=--quick for a smoke)
	$(BIN)/python bench/table.py $(BENCH_ARGS)

clean:  ## remove runs, the artifact store, W&B files and the venv
	rm -rf runs/2* .mlops wandb $(VENV) _docs _proc .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The Open Inference Protocol's gRPC stubs, generated from its .proto (kserve/open-inference-protocol) by the pinned
# grpcio-tools and committed; their messages go into a descriptor pool of their own, since tritonclient's and KServe's
# stubs define the same package (`inference`) in the default pool and one process may import both (tests do)
PROTO := mlops_nb/proto/open_inference_grpc
proto: install  ## regenerate the gRPC stubs of the Open Inference Protocol (mlops_nb/proto)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. $(PROTO).proto
	sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/_POOL = _descriptor_pool.DescriptorPool()  # of its own: see the Makefile\nDESCRIPTOR = _POOL.AddSerializedFile(/' $(PROTO)_pb2.py
