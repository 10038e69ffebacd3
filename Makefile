# Two commands on a fresh clone: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-shared test lint package-check bench bench-postgres chaos example-langchain example-openai-agents example-pydantic-ai example-mcp example-bad-run screenshots clean help

help:
	@echo "make demo   set up and run the onboarding example (CRM -> billing -> provisioning -> email)"
	@echo "make demo-shared  the onboarding story on a PostgreSQL of its own: guard serve and two agent workers as processes"
	@echo "make test   set up and run the test suite and the policy cases, with branch coverage of guard/ (a floor)"
	@echo "make lint   ruff, import contracts, pyright"
	@echo "make package-check  build the sdist and wheel, install the wheel with each extra into a fresh venv, one guarded call each"
	@echo "make bench  per-call latency against the two-commit floor and the peers (own venv)"
	@echo "make bench-postgres  the ledger on a throwaway PostgreSQL: per call against its two-commit floor, workers 1-16"
	@echo "make chaos  the kill campaign on SQLite and PostgreSQL: SIGKILL at every crash point, recover, check the invariants"
	@echo "make example-langchain  a LangChain agent (scripted chat model, offline) through Guard's middleware"
	@echo "make example-openai-agents  a booking through an OpenAI Agents SDK agent (scripted model, offline)"
	@echo "make example-pydantic-ai  a Pydantic AI agent (FunctionModel, offline) through ToolGuard, deferred approval"
	@echo "make screenshots  the reviewer page in headless Chromium, saved to docs/screenshots/"
	@echo "make example-mcp  a real MCP client through the Guard MCP proxy in front of a CRM MCP server (offline)"
	@echo "make example-bad-run  after a bad contact sync: incident, blast radius, snapshot, verdicts, staged repair"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/onboarding/demo.py

demo-shared: $(STAMP)
	.ci/ensure-postgres
	$(BIN)/python examples/shared/run.py

test: $(STAMP) package-check
	.ci/ensure-chromium
	.ci/ensure-postgres
	tests/adapters/ts_client/ensure  # npm ci: the TypeScript MCP SDK client for the proxy's interop tests
	tests/adapters/conformance/ensure  # npm ci: the MCP conformance suite (0.1.13, Node 20) for the proxy
	$(BIN)/ruff format --check guard tests policies examples bench adapters
	$(BIN)/ruff check guard tests policies examples bench adapters
	$(BIN)/lint-imports
	$(BIN)/pyright --project pyproject.toml
	$(BIN)/python -m pytest -q --cov --cov-report=term:skip-covered  # branch coverage of guard/, floor in [tool.coverage.report]

package-check: $(STAMP)
	$(BIN)/python tests/package/check.py

lint: $(STAMP)
	$(BIN)/ruff format --check guard tests policies examples bench adapters
	$(BIN)/ruff check guard tests policies examples bench adapters
	$(BIN)/lint-imports
	$(BIN)/pyright --project pyproject.toml

example-langchain: $(STAMP)
	$(BIN)/python examples/lead_funnel/run.py

example-openai-agents: $(STAMP)
	$(BIN)/python examples/booking/run.py

example-pydantic-ai: $(STAMP)
	$(BIN)/python examples/lead_funnel_pydantic_ai/run.py

screenshots: $(STAMP)
	.ci/ensure-chromium
	$(BIN)/python tests/server/screenshots.py

example-mcp: $(STAMP)
	$(BIN)/python examples/mcp_crm/run.py

example-bad-run: $(STAMP)
	$(BIN)/python examples/bad_run/run.py

chaos: $(STAMP)
	.ci/ensure-postgres
	$(BIN)/python -m tests.chaos.campaign

BENCH_VENV := .venv-bench

$(BENCH_VENV)/ready: pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e . -r bench/requirements.txt
	touch $@

bench: $(BENCH_VENV)/ready
	$(BENCH_VENV)/bin/python -m bench

bench-postgres: $(BENCH_VENV)/ready
	.ci/ensure-postgres
	$(BENCH_VENV)/bin/python -m bench.postgres

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .hypothesis .coverage examples/onboarding/state examples/shared/state
