"""docs/ci.md's CI recipe, run as a GitHub Actions runner runs it (issue 19: "a CI recipe that is tested").

The workflows are read from docs/ci.md's fenced blocks marked `ci-recipe:NAME`, so the doc and this test
cannot drift. A small runner (`run_job`) executes a job's `run:` scripts in order with `bash -eo pipefail`
from a temporary workspace, with the workflow's env (the `${{ ... }}` expressions replaced by this test's
values: a test that leaves one unset fails), `$GITHUB_ENV`, `$GITHUB_PATH` and `$GITHUB_STEP_SUMMARY` as
files, later steps skipped after a failure unless `if: always()`, and artifacts uploaded and downloaded
by name. Stand-ins: the `install` step puts this test's venv (the installed console script) on PATH, and
the `fetch-baseline` step's `gh run download` takes the artifact the baseline job uploaded.

The simulator is tests/parallel_fakes.py's fake suite (success at step 3 on even trials when the first
action dimension is positive), registered as adapter `fakesim` by a `sitecustomize` hook on PYTHONPATH:
the console script, its run folders, `check` and the exit codes are the real ones. The checkpoints are
copies of the tiny checkpoint whose action statistics fix the first action dimension (+1, -1, 3e38).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ci.md"
BIN = Path(sys.executable).parent  # the venv `make setup` installed mibot-eval into
FENCE = re.compile(r"^```(\w+) ci-recipe:(\S+)\n(.*?)^```$", re.S | re.M)
BASELINE_FILE, GATE_FILE = "mibot-eval-baseline.yml", "mibot-eval-gate.yml"
TASKS, EPISODES = 2, 8  # 16 paired episodes; the fake suite's success needs an even trial


def recipe_blocks() -> dict[str, str]:
    """docs/ci.md's `ci-recipe:NAME` blocks, by NAME."""
    blocks = {name: body for _, name, body in FENCE.findall(DOC.read_text())}
    assert {BASELINE_FILE, GATE_FILE, "sequential-steps", "reference-steps", "sizing"} <= set(blocks)
    return blocks


# -- a minimal GitHub Actions job runner ----------------------------------------------------------------


@dataclass
class JobResult:
    codes: dict[str, int] = field(default_factory=dict)  # step id -> exit code (steps that ran)
    github_env: dict[str, str] = field(default_factory=dict)  # what the steps wrote to $GITHUB_ENV
    github_path: str = ""  # what they wrote to $GITHUB_PATH
    logs: dict[str, str] = field(default_factory=dict)  # step id -> stdout + stderr
    summary: str = ""

    @property
    def code(self) -> int:
        """The first failed step's exit code (the job fails there), 0 when every step passed."""
        return next((c for c in self.codes.values() if c), 0)


StandIn = Callable[[dict, Path, Path], None]  # (step, workspace, runner temp folder)


