# mibot-eval: `make setup`, `make eval-libero`, `make test`. Variables narrow a run:
#   CHECKPOINT=<name in checkpoints.yaml | hub id | local folder>  SUITES=a,b  TASKS=0,1  EPISODES=N
VENV       ?= .venv
PYTHON     ?= python3
PY          = $(VENV)/bin/python
CHECKPOINT ?= Xiaomi-Robotics-0-LIBERO
SUITES     ?=
TASKS      ?=
EPISODES   ?=
MAX_STEPS  ?=
VIDEO      ?= failures
ARGS       ?=
export MUJOCO_GL ?= egl

RUN_FLAGS = --checkpoint $(CHECKPOINT) $(if $(SUITES),--suites $(SUITES)) \
	$(if $(TASKS),--tasks $(TASKS)) $(if $(EPISODES),--episodes $(EPISODES)) \
	$(if $(MAX_STEPS),--max-steps $(MAX_STEPS)) --video $(VIDEO) $(ARGS)

.PHONY: setup eval-libero test lint bench-render clean-venv help
help:
	@echo "make setup         create $(VENV) with the pinned model + LIBERO stack"
	@echo "make eval-libero   evaluate CHECKPOINT (default $(CHECKPOINT)) on LIBERO"
	@echo "make test          run the test suite"
	@echo "make bench-render  lazy vs eager rendering benchmark"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[model,libero,dev]"
	touch $@

eval-libero: setup
	$(PY) -m mibot_eval.cli run $(if $(SUITES),,--suites libero_spatial,libero_object,libero_goal,libero_10) $(RUN_FLAGS)

test: setup
	$(PY) -m ruff check mibot_eval tests benchmarks
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check mibot_eval tests benchmarks

bench-render: setup
	$(PY) benchmarks/libero_render.py

clean-venv:
	rm -rf $(VENV)
