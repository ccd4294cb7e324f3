# bulktag: one Makefile for people, pre-commit and CI (.ci/run calls `make test`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install redis-binary postgres-binary browser compose-binary exiftool celery-node test test-fast lint format demo bench clean compose-check openapi api bench-producer bench-sources bench-formats bench-run bench-uploads

help:
	@echo "make demo    set up, then bulktag run on sample photos (starts and stops what it needs)"
	@echo "make test    set up, then run the whole test suite (starts its own redis-server)"
	@echo "make lint    ruff + mypy      make bench    throughput benchmark -> docs/BENCHMARKS.md"

# The venv is rebuilt when pyproject.toml changes. torch/torchvision are pinned there.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Tests and the demo start their own redis-server; install the binary if it is missing.
redis-binary:
	@bash scripts/ensure-debian-packages.sh --required --commands redis-server \
	    --why "tests and the demo start private redis-servers (macOS: brew install redis)" \
	    redis-server

# Integration/e2e tests start a private PostgreSQL (initdb + pg_ctl on a free port). Debian
# keeps those binaries off the PATH, in /usr/lib/postgresql/<version>/bin.
postgres-binary:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	    bash scripts/ensure-debian-packages.sh --required --commands initdb \
	    --why "tests start a private PostgreSQL for the results database (macOS: brew install postgresql)" \
	    postgresql

# The dashboard test drives Debian's headless chromium (never `playwright install`).
browser:
	@bash scripts/ensure-debian-packages.sh --commands "chromium chromedriver" \
	    --why "the dashboard test drives headless chromium (skipped without it, fails under CI)" \
	    chromium chromium-driver

# The sidecar tests read XMP back with exiftool (Debian's libimage-exiftool-perl).
exiftool:
	@bash scripts/ensure-debian-packages.sh --commands exiftool \
	    --why "the sidecar tests read XMP back with exiftool (skipped without it, fails under CI)" \
	    libimage-exiftool-perl

# `docker-compose config` validates docker-compose.yml in the tests (no engine needed).
compose-binary:
	@bash scripts/ensure-debian-packages.sh --commands docker-compose \
	    --why "tests validate docker-compose.yml with docker-compose config (no engine needed)" \
	    docker-compose

# A non-Python contract client (tests/e2e/test_contract_node.py): Node's celery-node,
# pinned by tests/contract_client/package-lock.json, installed into var/node.
celery-node:
	@bash scripts/ensure-debian-packages.sh --commands "node npm" \
	    --why "the contract test runs Node's celery-node (skipped without it, fails under CI)" \
	    nodejs npm
	@if command -v npm >/dev/null 2>&1; then \
	    mkdir -p var/node && cp tests/contract_client/package.json tests/contract_client/package-lock.json var/node/ && \
	    npm ci --prefix var/node --no-audit --no-fund --loglevel=error; fi

test: install redis-binary postgres-binary browser compose-binary exiftool celery-node
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker tasks producer weights

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install redis-binary
	$(BIN)/python scripts/demo.py

bench: install redis-binary postgres-binary
	$(BIN)/python -m bench
	$(BIN)/python -m bench.run_cmd --write

# `bulktag run` on the demo corpus, cold then warm (dedupe cache): wall and first result.
bench-run: install redis-binary
	$(BIN)/python -m bench.run_cmd --write

# Producer: submit 1,000,000 URIs from a list file (URIs/s, peak RSS) -> docs/BENCHMARKS.md.
bench-producer: install redis-binary postgres-binary
	$(BIN)/python -m bench.producer

# Worker images/s on the same photos from local disk, S3 (moto) and HTTP.
bench-sources: install redis-binary
	$(BIN)/python -m bench.sources

# Decode img/s per core for HEIC, AVIF and camera RAW (preview vs demosaic) beside JPEG
# (also the last stage of `make bench`).
bench-formats: install
	$(BIN)/python -m bench.formats

# Upload latency idle and behind a 6,000-URI bulk backlog (one worker) -> docs/BENCHMARKS.md.
bench-uploads: install redis-binary
	$(BIN)/python -m bench.uploads

clean:
	rm -rf var .pytest_cache .ruff_cache .mypy_cache

# Regenerate the committed OpenAPI spec (a unit test fails when it is stale).
openapi: install
	$(BIN)/python -m producer.api.openapi

# The HTTP API and dashboard on http://127.0.0.1:8080/ (needs a reachable Redis).
api: install
	$(BIN)/bulktag api

# Validate docker-compose.yml without a Docker engine (Debian's docker-compose package).
compose-check:
	@bash scripts/ensure-debian-packages.sh --commands docker-compose \
	    --why "tests validate docker-compose.yml with docker-compose config (no engine needed)" \
	    docker-compose
	REDIS_PASSWORD=ci-check FLOWER_BASIC_AUTH=ci:check POSTGRES_PASSWORD=ci-check docker-compose config -q
	@echo "docker-compose.yml is valid"