def run_job(workflow: dict, job: str, workspace: Path, env: dict[str, str], values: dict[str, str],
            stand_ins: dict[str, StandIn], artifacts: Path, steps: list[dict] | None = None,
            only: set[str] | None = None, after: JobResult | None = None) -> JobResult:
    """Run `job`'s steps (or `steps`) as a runner would; `values` replace env entries holding `${{`.
    `only` runs some steps again after the job `after` (its $GITHUB_ENV and $GITHUB_PATH kept)."""
    spec = workflow["jobs"][job]
    runner = workspace.parent / f"{workspace.name}-runner"
    runner.mkdir(exist_ok=True)
    files = {name: runner / name for name in ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY",
                                               "GITHUB_OUTPUT")}
    for path in files.values():
        path.write_text("")
    if after is not None:
        files["GITHUB_ENV"].write_text("".join(f"{k}={v}\n" for k, v in after.github_env.items()))
        files["GITHUB_PATH"].write_text(after.github_path)
    result, failed = JobResult(), False
    for index, step in enumerate(steps if steps is not None else spec["steps"]):
        sid = step.get("id") or step.get("name") or f"step{index}"
        if only is not None and sid not in only:
            continue
        condition = step.get("if")
        assert condition in (None, "always()"), f"{sid}: the test runner knows no `if: {condition}`"
        if failed and condition != "always()":
            continue
        if sid in stand_ins:
            stand_ins[sid](step, workspace, runner)
            result.codes[sid] = 0
            continue
        if "uses" in step:
            _uses(step, workspace, artifacts)
            result.codes[sid] = 0
            continue
        script = step["run"]
        assert "${{" not in script, f"{sid}: a run script reads env variables, never ${{{{ }}}} expressions"
        declared = {**workflow.get("env", {}), **spec.get("env", {}), **step.get("env", {})}
        unknown = set(values) - set(workflow.get("env", {})) - set(spec.get("env", {}))
        assert not unknown, f"the test sets variables the workflow does not declare: {unknown}"
        step_env = {k: str(v) for k, v in declared.items()} | values
        unset = [k for k, v in step_env.items() if "${{" in v]
        assert not unset, f"{sid}: the test gives no value for {unset}"
        path = [line for line in files["GITHUB_PATH"].read_text().splitlines() if line][::-1]
        full = {**env, **step_env, **_read_env(files["GITHUB_ENV"]), "RUNNER_TEMP": str(runner),
                "GITHUB_WORKSPACE": str(workspace), **{k: str(v) for k, v in files.items()},
                "PATH": os.pathsep.join([*path, env["PATH"]])}
        (runner / "step.sh").write_text(script)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(runner / "step.sh")],
                              cwd=workspace, env=full, capture_output=True, text=True, timeout=600)
        result.codes[sid], result.logs[sid] = proc.returncode, proc.stdout + proc.stderr
        failed = failed or proc.returncode != 0
    result.github_env = _read_env(files["GITHUB_ENV"])
    result.github_path = files["GITHUB_PATH"].read_text()
    result.summary = files["GITHUB_STEP_SUMMARY"].read_text()
    return result


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def _uses(step: dict, workspace: Path, artifacts: Path) -> None:
    """actions/upload-artifact: every path must exist; stored under the artifact's name, relative to the
    paths' common folder (a single folder: its contents), as the action does."""
    action = step["uses"].split("@")[0]
    assert action == "actions/upload-artifact", f"the test runner knows no action {action}"
    paths = [workspace / p for p in step["with"]["path"].split()]
    missing = [str(p.relative_to(workspace)) for p in paths if not p.exists()]
    assert not missing, f"artifact {step['with']['name']}: no {missing}"
    common = Path(os.path.commonpath(paths)) if len(paths) > 1 or paths[0].is_dir() else paths[0].parent
    store = artifacts / step["with"]["name"]
    for p in paths:
        target = store / p.relative_to(common)
        if p.is_dir():
            shutil.copytree(p, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)


def _install(step: dict, workspace: Path, runner: Path) -> None:
    """Stand-in for `install`: what it does (pip install of mibot-eval, then its bin on $GITHUB_PATH) is
    what `make setup` did for this venv."""
    assert 'pip" install' in step["run"] and '-c "$CONSTRAINTS" "$MIBOT_EVAL"' in step["run"]
    assert '>> "$GITHUB_PATH"' in step["run"] and (BIN / "mibot-eval").is_file()
    with open(runner / "GITHUB_PATH", "a") as handle:
        handle.write(f"{BIN}\n")


def _fetch_baseline(artifacts: Path) -> StandIn:
    """Stand-in for `gh run download`: the artifact the baseline job uploaded, by the name the step asks
    for, from the workflow file the doc says the baseline workflow is."""

    def fetch(step: dict, workspace: Path, runner: Path) -> None:
        script = step["run"]
        assert f"--workflow {BASELINE_FILE}" in script and "--status success" in script
        name = re.search(r"--name (\S+)", script).group(1)
        folder = re.search(r"--dir (\S+)", script).group(1)
        shutil.rmtree(workspace / "results", ignore_errors=True)
        shutil.copytree(artifacts / name, workspace / folder)

    return fetch


# -- what the recipe runs: the installed tool, a fake simulator, checkpoints of known behaviour -------------


