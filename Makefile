# zdt: `make demo` and `make test` work on a fresh Debian machine; `deps` installs what it lacks.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: deps demo test unit integration lint bench

deps:
	@command -v haproxy >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq haproxy; }
	@$(PYTHON) -c "import zdt, supervisor, typer, rich, pydantic, pytest, pytest_asyncio, mypy" \
	  2>/dev/null || $(PYTHON) -m pip install -q -e '.[test]'

demo: deps
	$(PYTHON) -m zdt.cli demo

test: deps lint
	$(PYTHON) -m pytest -q

unit:
	$(PYTHON) -m pytest -q tests/unit

integration:
	$(PYTHON) -m pytest -q tests/integration

lint:
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m mypy src

bench: deps
	$(PYTHON) -m bench.rolling_restart
	$(PYTHON) -m bench.home_rollout
	$(PYTHON) -m bench.live_update
