# zdt: `make demo` and `make test` work on a fresh Debian machine; `deps` installs what it lacks.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: deps demo test unit integration lint bench

deps:
	@missing=""; \
	  [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	  [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	  [ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing="$$missing libnginx-mod-http-lua"; \
	  command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	  [ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	  command -v ssh-keygen >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	  command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	  [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  [ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  ls /usr/lib/*/libpq.so.5 >/dev/null 2>&1 || missing="$$missing libpq5"; \
	  [ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	  command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	  [ -x /usr/sbin/lighttpd ] || missing="$$missing lighttpd"; \
	  [ -z "$$missing" ] || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; }
	@$(PYTHON) -c "import zdt, supervisor, typer, rich, pydantic, asyncssh, pytest, \
	  pytest_asyncio, xdist, mypy, hypothesis, starlette, uvicorn, httpx, selenium, psycopg, gunicorn" 2>/dev/null || $(PYTHON) -m pip install -q -e '.[test]'

demo: deps
	$(PYTHON) -m zdt.cli demo

test: deps lint
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

unit:
	$(PYTHON) -m pytest -q tests/unit

integration:
	$(PYTHON) -m pytest -q tests/integration

lint:
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -m mypy src

bench: deps
	$(PYTHON) -m bench.capacity
	$(PYTHON) -m bench.rolling_restart
	$(PYTHON) -m bench.home_rollout
	$(PYTHON) -m bench.live_update
	$(PYTHON) -m bench.live_servers
	$(PYTHON) -m bench.ssh_rollout
	$(PYTHON) -m bench.batch_rollout
	$(PYTHON) -m bench.scale
	$(PYTHON) -m bench.metric_gate
