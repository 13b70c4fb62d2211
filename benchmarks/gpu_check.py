"""GPU facts for the README's throughput estimate, in one JSON (see gpu_check.sh for the GPU machine).

    python benchmarks/gpu_check.py --out gpu_check.json [--size release|tiny] [--device cuda]
                                   [--replicas 1,2,4,8] [--seconds 15] [--checkpoint-dir DIR]

Measures, writing the JSON after every step (a step that fails is recorded with its error):
  render     seconds per two-camera 256x256 LIBERO frame (EGL on this machine), from the same
             steps with and without rendering (libero_spatial task 0)
  latency    the stand-in checkpoint (`tiny-checkpoint --size release`: the release's dimensions,
             random weights) at batch 1 in bf16 with sdpa, and with flash_attention_2 if flash-attn
             is importable: median / p90 ms per chunk over repeated LIBERO-shaped requests
  memory     peak GPU memory of one replica (torch.cuda.max_memory_allocated) after those forwards
  replicas   chunks/s with R replica processes (`run --replicas R`), R clients sending back to back
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from replica_scaling import _request, measure  # noqa: E402  (benchmarks/, beside this script)


def render_seconds(frames: int = 20) -> dict[str, Any]:
    from mibot_eval.config import load_suite
    from mibot_eval.suites.libero import LiberoAdapter

    adapter = LiberoAdapter(load_suite("libero_spatial"))
    spec = adapter.episodes(tasks=[0], episodes_per_task=1)[0]
    noop = np.array([0, 0, 0, 0, 0, 0, -1.0])
    timings = {}
    for observe in (False, True):
        adapter.reset(spec)
        start = time.perf_counter()
        for _ in range(frames):
            adapter.step(noop, observe=observe)
        timings[observe] = (time.perf_counter() - start) / frames
    adapter.close()
    return {"seconds_per_two_camera_frame": round(timings[True] - timings[False], 5),
            "seconds_per_physics_step": round(timings[False], 5), "frames": frames,
            "mujoco_gl": os.environ.get("MUJOCO_GL")}


def latency(checkpoint: Path, device: str, attn: str | None, repeats: int = 20) -> dict[str, Any]:
    import torch

    from mibot_eval.policy import hf

    if attn is not None:  # force the attention kernel (the release's rule picks FA2 when importable)
        hf.choose_runtime = lambda d, _attn=attn: (d or device, "bfloat16" if device.startswith("cuda")
                                                   else "float32", _attn)
    policy = hf.HFPolicy(checkpoint, device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    request = _request()
    for _ in range(3):
        policy.infer([request])
    samples = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        policy.infer([request])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        samples.append(1000 * (time.perf_counter() - start))
    out = {"attn_implementation": policy.attn, "dtype": str(policy.dtype), "device": policy.device,
           "median_ms": round(statistics.median(samples), 2),
           "p90_ms": round(float(np.percentile(samples, 90)), 2), "repeats": repeats}
    if device.startswith("cuda"):
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=("release", "tiny"), default="release")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--replicas", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="where to write the stand-in (default: a temporary folder)")
    args = parser.parse_args()
    result: dict[str, Any] = {"host": platform.node(), "size": args.size, "device": args.device,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    def step(name: str, fn: Any) -> Any:
        start = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - recorded, the other steps still run
            value = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        if isinstance(value, dict):
            value["wall_s"] = round(time.perf_counter() - start, 1)
        result[name] = value
        save()
        print(f"{name}: {json.dumps(value)[:400]}", flush=True)
        return value

    try:
        import torch

        result["torch"] = torch.__version__
        result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    step("render", render_seconds)
    folder = args.checkpoint_dir or Path(tempfile.mkdtemp(prefix="mibot-gpu-check-"))
    from mibot_eval.tiny import write_tiny_checkpoint

    step("write_checkpoint", lambda: {"path": str(write_tiny_checkpoint(folder, size=args.size,
                                                                        like_release=True))})
    step("latency_sdpa", lambda: latency(folder, args.device, "sdpa"))
    try:
        import flash_attn  # noqa: F401

        step("latency_flash_attention_2", lambda: latency(folder, args.device, "flash_attention_2"))
    except ImportError:
        result["latency_flash_attention_2"] = {"skipped": "flash-attn is not importable"}
        save()
    for replicas in (int(r) for r in args.replicas.split(",")):
        step(f"replicas_{replicas}", lambda r=replicas: measure(r, args.seconds, checkpoint=str(folder),
                                                                device=args.device))
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()


if __name__ == "__main__":
    main()
