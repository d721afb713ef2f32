# Quick start: `make demo` and `make test` on a fresh machine (Python 3.10+ with venv).
VENV    ?= .venv
PYTHON  ?= python3
PY       = $(VENV)/bin/python
STAMP    = $(VENV)/.installed-stamp
DEMO     = .demo

.PHONY: setup demo test bench notebook serve clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[test,fast]'
	$(PY) -m compileall -q accesslog pipelines transforms storage schemas
	touch $(STAMP)

setup: $(STAMP)

# The bundled sample covers 2026-11-16..22; --now pins the retention window to it
# so the demo shows the same numbers on any date.
demo: setup
	@echo "== accesslog demo: a local demo keystore in $(DEMO)/keys (made on first use; not for production)"
	rm -rf $(DEMO)/warehouse
	$(VENV)/bin/accesslog run samples/nginx/access.log.1.gz samples/nginx/access.log \
		--log-format timed_combined --warehouse $(DEMO)/warehouse --keys $(DEMO)/keys \
		--retention-days 90 --now 2026-11-24T00:00:00Z
	@echo
	@echo "== usage statistics (the sample's format logs no \$$host: --site-host names the site's own referrers)"
	$(VENV)/bin/accesslog stats --warehouse $(DEMO)/warehouse --site-host www.example.com
	@echo
	@echo "== the report page"
	$(VENV)/bin/accesslog report --warehouse $(DEMO)/warehouse -o $(DEMO)/report.html --site-host www.example.com
	@echo "   open $(abspath $(DEMO)/report.html) in a browser, or run 'make serve' for the live page"

# The report page served live on http://127.0.0.1:8765/ over the demo warehouse; Ctrl-C stops.
serve: setup
	@[ -d $(DEMO)/warehouse ] || $(MAKE) --no-print-directory demo
	$(VENV)/bin/accesslog serve --warehouse $(DEMO)/warehouse --port 8765 --site-host www.example.com

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run_benchmark.py --dirty --rss-lines 10000000

# JupyterLab on notebooks/ over the demo warehouse (made by `make demo` when missing); loopback only.
notebook: setup
	$(PY) -m pip install --quiet -e '.[notebook]'
	@[ -d $(DEMO)/warehouse ] || $(MAKE) --no-print-directory demo
	@echo "== accesslog notebooks: JupyterLab on notebooks/ with ACCESSLOG_WAREHOUSE=$(abspath $(DEMO)/warehouse)"
	@echo "   (127.0.0.1 only; open the URL it prints, stop with Ctrl-C)"
	ACCESSLOG_WAREHOUSE=$(abspath $(DEMO)/warehouse) $(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser notebooks/

clean:
	rm -rf $(DEMO) build *.egg-info .pytest_cache

# Local loopback cluster (Flink + Beam job server + Kafka + S3Proxy), see cluster/README.md.
.PHONY: cluster cluster-down
cluster:
	bash cluster/up.sh

cluster-down:
	bash cluster/down.sh
