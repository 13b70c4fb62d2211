"""--workers auto: as many simulators as the machine holds, said at the start with an ETA."""

from __future__ import annotations

from mibot_eval.run.backends import sizing


def test_auto_workers_leaves_a_core_and_fits_memory_and_episodes(monkeypatch) -> None:
    monkeypatch.setattr(sizing.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(sizing, "available_memory_gb", lambda: 100.0)
    assert sizing.auto_workers(2000)[0] == 15  # cores - 1
    monkeypatch.setattr(sizing, "available_memory_gb", lambda: 9.0)
    workers, why = sizing.auto_workers(2000)
    assert workers == 6 and "1.5 GiB per simulator" in why  # 9 GiB / 1.5 GiB
    assert sizing.auto_workers(3)[0] == 3  # never more than the episodes
    monkeypatch.setattr(sizing.os, "cpu_count", lambda: 2)
    assert sizing.auto_workers(2000)[0] == 1  # this project's CI machine: in this process


def test_eta_is_labelled_an_estimate() -> None:
    text = sizing.eta_text(2000, ["libero"], 10)  # 2000 x 7.1 s / 10 = 1420 s
    assert "about 24 min" in text and "estimate" in text
    assert "about 3.9 h" in sizing.eta_text(2000, ["libero"], 1)
    assert "progress bar" in sizing.eta_text(10, ["unknown"], 1)


def test_the_run_says_what_it_chose(tmp_path, fakesim, capsys, monkeypatch) -> None:
    from mibot_eval.run.planning import RunRequest
    from mibot_eval.run.runner import execute
    from tests.fakes import ScriptedPolicy
    from tests.parallel_fakes import write_suite

    monkeypatch.setattr(sizing.os, "cpu_count", lambda: 2)
    suite = write_suite(tmp_path, tasks=1, episodes=2, max_steps=3)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "mibot"}')
    execute(RunRequest(checkpoint=str(tmp_path / "ckpt"), suites=[str(suite)], workers="auto",
                       results_dir=tmp_path / "r", video="none"), policy=ScriptedPolicy())
    err = capsys.readouterr().err
    assert "mibot-eval: in this process (2 cores" in err and "2 episodes" in err


def test_auto_replicas_fit_the_gpu_and_the_simulators() -> None:
    assert sizing.auto_replicas([], 15) == (1, "no CUDA device")
    replicas, why = sizing.auto_replicas([139.0], 15)  # an H200: memory allows 11, the cap is 4
    assert replicas == sizing.MAX_AUTO_REPLICAS_PER_GPU == 4 and "12 GiB per replica" in why
    assert sizing.auto_replicas([30.0], 15)[0] == 2  # 30 GiB free / 12 GiB
    assert sizing.auto_replicas([8.0], 15)[0] == 1  # not even one: one replica (the model loads or not)
    assert sizing.auto_replicas([139.0], 3)[0] == 3  # never more replicas than simulators


def _auto(monkeypatch, tmp_path, gpu: list[float], checkpoint: str, policy=None, **request):
    from mibot_eval.config import CheckpointInfo
    from mibot_eval.run import runner
    from mibot_eval.run.planning import RunRequest

    monkeypatch.setattr(sizing.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(sizing, "available_memory_gb", lambda: 100.0)
    monkeypatch.setattr(runner, "gpu_free_memory_gb", lambda: gpu)
    base = RunRequest(checkpoint=checkpoint, suites=["libero_spatial"], workers="auto",
                      results_dir=tmp_path, progress=False, **request)
    info = CheckpointInfo(name=checkpoint, tiny=checkpoint == "tiny")
    return runner._auto_workers(base, [], info, policy)


def test_a_released_checkpoint_on_a_gpu_gets_replicas(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr("mibot_eval.run.runner.auto_workers", lambda episodes: (15, "16 cores"))
    chosen = _auto(monkeypatch, tmp_path, [139.0], "Xiaomi-Robotics-0-LIBERO")
    assert (chosen.workers, chosen.replicas) == (15, 4)
    assert _auto(monkeypatch, tmp_path, [], "Xiaomi-Robotics-0-LIBERO").replicas is None  # no GPU
    assert _auto(monkeypatch, tmp_path, [139.0], "tiny").replicas is None  # batches per sample instead
    assert _auto(monkeypatch, tmp_path, [139.0], "X", device="cpu").replicas is None
    assert _auto(monkeypatch, tmp_path, [139.0], "X", policy_url="ws://h:1").replicas is None
    assert _auto(monkeypatch, tmp_path, [139.0], "X", policy=object()).replicas is None  # policy given
