"""Issue 19, findings 3-7 and 9: a run folder holds one experiment, written by one command, and the
exit code says what a CI job must know. Fast: the fake simulator (tests/parallel_fakes.py) and
stand-in policies; the tiny checkpoint only where batching is the point."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mibot_eval
from mibot_eval import exit_codes
from mibot_eval.cli import main
from mibot_eval.commands.run import run_exit_code
from mibot_eval.errors import UserError
from mibot_eval.policy.identity import policy_fingerprint
from mibot_eval.results.lock import LOCK_FILE, writer_lock
from mibot_eval.results.measure.summary import load_run
from mibot_eval.results.store import RunStore
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from tests.fakes import InterruptAt, ScriptedPolicy
from tests.parallel_fakes import write_suite

ROOT = Path(__file__).resolve().parents[1]


def _lines(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mibot-eval:")]
    assert len(err) == 1, err
    return err[0]


# -- finding 3: a Python policy is identified by what it computes ------------------------------------
class BiasPolicy:
    """A policy as a training loop writes one: plain attributes, no describe()."""

    def __init__(self, bias: float) -> None:
        self.bias = bias
        self.weights = np.linspace(-1, 1, 32, dtype=np.float32)

    def infer(self, requests):
        return [np.tile(self.weights * 0.1 + self.bias, (5, 1)) for _ in requests]


def test_two_policies_under_one_name_do_not_share_a_run(tmp_path, fakesim) -> None:
    """Reproduces finding 3: the second policy got the first one's records back, silently."""
    suite = write_suite(tmp_path, tasks=1, episodes=2, max_steps=4)
    kw = dict(suites=[str(suite)], results_dir=tmp_path / "results", name="step-12000", progress=False)
    first = mibot_eval.evaluate(BiasPolicy(0.0), **kw)
    recorded = (first.run_dir / "episodes.jsonl").read_bytes()
    with pytest.raises(UserError, match="different checkpoint") as refused:
        mibot_eval.evaluate(BiasPolicy(0.9), **kw)
    assert "\n" not in str(refused.value) and "parameters:" in str(refused.value)
    assert (first.run_dir / "episodes.jsonl").read_bytes() == recorded  # nothing mixed in
    resumed = mibot_eval.evaluate(BiasPolicy(0.0), **kw)  # another object computing the same
    assert resumed.run_dir == first.run_dir and resumed.suites["fake"].trials == 2
    assert (first.run_dir / "episodes.jsonl").read_bytes() == recorded  # resumed: nothing left to run


def test_a_torch_policy_is_identified_by_its_state_dict(tmp_path, fakesim) -> None:
    torch = pytest.importorskip("torch")

    class TorchPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(4, 32)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def infer(self, requests):
            with torch.no_grad():
                out = self.head(torch.zeros(len(requests), 5, 4)).numpy()
            return list(out)

    policy = TorchPolicy()
    method, digest = policy_fingerprint(policy)
    assert method == "parameters" and policy_fingerprint(TorchPolicy()) == (method, digest)
    suite = write_suite(tmp_path, tasks=1, episodes=1, max_steps=4)
    kw = dict(suites=[str(suite)], results_dir=tmp_path / "results", name="ft", progress=False)
    mibot_eval.evaluate(policy, **kw)
    with torch.no_grad():
        policy.head.bias += 1.0  # a training step in place: same object, other weights
    with pytest.raises(UserError, match="different checkpoint"):
        mibot_eval.evaluate(policy, **kw)
    bf16 = TorchPolicy().to(torch.bfloat16)  # any dtype hashes (as raw bytes)
    assert policy_fingerprint(bf16)[1] != digest


def test_describe_states_the_identity_and_a_policy_without_one_needs_a_name(tmp_path, fakesim) -> None:
    class Described(ScriptedPolicy):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

        def describe(self):
            return {"kind": "mine", "step": self.step}

    assert policy_fingerprint(Described(1))[0] == "describe"
    assert policy_fingerprint(Described(1)) != policy_fingerprint(Described(2))

    class Opaque:  # nothing to hash: its behaviour lives in a function
        def __init__(self) -> None:
            self.act = lambda n: [np.zeros((5, 32), dtype=np.float32)] * n

        def infer(self, requests):
            return self.act(len(requests))

    assert policy_fingerprint(Opaque()) is None
    suite = write_suite(tmp_path, tasks=1, episodes=1, max_steps=4)
    kw = dict(suites=[str(suite)], results_dir=tmp_path / "results", progress=False)
    with pytest.raises(UserError, match="pass name="):
        mibot_eval.evaluate(Opaque(), **kw)
    named = mibot_eval.evaluate(Opaque(), name="opaque", **kw)
    assert named.manifest["checkpoint"]["hash"].startswith("name:")
    mibot_eval.evaluate(Opaque(), name="opaque", **kw)  # the same class and name resume
    with pytest.raises(UserError, match="different checkpoint"):  # another policy under that name
        mibot_eval.evaluate(Described(1), name="opaque", **kw)


