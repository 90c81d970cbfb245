# One task runner for the README and CI. Every target sets up .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
DEPLOY_STAMP := $(VENV)/.installed-deploy

.PHONY: run test lint bench setup clean deploy-synth deploy-alerts lock

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The deploy extra (aws-cdk-lib, cfn-lint, hadolint) is large: only the tests and deploy-synth need it.
$(DEPLOY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,deploy]'
	@touch $(DEPLOY_STAMP)

## Start the local stack, deliver a demo event to a WebSocket client, keep running until Ctrl-C.
run: $(STAMP)
	@bash scripts/run.sh

## The whole suite: unit, integration and end-to-end tests against real local servers, two test processes
## per core (pytest-xdist): most tests wait on their servers, so two per core kept both cores busy (on 2
## cores: 222-245 s against 301-330 s with one per core); the TypeScript package is built once per run,
## under a lock.
## src/ is byte-compiled first: the tests start many Python processes (stacks, worker pools, the CLI), and
## with PYTHONDONTWRITEBYTECODE set each compiled the package again (5 to 8% of the CPU of two test files).
TEST_PROCESSES ?= $(shell echo $$(( $$(nproc) * 2 )))
test: $(DEPLOY_STAMP)
	$(PY) -m compileall -q src
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples deploy bench
	$(VENV)/bin/ruff format --check src tests examples deploy bench
	$(VENV)/bin/mypy --strict src bench/profile.py

## The benchmark, full mode: table on stdout, figures in bench/results/latest.json (about 15 minutes).
bench: $(STAMP)
	$(PY) -m fanout bench --json bench/results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist

## Synthesize the CloudFormation template into deploy/cdk.out/ (no AWS account or Docker needed; pip
## bundles the lifecycle Lambda's code). One stack: the WebSocket API, its lifecycle Lambda and the worker,
## or the worker alone for an existing API. Parameters as CDK context:
##   make deploy-synth CONTEXT="mongoSecretArn=arn:... jwtSecretArn=arn:..."   # API + Lambda + worker
##   make deploy-synth CONTEXT="apiId=a1b2c3d4e5 stage=prod mongoSecretArn=arn:..."   # the worker alone
deploy-synth: $(DEPLOY_STAMP)
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) deploy/app.py $(foreach c,$(CONTEXT),-c $(c))

## Regenerate deploy/prometheus/alerts.yml from deploy/thresholds.py (tests/deploy fails while it is stale).
deploy-alerts: $(STAMP)
	$(PY) deploy/alert_rules.py

## Pin the runtime dependencies with hashes into requirements.lock, which the image and the Lambda bundle
## install from (uv, from the dev extra; Linux, Python 3.11 as both run). tests/deploy fails while it lags
## behind pyproject.toml.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
		--python-platform linux --custom-compile-command "make lock" --output-file requirements.lock
