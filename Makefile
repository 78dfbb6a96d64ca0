# The two set-up commands are `make demo` and `make test`; each installs what it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BSTAMP := $(VENV)/.installed-bench

.PHONY: test demo bench lint typecheck unit integration prosody clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(BSTAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# Debian's Prosody for the integration tests (never the system-wide instance:
# the tests start their own with their own config and data dir).
prosody:
	@command -v prosody >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody prosody-modules; }

lint: $(STAMP)
	$(VENV)/bin/ruff check xmppkit tests bench
	$(VENV)/bin/ruff format --check xmppkit tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP) prosody
	$(PY) -m pytest tests/integration

test: $(STAMP) prosody lint typecheck
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m xmppkit demo

bench: $(BSTAMP) prosody
	$(PY) -m bench --prosody
	$(PY) -m bench --rpc

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