# -- finding 4: exit codes ---------------------------------------------------------------------------
class FailingOnTask1(ScriptedPolicy):
    """An adapter-side bug, as it looks from the run: every request of task 1 raises."""

    def infer(self, requests):
        if any("task 1" in r.observation.instruction for r in requests):
            raise RuntimeError("bug in my action decoding")
        return super().infer(requests)


class SignPolicy(ScriptedPolicy):
    """Every action's first dimension pushed one way: the fake suite succeeds only when it is +."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def infer(self, requests):
        return [np.full((5, 32), 0.5 * self.sign, dtype=np.float32) for _ in requests]


@pytest.fixture()
def cli_run(tmp_path, fakesim, checkpoint_dir, monkeypatch):
    """`mibot-eval run` on a fake suite, the checkpoint's policy replaced by `policy`."""

    def run(suite: Path, policy, *args: str, run_name: str = "r") -> int:
        monkeypatch.setattr("mibot_eval.run.runner.load_policy", lambda resolved, device: policy)
        return main(["run", "--checkpoint", str(checkpoint_dir), "--suites", str(suite),
                     "--results", str(tmp_path / "results"), "--run", run_name, "--video", "none",
                     "--workers", "0", "--no-report", *args])

    return run


def test_run_exit_codes_ok_errored_and_interrupted(tmp_path, cli_run, capsys) -> None:
    """Reproduces finding 4: run exited 0 with errored episodes recorded."""
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=4)
    assert cli_run(suite, ScriptedPolicy(), run_name="good") == exit_codes.OK
    assert cli_run(suite, FailingOnTask1(), run_name="bad") == exit_codes.ERRORED_EPISODES
    line = _one_error_line(capsys)
    assert "exit 4: 2 of the 4 selected episodes are recorded as errors" in line and "--retry-errors" in line
    # a rerun of the whole selection still has those errors: still 4; a selection without them: 0
    assert cli_run(suite, ScriptedPolicy(), run_name="bad") == exit_codes.ERRORED_EPISODES
    assert cli_run(suite, ScriptedPolicy(), "--tasks", "0", run_name="bad") == exit_codes.OK

    class Interrupting(InterruptAt, ScriptedPolicy):
        pass

    assert cli_run(suite, Interrupting(at=2), run_name="cut") == exit_codes.INTERRUPTED


def test_run_gate_against_exits_with_the_gate_verdict(tmp_path, cli_run, capsys) -> None:
    suite = write_suite(tmp_path, tasks=4, episodes=40, max_steps=3, success_at=1, success_sign=1.0)
    assert cli_run(suite, SignPolicy(+1), run_name="base") == exit_codes.OK
    baseline = str(tmp_path / "results" / "base")
    code = cli_run(suite, SignPolicy(-1), "--gate-against", baseline, "--max-drop", "5", run_name="worse")
    assert code == exit_codes.REGRESSED
    assert _manifest(tmp_path / "results" / "worse")["gate"]["decision"] == "regressed"
    assert "the gate's verdict is regressed" in capsys.readouterr().err
    # two episodes per task decide nothing: undecided at the end of the plan is inconclusive
    code = cli_run(suite, SignPolicy(+1), "--gate-against", baseline, "--episodes", "2", run_name="few")
    assert code == exit_codes.INCONCLUSIVE
    assert _manifest(tmp_path / "results" / "few")["gate"]["decision"] is None


def test_run_exit_code_reads_the_gate_verdict_when_there_is_one() -> None:
    history = {"history": [{"outcome": {"errors": 0, "selected": 4}}]}
    assert run_exit_code(history, {"decision": "not_worse"})[0] == exit_codes.OK
    assert run_exit_code(history, {"decision": None, "verdict": "regressed"})[0] == exit_codes.REGRESSED
    assert run_exit_code(history, {"decision": None})[0] == exit_codes.INCONCLUSIVE
    errored = {"history": [{"outcome": {"errors": 1, "selected": 4}}]}
    assert run_exit_code(errored, {"verdict": "not_worse"})[0] == exit_codes.ERRORED_EPISODES
    assert run_exit_code(errored, {"verdict": "regressed"})[0] == exit_codes.REGRESSED
    assert run_exit_code(errored, None)[0] == exit_codes.ERRORED_EPISODES