def _derive(tiny: Path, dest: Path, first_action: float) -> Path:
    """A copy of the tiny checkpoint whose decoded first action dimension is `first_action` (to within
    1e-4 x the normalized output): the processor's action statistics for libero_all get that mean and a
    std of 1e-4 (still above the mask's 1e-5, so the dimension stays active)."""
    shutil.copytree(tiny, dest, ignore=shutil.ignore_patterns(".*"))
    config_path = dest / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    stats = config["action_config"]["libero_all"]
    for mean, std in zip(stats["mean"], stats["std"], strict=True):
        mean[0], std[0] = first_action, 1e-4
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return dest


def _suite(folder: Path, max_steps: int) -> Path:
    from tests.parallel_fakes import write_suite

    folder.mkdir()
    return write_suite(folder, name="fake", tasks=TASKS, episodes=EPISODES, max_steps=max_steps,
                       success_at=3, success_sign=1.0)


@dataclass
class Setup:
    root: Path
    env: dict[str, str]
    workflows: dict[str, dict]
    checkpoints: dict[str, Path]
    suite: Path
    other_protocol: Path
    artifacts: Path
    baseline: JobResult

    def workspace(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    def gate(self, name: str, values: dict[str, str], steps: list[dict] | None = None,
             **kwargs) -> tuple[JobResult, Path]:
        workspace = kwargs.pop("workspace", None) or self.workspace(name)
        stand_ins = {"install": _install, "fetch-baseline": _fetch_baseline(self.artifacts)}
        result = run_job(self.workflows[GATE_FILE], "gate", workspace, self.env, values, stand_ins,
                         self.artifacts / name, steps=steps, **kwargs)
        return result, workspace


def _values(suite: Path, **extra: str) -> dict[str, str]:
    """The test's values for the gate workflow's `${{ ... }}` env entries (and its small selection)."""
    return {"SUITES": str(suite), "EPISODES": str(EPISODES), "MAX_DROP": "", "WORKERS": "0",
            "HF_TOKEN": "", **extra}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_checkpoint) -> Setup:
    """Checkpoints, suites, the hook, and the baseline workflow run once (its artifact uploaded)."""
    root = tmp_path_factory.mktemp("ci-recipe")
    checkpoints = {name: _derive(tiny_checkpoint, root / "checkpoints" / name, value)
                   for name, value in (("plus", 1.0), ("minus", -1.0), ("broken", 3e38))}
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "# tests/test_ci_recipe.py: register the fake simulator in every Python started with this on\n"
        "# PYTHONPATH (the console script included); the project root is appended, after the installed\n"
        "# mibot_eval, for tests.parallel_fakes.\n"
        f"import sys\nsys.path.append({str(ROOT)!r})\n"
        "from mibot_eval.suites import base\nfrom tests.parallel_fakes import ADAPTER_ENTRY\n"
        "base.ADAPTERS.setdefault('fakesim', ADAPTER_ENTRY)\n")
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "HF_HOME", "HF_HUB_CACHE")
    keep = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("GITHUB_")}
    path = os.pathsep.join(p for p in keep["PATH"].split(os.pathsep) if Path(p) != BIN)  # install adds it
    env = {**keep, "PATH": path, "PYTHONPATH": str(hooks), "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    blocks = recipe_blocks()
    workflows = {name: yaml.safe_load(blocks[name]) for name in (BASELINE_FILE, GATE_FILE)}
    suite = _suite(root / "suite", max_steps=20)
    other = _suite(root / "suite-other-protocol", max_steps=24)
    artifacts = root / "artifacts"
    workspace = root / "baseline-job"
    workspace.mkdir()
    values = {**_values(suite), "BASELINE": str(checkpoints["plus"]), "CATCH_DROP": "50",
              "DISCORDANCE": "0.02"}
    baseline = run_job(workflows[BASELINE_FILE], "baseline", workspace, env, values, {"install": _install},
                       artifacts)
    return Setup(root, env, workflows, checkpoints, suite, other, artifacts, baseline)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


# -- the cases ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_baseline_workflow_records_sizes_and_uploads(recipe: Setup) -> None:
    result = recipe.baseline
    assert result.codes == {"install": 0, "record": 0, "plan": 0, "Upload the baseline run": 0}, result.logs
    records = _records(recipe.artifacts / "mibot-eval-baseline")
    assert len(records) == TASKS * EPISODES and all(r["status"] == "ok" for r in records)
    assert sum(r["success"] for r in records) == TASKS * EPISODES // 2  # the even trials
    assert "episodes / task to pass an unchanged candidate" in result.summary  # plan-gate's table


@pytest.mark.slow
def test_faithful_candidate_is_inconclusive_at_this_size_and_not_worse_with_a_wider_margin(recipe) -> None:
    values = _values(recipe.suite, CANDIDATE=str(recipe.checkpoints["plus"]), MAX_DROP="10",
                     ON_INCONCLUSIVE="fail")
    result, workspace = recipe.gate("faithful", values)
    assert result.github_env == {"RUN_EXIT": "0", "GATE_EXIT": "3"}, result.logs
    assert result.code == 3 and result.codes["verdict"] == 3  # ON_INCONCLUSIVE: fail
    gate = (workspace / "results" / "gate.md").read_text()
    assert "RESULT: INCONCLUSIVE" in gate and "margin 10.0" in gate and gate in result.summary
    assert (recipe.artifacts / "faithful" / "mibot-eval-candidate" / "candidate" / "report.md").is_file()
    warn, _ = recipe.gate("faithful", {**values, "ON_INCONCLUSIVE": "warn"}, workspace=workspace,
                          only={"verdict"}, after=result)
    assert warn.codes == {"verdict": 0} and "::warning::INCONCLUSIVE" in warn.logs["verdict"]
    wider, _ = recipe.gate("faithful", {**values, "MAX_DROP": "20"}, workspace=workspace,
                           only={"check", "verdict"}, after=result)
    assert wider.github_env["GATE_EXIT"] == "0" and wider.code == 0, wider.logs
    assert "RESULT: NOT WORSE" in (workspace / "results" / "gate.md").read_text()


@pytest.mark.slow
def test_regressed_candidate_fails_the_job_with_1(recipe) -> None:
    values = _values(recipe.suite, CANDIDATE=str(recipe.checkpoints["minus"]), ON_INCONCLUSIVE="warn")
    result, workspace = recipe.gate("regressed", values)
    assert result.github_env == {"RUN_EXIT": "0", "GATE_EXIT": "1"}, result.logs
    assert result.code == 1 and result.codes["verdict"] == 1
    assert "RESULT: REGRESSED" in (workspace / "results" / "gate.md").read_text()
    assert (recipe.artifacts / "regressed" / "mibot-eval-candidate" / "gate.md").is_file()


@pytest.mark.slow
def test_broken_candidate_fails_the_job_with_4_although_the_gate_alone_would_not(recipe) -> None:
    values = _values(recipe.suite, CANDIDATE=str(recipe.checkpoints["broken"]), ON_INCONCLUSIVE="warn")
    result, workspace = recipe.gate("broken", values)
    assert result.github_env == {"RUN_EXIT": "4", "GATE_EXIT": "3"}, result.logs
    assert result.code == 4 and result.codes["verdict"] == 4  # even with ON_INCONCLUSIVE: warn
    errors = [r for r in _records(workspace / "results" / "candidate") if r["status"] == "error"]
    assert sorted(r["trial"] for r in errors) == [1, 1, 3, 3, 5, 5, 7, 7]
    assert all("non-finite actions" in r["error"] for r in errors)


@pytest.mark.slow
def test_candidate_of_another_protocol_is_refused_with_2(recipe) -> None:
    values = _values(recipe.other_protocol, CANDIDATE=str(recipe.checkpoints["plus"]), ON_INCONCLUSIVE="fail")
    result, workspace = recipe.gate("mismatch", values)
    assert result.github_env == {"RUN_EXIT": "0", "GATE_EXIT": "2"}, result.logs
    assert result.code == 2 and result.codes["verdict"] == 2
    assert "max_steps 24 vs 20" in (workspace / "results" / "gate.md").read_text()


@pytest.mark.slow
def test_sequential_variant_stops_a_regressed_candidate_early(recipe) -> None:
    (replacement,) = yaml.safe_load(recipe_blocks()["sequential-steps"])
    steps = [replacement if s.get("id") == "candidate" else s
             for s in recipe.workflows[GATE_FILE]["jobs"]["gate"]["steps"]]
    assert replacement in steps
    values = _values(recipe.suite, CANDIDATE=str(recipe.checkpoints["minus"]), MAX_DROP="0",
                     ON_INCONCLUSIVE="fail")
    result, workspace = recipe.gate("sequential", values, steps=steps)
    assert result.github_env == {"RUN_EXIT": "1", "GATE_EXIT": "1"}, result.logs
    assert result.code == 1 and result.codes["verdict"] == 1
    assert len(_records(workspace / "results" / "candidate")) < TASKS * EPISODES  # stopped early
    assert "sequential paired gate" in (workspace / "results" / "gate.md").read_text()


# -- static checks: every command parses, both workflows share the selection, one source for CI recipes ----


def _mibot_eval_commands(block: str) -> list[str]:
    """Every line of a block that runs `mibot-eval`, without what follows the command (`|| ...`, `| tee`)."""
    lines = [line.strip() for line in block.splitlines() if line.strip().startswith("mibot-eval ")]
    return [re.split(r" \|\|| \|| 2>&1| >", line)[0] for line in lines]


def test_every_mibot_eval_command_in_the_recipe_parses() -> None:
    from mibot_eval.cli import build_parser

    sample = {"BASELINE": "someone/base", "CANDIDATE": "someone/my-finetune", "SUITES": "libero_spatial",
              "EPISODES": "20", "MAX_DROP": "3", "CATCH_DROP": "5", "DISCORDANCE": "0.05", "WORKERS": "auto"}
    parser = build_parser()
    seen = set()
    for name, block in recipe_blocks().items():
        for command in _mibot_eval_commands(block):
            expanded = subprocess.run(["bash", "-c", f"set -- {command}; printf '%s\\0' \"$@\""],
                                      env={**sample, "PATH": os.environ["PATH"]}, capture_output=True,
                                      text=True, check=True).stdout.split("\0")[:-1]
            assert expanded[0] == "mibot-eval", (name, command)
            args = parser.parse_args(expanded[1:])  # argparse exits (SystemExit) on an unknown flag
            seen.add((name, args.command))
    assert {(BASELINE_FILE, "run"), (BASELINE_FILE, "plan-gate"), (GATE_FILE, "run"), (GATE_FILE, "check"),
            ("sequential-steps", "run"), ("reference-steps", "run"), ("reference-steps", "check"),
            ("sizing", "plan-gate"), ("sizing", "check")} <= seen


def test_both_workflows_use_the_same_tool_and_selection() -> None:
    blocks = recipe_blocks()
    baseline, gate = (yaml.safe_load(blocks[name])["env"] for name in (BASELINE_FILE, GATE_FILE))
    for key in ("MIBOT_EVAL", "CONSTRAINTS", "SUITES", "EPISODES", "MAX_DROP", "WORKERS", "MUJOCO_GL"):
        assert baseline[key] == gate[key], key
    tag = re.search(r"@(\S+)$", baseline["MIBOT_EVAL"]).group(1)
    assert f"/{tag}/constraints.txt" in baseline["CONSTRAINTS"]  # the constraints of the same version
    workflow = yaml.safe_load(blocks[BASELINE_FILE])
    (upload,) = [s for s in workflow["jobs"]["baseline"]["steps"] if "uses" in s]
    fetch = next(s for s in yaml.safe_load(blocks[GATE_FILE])["jobs"]["gate"]["steps"]
                 if s.get("id") == "fetch-baseline")
    assert f"--name {upload['with']['name']}" in fetch["run"]
    assert shlex.split(fetch["run"].splitlines()[-1])[-1] == upload["with"]["path"]


def test_ci_recipes_have_one_home_linked_from_readme_and_gate_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    gate_doc = (ROOT / "docs" / "regression-gate.md").read_text()
    exit_codes = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert "(docs/ci.md)" in exit_codes and "(ci.md)" in gate_doc
    for marker in ("runs-on:", "actions/upload-artifact", "uses: actions/"):
        assert marker not in gate_doc and marker not in readme, marker
