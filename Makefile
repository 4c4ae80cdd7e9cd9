# Isengard Desktop — developer entry points.
#   make run    set up .venv (first time: a few minutes) and start the app
#   make test   set up .venv with the test extra, then ruff, mypy and the test suite (offscreen Qt)
# Extra pytest arguments: make test PYTEST_ARGS="-k dataset -x"

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PY := .venv/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help bootstrap run test smoke bench package package-test icons locks offline-payload clean distclean

help:
	@echo "make run        set up .venv and start Isengard Desktop"
	@echo "make test       set up .venv (with test extra), run ruff, mypy, then pytest offscreen; PYTEST_ARGS=..."
	@echo "make smoke      start the app in --smoke-test mode (offscreen unless QT_QPA_PLATFORM is set)"
	@echo "make bench      run every benchmarks/*.py (BENCH_ARGS=--quick for a short run)"
	@echo "make package    build the PyInstaller bundle and the .deb into dist/ (packaging/build.sh, build_deb.sh)"
	@echo "make package-test  make package, then the bundle's smoke test, the .deb's checks and (with an"
	@echo "                offline payload) training through the bundle (packaging/package_test.sh)"
	@echo "make icons      re-render resources/icons/ from isengard.svg (packaging/make_icons.py)"
	@echo "make locks      regenerate the trainer runtime's lock files (resources/runtime; cpu, cu130, mps, cpu-windows)"
	@echo "make offline-payload DEVICE=cpu   build dist/offline-<device>/ (wheels, uv's Python 3.11, manifest) for installs with no network; PAYLOAD_FLAGS=--without-python leaves the Python out"
	@echo "make clean      remove build outputs and caches (keeps .venv)"
	@echo "make distclean  clean, and remove .venv too"

bootstrap:
	bash ./bootstrap.sh

run:
	bash ./bootstrap.sh
	$(PY) -m isengard_desktop

test:
	bash ./bootstrap.sh --test
	$(PY) -m ruff check .
	$(PY) -m mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

smoke:
	bash ./bootstrap.sh
	QT_QPA_PLATFORM="$${QT_QPA_PLATFORM:-offscreen}" .venv/bin/isengard --smoke-test

bench:
	bash ./bootstrap.sh
	@status=0; for f in benchmarks/[!_]*.py; do \
		echo "== $$f"; \
		QT_QPA_PLATFORM="$${QT_QPA_PLATFORM:-offscreen}" $(PY) "$$f" $(BENCH_ARGS) || status=1; \
	done; exit $$status

package:
	bash packaging/build.sh
	bash packaging/build_deb.sh

package-test:
	bash packaging/package_test.sh

icons:
	bash ./bootstrap.sh
	$(PY) packaging/make_icons.py

# The locks that can be compiled here (resources/runtime/locks.toml says which); WHEELS names the
# folder holding torch 2.13.0+cpu (default /opt/wheels). Needs the network to the package index.
locks:
	bash ./bootstrap.sh
	$(PY) packaging/compile_locks.py

DEVICE ?= cpu
offline-payload:
	bash ./bootstrap.sh
	$(PY) packaging/offline_payload.py --device $(DEVICE) $(PAYLOAD_FLAGS)

clean:
	rm -rf build dist .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv
