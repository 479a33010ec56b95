# The two commands of the README. Each one does all set-up first (idempotent).
export XDG_CACHE_HOME := $(CURDIR)/.cache
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	pascal-ref demo

test: setup
	python -m pytest -q $(PYTEST_ARGS)
