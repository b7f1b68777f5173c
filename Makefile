# Every target does all of its own set-up, idempotently (scripts/setup.sh): `make check` on a
# fresh Debian machine installs what it needs (the dev extra brings ruff, mypy, import-linter).
.PHONY: setup demo test lint typecheck imports check bench train-captcha

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/constancias demo

# Three pytest-xdist workers, on 2 cores too: most slow tests wait on killed workers, restarts
# and leases, not on the CPU. Every shared resource is per test or per worker (free ports, private redis-server
# and Dovecot, throw-away PostgreSQL databases, tmp_path). PYTEST_PARALLEL= runs serially.
PYTEST_PARALLEL ?= -n 3 --dist worksteal

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check worker flows fixtures tests bench

# Strict on worker/ and flows/ ([tool.mypy] in pyproject.toml).
typecheck: setup
	.venv/bin/mypy

# The layer rule ([tool.importlinter] in pyproject.toml; docs/architecture.md).
imports: setup
	.venv/bin/lint-imports

# The gates CI runs (.ci/run), cheapest first: a failing gate stops the rest.
check: lint typecheck imports test

bench: setup
	.venv/bin/python bench/intake.py
	.venv/bin/python bench/report.py
	.venv/bin/python bench/captcha.py
	.venv/bin/python bench/throughput.py

# Retrains flows/captcha_net.npz from sandbox drawings (seeded: the same weights every time);
# a few minutes on 2 cores. Commit the new file with the figures it printed.
train-captcha: setup
	.venv/bin/python scripts/train_captcha.py
