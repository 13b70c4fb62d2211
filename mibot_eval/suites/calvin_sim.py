"""Access to CALVIN's simulator (calvin_env): import check, env construction, stepping without rendering.

calvin_env is not on PyPI: `make setup-calvin` clones mees/calvin_env at the pinned commit and installs
it editable. Everything here imports it lazily, so the rest of the harness (and CI) runs without it.

The env is built like CALVIN's own evaluation builds it (`calvin_env.envs.play_table_env.get_env`):
`hydra.utils.instantiate(config.env, show_gui=False, use_vr=False, use_scene_info=True)`, where the
config is either a CALVIN dataset's `validation/.hydra/merged_config.yaml` (what the official
evaluation reads) or, without a dataset, calvin_env's own `conf/config_data_collection.yaml` composed
for the evaluation scene. Cameras the policy does not read (the dataset config's tactile sensor,
which needs tacto) are dropped: rendering never changes the physics.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError

DATASET_ENV_VAR = "CALVIN_DATASET"
# pybullet's EGL renderer plugin is not independent per physics client: with two calvin_env envs
# alive in one process, renders of one differ from what a lone env renders (up to 254 levels in the
# verification run), while the physics stays identical. So a process keeps at most one env alive.
_LIVE_ENVS: list[Any] = []
MERGED_CONFIG = Path("validation") / ".hydra" / "merged_config.yaml"
SETUP_HINT = "run `make setup-calvin` (clones mees/calvin_env at the pinned commit and installs it)"


def import_calvin_env() -> Any:
    """The calvin_env package, or one clear line saying how to install it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gym's and hydra's deprecation notices about upstream code
            import calvin_env
            import calvin_env.envs.play_table_env  # noqa: F401 - pybullet, gym, hydra, quaternion, git
            import calvin_env.envs.tasks  # noqa: F401
            import hydra  # noqa: F401
            import omegaconf  # noqa: F401
    except ImportError as exc:
        raise UserError(f"CALVIN simulator is not installed ({exc}); {SETUP_HINT}") from None
    return calvin_env


def calvin_env_commit(package_dir: Path) -> str | None:
    """The git commit of an editable calvin_env checkout (None when it is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def resolve_dataset_config(dataset: str | os.PathLike[str] | None) -> Path | None:
    """The merged_config.yaml to build the env from: `dataset`, else $CALVIN_DATASET, else None.

    Accepts a CALVIN dataset root (task_ABC_D/), its validation/ folder, or the YAML file itself.
    """
    value = dataset if dataset is not None else os.environ.get(DATASET_ENV_VAR) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    candidates = [path, path / ".hydra" / "merged_config.yaml", path / MERGED_CONFIG]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(
        f"CALVIN dataset {path}: no {MERGED_CONFIG} found (set {DATASET_ENV_VAR} to a CALVIN dataset "
        f"folder such as task_ABC_D, or unset it to use calvin_env's own config)"
    )


def _keep_cameras(config: Any, cameras: Sequence[str]) -> None:
    missing = [name for name in cameras if name not in config.cameras]
    if missing:
        raise UserError(f"CALVIN env config has no camera(s) {missing} (it has {list(config.cameras)})")
    for name in [n for n in config.cameras if n not in cameras]:
        del config.cameras[name]


def dataset_config(path: Path, cameras: Sequence[str]) -> Any:
    """A CALVIN dataset's merged_config.yaml, keeping only `cameras`."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(path)
    _keep_cameras(config, cameras)
    return config


def default_config(calvin_env: Any, scene: str, robot: str, cameras: Sequence[str]) -> Any:
    """calvin_env's own data-collection config, composed for `scene` with `cameras`."""
    from hydra import compose, initialize_config_dir

    conf_dir = Path(calvin_env.__file__).resolve().parents[1] / "conf"
    if not (conf_dir / "config_data_collection.yaml").is_file():
        raise UserError(f"calvin_env at {conf_dir.parent} has no conf/ folder; {SETUP_HINT}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's defaults list predates hydra 1.1's `_self_`
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            config = compose(
                "config_data_collection",
                overrides=[f"scene={scene}", f"robot={robot}", "cameras=static_and_gripper"],
            )
    _keep_cameras(config, cameras)
    return config


def build_env(config: Any) -> Any:
    """Instantiate the env exactly as calvin_env's `get_env` does (no GUI, no VR, scene info on),
    after closing any other env this process still has open (see _LIVE_ENVS)."""
    import hydra

    close_live_envs()
    try:
        env = hydra.utils.instantiate(config.env, show_gui=False, use_vr=False, use_scene_info=True)
    except SystemExit:  # calvin_env calls sys.exit() when pybullet's EGL plugin fails to load
        raise UserError(
            "calvin_env could not load pybullet's EGL renderer; install an EGL driver "
            "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri) or run on a GPU machine"
        ) from None
    _LIVE_ENVS.append(env)
    return env


def close_env(env: Any) -> None:
    """Disconnect an env once, quietly. Upstream's close prints, and its __del__ closes again, which
    raises in pybullet after a first disconnect: the instance's close becomes a no-op."""
    if getattr(env, "_mibot_closed", False):
        return
    with contextlib.redirect_stdout(io.StringIO()):
        env.close()
    env.close = lambda: None
    env._mibot_closed = True
    if env in _LIVE_ENVS:
        _LIVE_ENVS.remove(env)


def close_live_envs() -> None:
    for env in list(_LIVE_ENVS):
        close_env(env)


def is_open(env: Any) -> bool:
    return not getattr(env, "_mibot_closed", False)


def build_oracle(tasks_yaml: Path) -> Any:
    """CALVIN's task oracle (calvin_env.envs.tasks.Tasks) from a tasks YAML, as the evaluation does."""
    import hydra
    from omegaconf import OmegaConf

    return hydra.utils.instantiate(OmegaConf.load(tasks_yaml))


def step_physics(env: Any, action: Any) -> dict[str, Any]:
    """PlayTableSimEnv.step without its camera renders; returns the same `info`.

    Upstream's step (non-VR) is: robot.apply_action, `action_repeat` physics steps, scene.step, then
    get_obs() (renders every camera, reads robot/scene state) and get_info(). Rendering and the state
    reads do not change the simulation, so skipping get_obs leaves every later state identical; the
    observation is rendered with env.get_obs() only when the policy will read it.
    """
    env.robot.apply_action(action)
    for _ in range(env.action_repeat):
        env.p.stepSimulation(physicsClientId=env.cid)
    env.scene.step()
    return env.get_info()
