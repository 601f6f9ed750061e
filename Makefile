# The README's commands. Each sets up the virtual environment first when it is missing
# or older than pyproject.toml, so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck proto bench clean setup system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard proto/tether/v1/*.proto)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Regenerate protobuf code after editing proto/ (the install step does it too).
proto: setup
	$(BIN)/python -m pip install --quiet --no-deps -e .

demo: setup
	@mkdir -p build
	$(BIN)/python examples/make_speech_wav.py build/demo-speech.wav
	$(BIN)/tether run examples/local-voice.yaml --input build/demo-speech.wav --trace

# The operator joins these checks as soon as operator/ exists.
LINTED := dataplane tests benchmarks examples $(wildcard operator)

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy dataplane/tether $(wildcard operator/tether_operator)
	$(BIN)/lint-imports

test: lint system-deps
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/codec.py
	$(BIN)/python benchmarks/transports.py

# Debian packages some tests use (Chromium for the browser test), installed only where
# apt is available and we are root, as in CI; elsewhere those tests skip with a reason.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromium >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; browser tests will be skipped"; \
	fi

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	rm -f dataplane/tether/v1/*_pb2*.py dataplane/tether/v1/*_pb2*.pyi
