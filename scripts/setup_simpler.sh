#!/usr/bin/env bash
# `make setup-simpler`: install the SimplerEnv simulator for mibot-eval (needs internet and git).
#
# SimplerEnv and its ManiSkill2_real2sim fork are not on PyPI. This checks out the repositories and
# commits the Xiaomi-Robotics-0 release evaluated with (its eval_simplerenv/README clones
# allenzren/SimplerEnv with its ManiSkill2_real2sim submodule, allenzren/ManiSkill2_real2sim; that
# fork adds obs["agent"]["eef_pos"], the state the release's client sends) and installs them, with
# the model stack and mibot-eval, into a venv of their own: ManiSkill2_real2sim needs gymnasium<1.0
# and sapien 2.2.2 (which imports pkg_resources, gone from setuptools>=81), while LIBERO in the main
# venv needs gymnasium>=1.0.
#
# usage: scripts/setup_simpler.sh [VENV]        (default: .venv-simpler)
#   PYTHON=python3.11       interpreter for the venv (sapien 2.2.2 has wheels for 3.7-3.11)
#   SIMPLER_SRC=third_party where the two checkouts go (default: <repo>/third_party)
#   SIMPLER_URL, MS2_URL    clone from a mirror instead (the commits are checked all the same)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$ROOT/.venv-simpler}
PYTHON=${PYTHON:-python3}
SRC=${SIMPLER_SRC:-$ROOT/third_party}

SIMPLER_URL=${SIMPLER_URL:-https://github.com/allenzren/SimplerEnv.git}
SIMPLER_COMMIT=59ad9e1539042ed333fd8ebba1b0395f5662f0bd   # 2024-12-29 "update diff"
MS2_URL=${MS2_URL:-https://github.com/allenzren/ManiSkill2_real2sim.git}
MS2_COMMIT=91d154bfd864577f8d2e80f3fc2f8b4d9df9ae5c       # 2024-12-29, SimplerEnv's submodule pointer

# Versions verified with these commits (docs/verification.md). The main constraints.txt
# applies to everything else except gymnasium (pinned there for LIBERO) and setuptools.
SIM_PINS=(
  "sapien==2.2.2" "gymnasium==0.29.1" "setuptools<81" "numpy==1.26.4"
  "transforms3d==0.4.2" "trimesh==5.2.0" "rtree==1.4.1" "ruckig==0.19.4" "h5py==3.16.0"
  "GitPython==3.2.1" "tabulate==0.10.0" "opencv-python==4.11.0.86" "imageio==2.38.1"
  "imageio-ffmpeg==0.8.1" "scipy==1.17.1" "pyyaml==6.0.3" "tqdm==4.70.1"
)

say() { printf 'setup-simpler: %s\n' "$*"; }

checkout() {  # url commit dir: the full repository at exactly that commit
  local url=$1 commit=$2 dir=$3
  if [ ! -d "$dir/.git" ]; then
    rm -rf "$dir"
    git clone --quiet --no-checkout "$url" "$dir"
  fi
  if ! git -C "$dir" cat-file -e "$commit^{commit}" 2>/dev/null; then
    git -C "$dir" fetch --quiet origin "$commit" 2>/dev/null || git -C "$dir" fetch --quiet origin
  fi
  git -C "$dir" -c advice.detachedHead=false checkout --quiet --force "$commit"
  if [ "$(git -C "$dir" rev-parse HEAD)" != "$commit" ]; then
    say "error: $dir is not at $commit"; exit 1
  fi
  if [ -n "$(git -C "$dir" ls-files --deleted)" ]; then
    say "error: files of $url are missing from $dir (incomplete checkout); delete it and rerun"; exit 1
  fi
}

command -v git >/dev/null || { say "error: git is required"; exit 1; }
mkdir -p "$SRC"
say "SimplerEnv $SIMPLER_COMMIT -> $SRC/SimplerEnv"
checkout "$SIMPLER_URL" "$SIMPLER_COMMIT" "$SRC/SimplerEnv"
pointer=$(git -C "$SRC/SimplerEnv" ls-tree HEAD ManiSkill2_real2sim | awk '{print $3}')
if [ "$pointer" != "$MS2_COMMIT" ]; then
  say "error: SimplerEnv's ManiSkill2_real2sim submodule is $pointer, expected $MS2_COMMIT"; exit 1
fi
say "ManiSkill2_real2sim $MS2_COMMIT (with its assets) -> $SRC/SimplerEnv/ManiSkill2_real2sim"
checkout "$MS2_URL" "$MS2_COMMIT" "$SRC/SimplerEnv/ManiSkill2_real2sim"

say "venv $VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
grep -v -i -E '^(gymnasium|setuptools)==' "$ROOT/constraints.txt" > "$constraints"
printf '%s\n' "gymnasium==0.29.1" "setuptools<81" >> "$constraints"  # keep them through every install
"${PIP[@]}" install --quiet -c "$constraints" "${SIM_PINS[@]}"
"${PIP[@]}" install --quiet -c "$constraints" -e "$ROOT[model,dev]"
"${PIP[@]}" install --quiet --no-deps -e "$SRC/SimplerEnv/ManiSkill2_real2sim" -e "$SRC/SimplerEnv"
"$VENV/bin/python" -c "import mani_skill2_real2sim, simpler_env.utils.env.env_builder" 2>/dev/null || {
  "$VENV/bin/python" -c "import mani_skill2_real2sim, simpler_env.utils.env.env_builder" || true
  say "error: SimplerEnv does not import in $VENV (see above)"; exit 1
}

if command -v vulkaninfo >/dev/null && vulkaninfo --summary >/dev/null 2>&1; then
  say "Vulkan: $(vulkaninfo --summary 2>/dev/null | grep -m1 -i 'deviceName' | sed 's/^ *//')"
else
  say "note: SAPIEN renders with Vulkan; install a GPU driver with its Vulkan ICD plus libvulkan1" \
      "(check with \`vulkaninfo --summary\` from vulkan-tools)"
fi
say "done: run \`make eval-simpler ROBOT=google SETTING=vm\` (or ROBOT=widowx)"
