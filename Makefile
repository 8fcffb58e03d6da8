# GadoReduce: set-up, demo and tests on a fresh machine (Linux or macOS, Python 3.10+).
#   make demo   - creates .venv, installs GadoReduce, runs the main job on the built-in phantom case
#   make test   - creates .venv, installs GadoReduce with its test extra, runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUTPUT ?= gadoreduce-demo

.PHONY: setup elastix demo test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed elastix

# The elastix/transformix executables (one of GadoReduce's registration backends).
elastix:
	@if command -v elastix >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "Installing the Debian package elastix"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq elastix >/dev/null; \
	else \
	  echo "NOTE: elastix executables not found and no apt-get here; install elastix 5 to use --backend executable (tests of that backend are skipped)."; \
	fi

demo: setup
	$(BIN)/gadoreduce demo --output $(DEMO_OUTPUT)

test: setup
	$(BIN)/python -m pytest Testing

clean:
	rm -rf $(VENV) $(DEMO_OUTPUT) .pytest_cache
