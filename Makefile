# Avisos: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3
PYTHON ?= python3
TOOLS := $(CURDIR)/.tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
CHROMIUM ?= /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: help install run test lint fmt bench chromium system-deps clean env

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	@echo "uv not found: installing it into $(TOOLS)"
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv

install: $(UV) ## Install every package of the workspace (frozen lock)
	$(UV) sync --frozen --all-packages

system-deps: ## Install the Debian packages tests use, when missing: Chromium, nginx, promtool, LibreOffice Calc
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v soffice >/dev/null 2>&1 || missing="$$missing libreoffice-calc-nogui"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@$(CHROMIUM) --version 2>/dev/null | tail -1

chromium: system-deps

run: install ## Start the whole stack locally (migrate, seed, every service); Ctrl-C stops it
	$(UV) run --frozen python scripts/run.py

test: install system-deps ## Install what the tests need; lint, then run every test
	$(MAKE) --no-print-directory lint
	PATH="$(dir $(UV)):$$PATH" $(UV) run --frozen pytest $(PYTEST_ARGS)  # uv on PATH: tests replay the images' uv steps

lint: install ## ruff and mypy --strict
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy -p avisos_common -p avisos_api -p avisos_gateway -p avisos_dispatcher -p avisos_reports -p avisos_web

fmt: install ## Format and auto-fix
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

bench: install ## Run the benchmarks and print their tables
	$(UV) run --frozen python bench/run.py

env: install ## Write .env for docker compose with real random secrets (keeps existing ones)
	$(UV) run --frozen python deploy/gen_env.py

clean: ## Remove caches and the local tool directory
	rm -rf $(TOOLS) .venv .mypy_cache .ruff_cache .pytest_cache
