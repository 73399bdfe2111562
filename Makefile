# Two environments: .venv (Python >= 3.12: engine, proxy, API, CLI) and .venv-train
# (Python 3.11 + CPU PyTorch: training and the efficacy benchmark).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# First interpreter of the given versions that really runs (PATH, then pyenv's versions).
find_python = $(shell for v in $(1); do \
	python$$v -c '' 2>/dev/null && { command -v python$$v; exit; }; \
	r=$$(pyenv root 2>/dev/null) && for c in $$r/versions/$$v*/bin/python$$v; do \
		[ -x "$$c" ] && { echo "$$c"; exit; }; done; \
	done)
ifeq ($(origin PYTHON),undefined)
PYTHON := $(call find_python,3.12 3.13)
endif
ifeq ($(origin TRAIN_PYTHON),undefined)
TRAIN_PYTHON := $(call find_python,3.11)
endif

VENV := .venv
TRAIN_VENV := .venv-train
SHARED ?= ../shared

.PHONY: help run test test-python test-train test-extension lint train bench browser package clean

help:
	@echo "make run     start Sfumato (proxy + control API)"
	@echo "make test    run every test suite (Python, training smoke test, extension)"
	@echo "make lint    ruff"
	@echo "make package the browser extension for the Chrome and Firefox stores (extension/dist/)"
	@echo "make train   train the protection model (needs $(SHARED))"
	@echo "make bench   latency and efficacy benchmarks"

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 not found: install it (e.g. pyenv install 3.12) or pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

$(TRAIN_VENV)/.installed: pyproject.toml
	@test -n "$(TRAIN_PYTHON)" || { echo "Python 3.11 not found: training needs it (CPU PyTorch wheels)"; exit 1; }
	$(TRAIN_PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/pip install -q -e '.[train]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/sfumato serve

test: test-python test-train test-extension

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test-python: $(VENV)/.installed lint
	$(VENV)/bin/pytest -q --ignore=tests/training

test-train: $(TRAIN_VENV)/.installed
	$(TRAIN_VENV)/bin/pytest -q tests/training

# Debian's Chromium and Firefox ESR for the extension's end-to-end tests (the test drivers cannot
# download browsers here; they drive the system binaries). Nothing happens when both are there
# (CHROMIUM_PATH / FIREFOX_PATH point elsewhere); otherwise only the missing ones are installed,
# without recommends, after saying what and why. Not root: the one command to run is printed.
CHROMIUM_PATH ?= /usr/bin/chromium
FIREFOX_PATH ?= /usr/bin/firefox-esr
browser:
	@missing=$$( [ -x "$(CHROMIUM_PATH)" ] || echo chromium; [ -x "$(FIREFOX_PATH)" ] || echo firefox-esr ); \
	missing=$$(echo $$missing); \
	[ -n "$$missing" ] || exit 0; \
	echo "The extension's end-to-end tests drive Debian's browsers; missing: $$missing."; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "Install them (Debian packages, without recommends) with:"; \
		echo "  sudo make browser"; \
		echo "then run make test again."; \
		exit 1; \
	fi; \
	command -v apt-get >/dev/null || { echo "No apt-get here: install Chromium and Firefox ESR" \
		"and set CHROMIUM_PATH and FIREFOX_PATH to them."; exit 1; }; \
	apt-get update -qq && \
	packages=$$(apt-get install -s --no-install-recommends $$missing | sed -n 's/^Inst \([^ ]*\).*/\1/p' | xargs) && \
	echo "Installing $$missing with apt-get --no-install-recommends ($$(echo $$packages | wc -w) packages: $$packages)" && \
	DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends $$missing >/dev/null && \
	echo "Installed $$missing."

# Unit tests (node --test), the store packages (web-ext build, web-ext lint), then the end-to-end
# tests (Chromium and Firefox, each against a real sfumato serve).
test-extension: $(VENV)/.installed browser
	cd extension && npm ci --no-audit --no-fund && npm test

# extension/dist/sfumato-<version>-chromium.zip and -firefox.zip (see extension/scripts/package.js).
package:
	cd extension && npm ci --no-audit --no-fund && npm run package

train: $(TRAIN_VENV)/.installed
	$(TRAIN_VENV)/bin/python -m perturb.training.train --shared $(SHARED) --cache --run runs/main
	$(TRAIN_VENV)/bin/python -m perturb.training.ship runs/main/model.pt --shared $(SHARED)

bench: $(VENV)/.installed $(TRAIN_VENV)/.installed
	$(VENV)/bin/python bench/latency.py
	$(TRAIN_VENV)/bin/python bench/efficacy.py --shared $(SHARED)

clean:
	rm -rf $(VENV) $(TRAIN_VENV) .pytest_cache .ruff_cache extension/dist
