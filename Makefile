# mibot-eval: `make setup`, `make eval-libero`, `make test`. Variables narrow a run:
#   CHECKPOINT=<name in checkpoints.yaml | any hub id owner/name | local folder>  SUITES=a,b  TASKS=0,1
#   EPISODES=N  LIKE=<listed checkpoint an unlisted CHECKPOINT inherits suites, robot type, numbers from>
VENV       ?= .venv
PYTHON     ?= python3
PY          = $(VENV)/bin/python
CHECKPOINT ?= Xiaomi-Robotics-0-LIBERO
SUITES     ?=
LIKE       ?=
TASKS      ?=
EPISODES   ?=
MAX_STEPS  ?=
VIDEO      ?= failures
ARGS       ?=
export MUJOCO_GL ?= egl

RUN_FLAGS = --checkpoint $(CHECKPOINT) $(if $(SUITES),--suites $(SUITES)) $(if $(LIKE),--like $(LIKE)) \
	$(if $(TASKS),--tasks $(TASKS)) $(if $(EPISODES),--episodes $(EPISODES)) \
	$(if $(MAX_STEPS),--max-steps $(MAX_STEPS)) --video $(VIDEO) $(ARGS)

# CALVIN: SPLIT=abc|abcd picks the matching released checkpoint; SEQUENCES=N runs the first N.
SPLIT     ?= abc
SEQUENCES ?=
CALVIN_CHECKPOINT_abc  = Xiaomi-Robotics-0-Calvin-ABC_D
CALVIN_CHECKPOINT_abcd = Xiaomi-Robotics-0-Calvin-ABCD_D
CALVIN_CKPT  = $(if $(filter command line environment,$(origin CHECKPOINT)),$(CHECKPOINT),$(CALVIN_CHECKPOINT_$(SPLIT)))
CALVIN_VIDEO = $(if $(filter command line environment,$(origin VIDEO)),$(VIDEO),none)

# SimplerEnv: its own venv (ManiSkill2_real2sim needs gymnasium<1 and sapien 2.2; LIBERO needs >=1).
SIMPLER_VENV ?= .venv-simpler
ROBOT   ?= google
SETTING ?= vm
SIMPLER_SUITE_google = simpler_google_$(SETTING)
SIMPLER_SUITE_widowx = simpler_widowx
SIMPLER_CHECKPOINT_google = Xiaomi-Robotics-0-SimplerEnv-Google-Robot
SIMPLER_CHECKPOINT_widowx = Xiaomi-Robotics-0-SimplerEnv-WidowX
SIMPLER_CKPT = $(if $(filter command line environment,$(origin CHECKPOINT)),$(CHECKPOINT),$(SIMPLER_CHECKPOINT_$(ROBOT)))

.PHONY: setup eval-libero eval-libero-pro eval-calvin setup-calvin eval-simpler setup-simpler simpler-args test lint bench-render clean-venv help
help:
	@echo "make setup         create $(VENV) with the pinned model + LIBERO stack"
	@echo "make eval-libero   evaluate CHECKPOINT (default $(CHECKPOINT)) on LIBERO"
	@echo "                   (your own: CHECKPOINT=owner/name or a folder, LIKE=Xiaomi-Robotics-0-LIBERO)"
	@echo "make eval-libero-pro  the same on every supported LIBERO-PRO variant (docs/libero-pro.md)"
	@echo "make eval-calvin   SPLIT=abc|abcd [SEQUENCES=N]: CALVIN chained protocol"
	@echo "make setup-calvin  install calvin_env (upstream, pinned commit) into $(VENV)"
	@echo "make eval-simpler  ROBOT=google|widowx [SETTING=vm|va]: SimplerEnv"
	@echo "make setup-simpler install SimplerEnv + ManiSkill2_real2sim (pinned) into $(SIMPLER_VENV)"
	@echo "make test          run the test suite"
	@echo "make bench-render  lazy vs eager rendering benchmark"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[model,libero,serve,ray,dev]"
	touch $@

eval-libero: setup
	$(PY) -m mibot_eval.cli run $(if $(SUITES),,--suites libero_spatial,libero_object,libero_goal,libero_10) $(RUN_FLAGS)

# LIBERO-PRO robustness suites (mibot_eval/data/suites/libero_pro/): every supported upstream variant unless SUITES=...
eval-libero-pro: setup
	$(PY) -m mibot_eval.cli run $(if $(SUITES),,--suites $$($(PY) -m mibot_eval.cli list --names --benchmark libero_pro)) $(RUN_FLAGS)
	@echo "drop vs clean: $(PY) -m mibot_eval.cli robustness --clean results/<make eval-libero run> --variant results/<this run>"

setup-calvin: setup
	VENV=$(VENV) bash scripts/setup_calvin.sh

eval-calvin: setup
	@test -n "$(CALVIN_CHECKPOINT_$(SPLIT))" || { echo "SPLIT must be abc or abcd, got '$(SPLIT)'" >&2; exit 2; }
	$(PY) -m mibot_eval.cli run --checkpoint $(CALVIN_CKPT) --suites calvin_$(SPLIT)_d $(if $(LIKE),--like $(LIKE)) \
		$(if $(SEQUENCES),--tasks 0-$(shell echo $$(($(SEQUENCES)-1)))) \
		$(if $(MAX_STEPS),--max-steps $(MAX_STEPS)) --video $(CALVIN_VIDEO) $(ARGS)

setup-simpler: $(SIMPLER_VENV)/.installed

$(SIMPLER_VENV)/.installed: scripts/setup_simpler.sh pyproject.toml constraints.txt
	PYTHON=$(PYTHON) bash scripts/setup_simpler.sh $(SIMPLER_VENV)
	touch $@

simpler-args:
	@test -n "$(SIMPLER_CHECKPOINT_$(ROBOT))" || { echo "ROBOT must be google or widowx, got '$(ROBOT)'" >&2; exit 2; }
	@test "$(ROBOT)" = widowx || test "$(SETTING)" = vm || test "$(SETTING)" = va || { echo "SETTING must be vm or va, got '$(SETTING)'" >&2; exit 2; }

eval-simpler: simpler-args setup-simpler
	$(SIMPLER_VENV)/bin/python -m mibot_eval.cli run --checkpoint $(SIMPLER_CKPT) --suites $(SIMPLER_SUITE_$(ROBOT)) \
		$(if $(LIKE),--like $(LIKE)) \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(EPISODES),--episodes $(EPISODES)) \
		$(if $(MAX_STEPS),--max-steps $(MAX_STEPS)) --video $(VIDEO) $(ARGS)

# pytest-xdist processes for `make test`, each running one test file at a time (module fixtures stay shared)
TEST_WORKERS ?= 2
test: setup
	$(PY) -m ruff check mibot_eval tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10

lint: setup
	$(PY) -m ruff check mibot_eval tests benchmarks

bench-render: setup
	$(PY) benchmarks/libero_render.py

clean-venv:
	rm -rf $(VENV)
