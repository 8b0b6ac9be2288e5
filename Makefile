.PHONY: install services services-down check test run bench

# Set up .venv (Python packages), Debian tools and the Kafka jars; idempotent.
install:
	scripts/install

# Start the local services the tests need (see scripts/services); writes .services/env.
services:
	scripts/services up

# Stop them.
services-down:
	scripts/services down

# Lint, format check, types and import layers.
check:
	scripts/check

# The test command: install, start services, check, then every test against real services.
test:
	scripts/test

# The main job: local Kafka plus `postee run` with examples/cfg-actions.yaml.
run:
	scripts/run

# Router throughput beside raw aiokafka on the same broker.
bench:
	scripts/install && scripts/services up && . .services/env && .venv/bin/python bench/route_throughput.py