def test_the_readme_exit_code_table_is_exit_codes_py(capsys) -> None:
    """One table, its text the docstrings of mibot_eval/exit_codes.py; --help names the codes."""
    tree = ast.parse((ROOT / "mibot_eval" / "exit_codes.py").read_text())
    documented = {}
    for node, after in zip(tree.body, tree.body[1:], strict=False):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            documented[node.value.value] = " ".join(after.value.value.split())
    assert set(documented) == {0, 1, 2, 3, 4, 5, 130}
    readme = (ROOT / "README.md").read_text()
    for code, text in documented.items():
        row = rf"^\| {code} \| `[A-Z_]+` \| [a-z ,-]+ \| {re.escape(text)} \|$"
        assert re.search(row, readme, re.M), code
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "exit codes: 0 ok, 1 regressed, 2 refused, 3 inconclusive, 4 errored episodes" in \
        " ".join(capsys.readouterr().out.split())


# -- finding 5: --retry-errors ---------------------------------------------------------------------
def test_retry_errors_replaces_the_errored_records(tmp_path, cli_run, capsys) -> None:
    """Reproduces finding 5: after the bug was fixed a rerun skipped the errored episodes."""
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=4)
    assert cli_run(suite, FailingOnTask1()) == exit_codes.ERRORED_EPISODES
    run_dir = tmp_path / "results" / "r"
    errored = {r["key"] for r in _lines(run_dir) if r["status"] == "error"}
    assert errored == {"fake/1/0", "fake/1/1"}
    fixed = ScriptedPolicy()
    assert cli_run(suite, fixed) == exit_codes.ERRORED_EPISODES and not fixed.requests  # frozen in
    assert cli_run(suite, fixed, "--retry-errors") == exit_codes.OK
    assert {r.observation.instruction for r in fixed.requests} == {"do task 1"}  # only those reran
    records = RunStore(run_dir).records()
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)  # one record per key
    replaced = [r for r in records if "replaces" in r]
    assert {r["key"] for r in replaced} == errored
    assert all(r["replaces"]["error"].startswith("RuntimeError: bug") for r in replaced)
    assert len(_lines(run_dir)) == 6  # appended: the old lines stay, the latest line wins
    history = _manifest(run_dir)["history"]
    assert history[-1]["retried_errors"] == sorted(errored) and "retried_errors" not in history[0]
    summary = load_run(run_dir)
    assert summary.suites["fake"].trials == 4 and summary.suites["fake"].errors == 0
    assert not summary.warnings  # a replacement is not a conflicting duplicate


