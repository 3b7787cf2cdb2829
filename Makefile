# churn-signals: one command runner for people and CI (.ci/run calls `make test`).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The compiled core (scripts/build_core.py): rebuilt whenever a core source changes.
CORE    := build/core/.built
CORE_SRC := $(wildcard detectors/*.py schemas/*.py)
# The brokers the integration and fault tests run on: embedded (Tansu), kafka (Apache Kafka, KRaft) or both.
BROKER  ?= both
export BROKER
# The Apache Kafka jars, fetched once (Maven Central, .cache/kafka) before tests that run on Kafka.
KAFKA_JARS := $(if $(filter embedded,$(BROKER)),,kafka-jars)

.DEFAULT_GOAL := help
.PHONY: help install core checks docs-kinds pure demo test test-unit test-integration lint system-deps ops-check clean bench-quality bench-replay test-faults bench-live kafka kafka-jars fault-loop

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) $(CORE)  ## create .venv, install the project with its dev extra, compile the core

$(CORE): $(STAMP) $(CORE_SRC) scripts/build_core.py
	$(PY) scripts/build_core.py $(if $(CI),--require,)
	@mkdir -p $(dir $(CORE)) && touch $(CORE)

core: $(CORE)  ## compile detectors/ and schemas/ with mypyc (pure Python when no C compiler)

checks: $(STAMP)  ## write schemas/checks_generated.py again after changing an event schema file (then make core)
	$(PY) scripts/generate_checks.py

docs-kinds: $(STAMP)  ## write the kinds table of docs/triggers.md again from the registry (detectors/kinds.py)
	$(PY) scripts/kinds_table.py

pure:  ## remove the compiled core: run the Python source as is
	$(PY) scripts/build_core.py --clean
	rm -f $(CORE)

demo: $(STAMP) $(CORE)  ## run the live detector on the embedded broker with sample traffic (Ctrl-C stops)
	$(VENV)/bin/churn-signals demo

system-deps:  ## install Debian tools the tests need (prometheus, docker-compose); no-op when present
	@scripts/system-deps.sh

ops-check: system-deps  ## promtool checks and alert unit tests, docker-compose.yml validation (no engine needed)
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/tests/churn-signals.test.yml
	docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

lint: $(STAMP)  ## ruff and mypy (strict over the tree; tests: every body checked)
	$(VENV)/bin/ruff check detectors schemas streams tests bench scripts setup.py
	$(VENV)/bin/mypy

test: $(STAMP) $(CORE) system-deps lint $(KAFKA_JARS)  ## everything CI runs: lint, unit, integration and fault tests (BROKER=both)
	$(PY) -m pytest -q

test-unit: $(STAMP) $(CORE)  ## fast tests without a broker
	$(PY) -m pytest -q -m unit

test-integration: $(STAMP) $(CORE) system-deps $(KAFKA_JARS)  ## real broker and worker processes on loopback (BROKER=embedded|kafka|both)
	$(PY) -m pytest -q -m integration

test-faults: $(STAMP) $(CORE) system-deps $(KAFKA_JARS)  ## kill -9, rebalances, broker pause/crash, outage backlog, fuzzed input (BROKER=...)
	$(PY) -m pytest -q -s -m faults

fault-loop: $(STAMP) $(CORE) system-deps $(KAFKA_JARS)  ## the fault suite RUNS times in a row on BROKER, a line per run (tests/faults/loop.sh)
	tests/faults/loop.sh $(or $(RUNS),10)

kafka: $(STAMP)  ## start a local Apache Kafka broker (KRaft) on loopback for trying the worker against (NODES=3: a cluster); Ctrl-C stops
	$(PY) -m tests.kafka.launcher $(if $(PORT),--port $(PORT),) $(if $(NODES),--nodes $(NODES),)

kafka-jars: $(STAMP) system-deps  ## only fetch the Apache Kafka jars the tests use (Maven Central, into .cache/kafka)
	$(PY) -m tests.kafka.launcher --fetch-only

bench-quality: $(STAMP) $(CORE)  ## CDNOW: ROC AUC of the streaming risk (Pareto/NBD, BG/NBD) vs batch models, a 90-day rule and recency
	$(PY) -m bench.quality

bench-replay: $(STAMP) $(CORE)  ## replay of a 1M-event synthetic log on one core: events/s, bytes/customer, ratio to a bare parse
	$(PY) bench/replay_bench.py

bench-live: $(STAMP) $(CORE)  ## one live worker vs a counting Faust agent and a straightforward Faust app (BROKER=kafka: on Apache Kafka)
	$(PY) bench/live_bench.py

clean:  ## remove the virtualenv and caches
	$(if $(wildcard $(PY)),$(PY) scripts/build_core.py --clean,)
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
