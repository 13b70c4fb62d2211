#!/usr/bin/env bash
# One prepared check for a single-GPU machine, from a fresh clone, in under 8 minutes: sets up the
# project (`make setup`: pip only), then benchmarks/gpu_check.py writes one JSON with the EGL render
# time per two-camera LIBERO frame, the release-size stand-in's batch-1 latency in bf16 (sdpa, and
# flash-attention 2 if importable), GPU memory per replica and chunks/s for 1, 2, 4 and 8 replicas.
#   bash benchmarks/gpu_check.sh            # writes ./gpu_check.json (or $OUT/gpu_check.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${OUT:-.}
mkdir -p "$out_dir"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out_dir/nvidia_smi.csv" || true
fi
make setup >"$out_dir/setup.log" 2>&1 || { echo "make setup failed: see $out_dir/setup.log" >&2; exit 2; }
export MUJOCO_GL=egl OMP_NUM_THREADS=4 TOKENIZERS_PARALLELISM=false
stand_in=${MIBOT_GPU_CHECK_DIR:-${TMPDIR:-/tmp}/mibot-release-size}
timeout 420 .venv/bin/python benchmarks/gpu_check.py --out "$out_dir/gpu_check.json" \
  --size release --device cuda --replicas 1,2,4,8 --seconds 15 --checkpoint-dir "$stand_in"
echo "wrote $out_dir/gpu_check.json"