def test_a_replaced_record_is_atomic_under_a_kill(tmp_path) -> None:
    """The replacement is one appended line: torn, the error stays in force; whole, it wins; merge
    and every reader see one record per key."""
    from mibot_eval.results.records import episode_record
    from mibot_eval.run.shard import merge_runs
    from mibot_eval.types import EpisodeResult, EpisodeSpec

    store = RunStore(tmp_path / "run")
    spec = EpisodeSpec("fake", 0, "t", 0, 7, "do it")
    store.append(episode_record(EpisodeResult(spec, False, 0, status="error", error="boom"), {}))
    store.write_manifest({"checkpoint": {"name": "c", "hash": "h"}, "suites": {}})
    retry = {**episode_record(EpisodeResult(spec, True, 3), {}), "replaces": {"status": "error"}}
    line = json.dumps(retry)
    with store.episodes_path.open("a") as stream:  # killed in the middle of the append
        stream.write(line[: len(line) // 2])
    assert [r["status"] for r in store.records()] == ["error"]
    store.append(retry)  # the rerun after the kill: the torn half is cut, the record appended
    assert [r["status"] for r in store.records()] == ["ok"] and len(store.all_records()) == 2
    merged = merge_runs([store.run_dir], tmp_path / "merged")
    assert merged["episodes"] == 1 and [r["status"] for r in _lines(tmp_path / "merged")] == ["ok"]


# -- finding 6: resume guards ----------------------------------------------------------------------
class RuntimePolicy(ScriptedPolicy):
    def __init__(self, dtype: str) -> None:
        super().__init__()
        self.dtype = dtype

    def describe(self):
        return {"kind": "hf", "device": "cuda:0", "dtype": self.dtype, "attn_implementation": "sdpa"}


def test_a_deleted_manifest_is_rebuilt_not_replaced_by_another_protocol(tmp_path, cli_run, capsys) -> None:
    """Reproduces finding 6: manifest deleted, rerun with another --max-steps appended its episodes."""
    suite = write_suite(tmp_path, tasks=1, episodes=2, max_steps=4)
    assert cli_run(suite, ScriptedPolicy(), "--episodes", "1") == exit_codes.OK
    run_dir = tmp_path / "results" / "r"
    (run_dir / "manifest.json").unlink()
    before = (run_dir / "episodes.jsonl").read_bytes()
    assert cli_run(suite, ScriptedPolicy(), "--max-steps", "3") == exit_codes.REFUSED
    assert "suite fake was run with another protocol" in _one_error_line(capsys)
    assert (run_dir / "episodes.jsonl").read_bytes() == before and not (run_dir / "manifest.json").exists()
    assert cli_run(suite, ScriptedPolicy()) == exit_codes.OK  # the same protocol resumes
    manifest = _manifest(run_dir)
    assert manifest["rebuilt_from_records"]["records"] == 1 and len(_lines(run_dir)) == 2


def test_every_record_is_checked_on_resume(tmp_path, cli_run, capsys) -> None:
    suite = write_suite(tmp_path, tasks=1, episodes=2, max_steps=4)
    assert cli_run(suite, ScriptedPolicy(), "--episodes", "1") == exit_codes.OK
    run_dir = tmp_path / "results" / "r"
    (record,) = _lines(run_dir)
    (run_dir / "episodes.jsonl").write_text(json.dumps({**record, "protocol_hash": "0" * 16}) + "\n")
    assert cli_run(suite, ScriptedPolicy()) == exit_codes.REFUSED
    assert "ran with protocol hash 0000000000000000" in _one_error_line(capsys)


def test_a_resume_with_another_runtime_is_refused_unless_allowed(tmp_path, cli_run, capsys,
                                                                 monkeypatch) -> None:
    from mibot_eval.suites import base

    monkeypatch.setitem(base.SIMULATOR_PACKAGES, "fakesim", ("numpy",))
    suite = write_suite(tmp_path, tasks=1, episodes=3, max_steps=4)
    assert cli_run(suite, RuntimePolicy("bfloat16"), "--episodes", "1") == exit_codes.OK
    run_dir = tmp_path / "results" / "r"
    assert cli_run(suite, RuntimePolicy("float32"), "--episodes", "2") == exit_codes.REFUSED
    line = _one_error_line(capsys)
    assert "another runtime (dtype bfloat16 -> float32)" in line and "--allow-mixed-resume" in line
    assert len(_lines(run_dir)) == 1
    manifest = _manifest(run_dir)  # an older simulator recorded: refused, named
    manifest["suites"]["fake"]["simulator_packages"]["numpy"] = "1.0.0"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert cli_run(suite, RuntimePolicy("bfloat16"), "--episodes", "2") == exit_codes.REFUSED
    assert f"fake: numpy 1.0.0 -> {np.__version__}" in _one_error_line(capsys)
    code = cli_run(suite, RuntimePolicy("float32"), "--episodes", "2", "--allow-mixed-resume")
    assert code == exit_codes.OK and len(_lines(run_dir)) == 2
    manifest = _manifest(run_dir)
    assert manifest["mixed_resume"][0]["differences"] == ["dtype bfloat16 -> float32",
                                                          f"fake: numpy 1.0.0 -> {np.__version__}"]
    assert manifest["policy"]["dtype"] == "bfloat16"  # the run's facts stay its first invocation's
    history = manifest["history"]
    assert len(history) == manifest["invocations"] == 2  # the refused invocations left nothing
    assert history[1]["allow_mixed_resume"] is True and history[1]["mixed_resume"]
    assert [h["selection"]["episodes_per_task"] for h in history] == [1, 2]
    assert [h["policy_runtime"]["dtype"] for h in history] == ["bfloat16", "float32"]
    for entry in history:
        assert entry["host"]["hostname"] and entry["packages"]["numpy"] and entry["command"]
        assert entry["outcome"]["selected"] in (1, 2)
        gpu = entry["host"].get("gpu")  # absent on a machine without a GPU, else its model
        assert gpu is None or gpu["models"]


# -- finding 7: one writer per run folder ----------------------------------------------------------
HOLDER = """
import sys, time
from pathlib import Path
from mibot_eval.results.lock import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_at_once_and_a_killed_ones_lock_is_no_obstacle(
        tmp_path, cli_run, capsys) -> None:
    """Reproduces finding 7: two commands on one folder both recorded every episode."""
    suite = write_suite(tmp_path, tasks=1, episodes=2, max_steps=4)
    run_dir = tmp_path / "results" / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        policy = ScriptedPolicy()
        assert cli_run(suite, policy) == exit_codes.REFUSED
        line = _one_error_line(capsys)
        assert f"is being written by pid {holder.pid} on host " in line and "one writer" in line
        assert not policy.requests and not (run_dir / "episodes.jsonl").exists()
        assert main(["merge", str(tmp_path), "-o", str(run_dir)]) == exit_codes.REFUSED  # merge writes
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / LOCK_FILE).read_text()  # the killed holder's text is still there
    assert cli_run(suite, ScriptedPolicy()) == exit_codes.OK  # but the OS released its lock
    assert len(_lines(run_dir)) == 2 and (run_dir / LOCK_FILE).read_text() == ""
    with writer_lock(run_dir), pytest.raises(UserError, match=f"pid {os.getpid()}"):
        execute(RunRequest(checkpoint="x", suites=[str(suite)], results_dir=tmp_path / "results",
                           run_name="r", progress=False), policy=ScriptedPolicy())


def test_merge_exits_5_when_planned_episodes_are_missing(tmp_path, fakesim, checkpoint_dir) -> None:
    suite = write_suite(tmp_path, tasks=1, episodes=4, max_steps=4)
    shards = [execute(RunRequest(checkpoint=str(checkpoint_dir), suites=[str(suite)], shard=(i, 2),
                                 results_dir=tmp_path / "results", video="none", progress=False),
                      policy=ScriptedPolicy()) for i in range(2)]
    assert main(["merge", str(shards[0]), "-o", str(tmp_path / "half"), "--no-report"]) == \
        exit_codes.INCOMPLETE
    assert main(["merge", *map(str, shards), "-o", str(tmp_path / "all"), "--no-report"]) == exit_codes.OK


# -- finding 9: defaults that do not depend on timing ----------------------------------------------
def test_workers_with_the_default_batch_size_match_the_single_process_run(tmp_path, fakesim,
                                                                          tiny_checkpoint) -> None:
    """Reproduces finding 9: with the former default (8) and a per-sample-seed checkpoint the
    workers' records depended on which observations met in a batch (6 of 6 differed)."""
    from tests.parallel_helpers import outcome, records

    suite = write_suite(tmp_path, tasks=2, episodes=1, max_steps=10, step_sleep=0.002)

    def run(name: str, **kw) -> Path:
        return execute(RunRequest(checkpoint="tiny", suites=[str(suite)], results_dir=tmp_path / name,
                                  video="none", progress=False, **kw))

    single = run("single")
    # a long batch wait: if the default allowed batching, both workers' requests would meet
    multi = run("multi", workers=2, batch_wait_ms=200)
    assert outcome(records(multi)) == outcome(records(single))
    parallel = _manifest(multi)["parallel"]
    assert parallel["batch_size"] == 1 and parallel["max_batch"] == 1 and parallel["workers"] == 2
    assert _manifest(single)["policy"]["batched_per_sample_seed"] is True  # batching would apply


def test_workers_zero_runs_in_this_process(tmp_path, fakesim, checkpoint_dir) -> None:
    suite = write_suite(tmp_path, tasks=1, episodes=1, max_steps=4)
    run_dir = execute(RunRequest(checkpoint=str(checkpoint_dir), suites=[str(suite)], workers=0,
                                 results_dir=tmp_path, video="none", progress=False),
                      policy=ScriptedPolicy())
    (record,) = _lines(run_dir)
    assert record["metrics"]["worker_pid"] == os.getpid() and "parallel" not in _manifest(run_dir)


def test_host_info_names_the_gpu_where_nvidia_smi_answers(tmp_path, monkeypatch) -> None:
    from mibot_eval.run.manifest import host_info

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 570.124.06'\necho 'NVIDIA H200, 570.124.06'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    gpu = host_info()["gpu"]
    assert gpu["models"] == ["NVIDIA H200", "NVIDIA H200"] and gpu["driver"] == "570.124.06"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")  # a driver that is gone
    info = host_info()
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        assert "gpu" not in info and info["hostname"]
