#!/usr/bin/env bash
# Install CALVIN's simulator, calvin_env, into the project venv (`make setup-calvin`).
#
# calvin_env is not on PyPI. This clones github.com/mees/calvin_env at the commit the Xiaomi-Robotics-0
# release pins (eval_calvin/README: `git checkout 797142c`) into a cache folder outside the repository,
# installs its runtime dependencies at tested versions, then calvin_env itself as an editable install
# (it reads its conf/ and data/ folders from the checkout and its git commit at run time).
# Needs git, internet access to github.com and PyPI, and an EGL driver for headless rendering
# (Debian/Ubuntu: libegl1 + libgl1-mesa-dri; NVIDIA drivers ship their own).
#
# Variables: VENV (default .venv), CALVIN_ENV_DIR (default $MIBOT_EVAL_CACHE/calvin_env, cache default
# ~/.cache/mibot-eval), CALVIN_ENV_URL (default the upstream repository), CALVIN_ENV_RECURSIVE=0 to skip
# the tacto submodule (only CALVIN's tactile camera uses it; the harness does not render that camera).
set -euo pipefail

CALVIN_ENV_COMMIT=797142c588c21e76717268b7b430958dbd13bf48
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PY="$VENV/bin/python"
CACHE="${MIBOT_EVAL_CACHE:-$HOME/.cache/mibot-eval}"
DEST="${CALVIN_ENV_DIR:-$CACHE/calvin_env}"
URL="${CALVIN_ENV_URL:-https://github.com/mees/calvin_env.git}"
RECURSIVE="${CALVIN_ENV_RECURSIVE:-1}"

# Runtime dependencies of calvin_env at versions tested with the harness (Python 3.11, numpy 1.26.4).
# calvin_env's own requirements.txt is unpinned, so calvin_env is installed with --no-deps after these
# (pandas only satisfies that list: the env code never imports it).
CALVIN_DEPS=(
  "pybullet==3.2.7"
  "gym==0.26.2"
  "hydra-core==1.3.8"
  "hydra-colorlog==1.2.0"
  "omegaconf==2.3.1"
  "numpy-quaternion==2024.0.13"
  "GitPython==3.2.1"
  "pandas==3.0.6"
  "opencv-python<4.12"
  "scipy"
  "numba"
  "matplotlib"
  "cloudpickle"
)

die() { echo "setup-calvin: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no Python at $PY; run \`make setup\` first (or set VENV=...)"
command -v git >/dev/null || die "git is required"

if [ ! -d "$DEST/.git" ]; then
  echo "setup-calvin: cloning $URL into $DEST"
  mkdir -p "$(dirname "$DEST")"
  git clone --quiet "$URL" "$DEST"
fi
if ! git -C "$DEST" cat-file -e "$CALVIN_ENV_COMMIT^{commit}" 2>/dev/null; then
  git -C "$DEST" fetch --quiet origin
fi
git -C "$DEST" -c advice.detachedHead=false checkout --quiet "$CALVIN_ENV_COMMIT"
if [ "$RECURSIVE" != "0" ]; then
  git -C "$DEST" submodule update --init --recursive --quiet
fi
echo "setup-calvin: calvin_env at $(git -C "$DEST" rev-parse HEAD)"

CONSTRAINTS=()
[ -f "$ROOT/constraints.txt" ] && CONSTRAINTS=(-c "$ROOT/constraints.txt")
"$PY" -m pip install --quiet "${CONSTRAINTS[@]}" "${CALVIN_DEPS[@]}"
"$PY" -m pip install --quiet --no-deps -e "$DEST"

if command -v ldconfig >/dev/null && ! ldconfig -p | grep -q "libEGL.so.1"; then
  echo "setup-calvin: warning: no libEGL.so.1 found; CALVIN renders through EGL" \
       "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri)" >&2
fi
"$PY" - <<'EOF'
from mibot_eval.suites.calvin_sim import import_calvin_env
import pybullet  # noqa: F401

module = import_calvin_env()
print(f"setup-calvin: ok, calvin_env importable from {module.__file__}")
EOF
