# The two commands of the README. Each one does all set-up first (idempotent).
export XDG_CACHE_HOME := $(CURDIR)/.cache
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	pascal-ref demo

# Two pytest workers (the machine's cores); the co-simulation suite stays on one of them (conftest.py).
# PYTEST_WORKERS="-n 0" runs serially.
PYTEST_WORKERS ?= -n 2 --dist loadgroup
test: setup
	python -m pytest -q $(PYTEST_WORKERS) $(PYTEST_ARGS)
