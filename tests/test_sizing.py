"""--workers auto: as many simulators as the machine holds, said at the start with an ETA."""

from __future__ import annotations

from mibot_eval.parallel import sizing


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
    text = sizing.eta_text(2000, ["libero"], 10)
    assert "about 0.4 h" in text and "estimate" in text
    assert "progress bar" in sizing.eta_text(10, ["unknown"], 1)


def test_the_run_says_what_it_chose(tmp_path, fakesim, capsys, monkeypatch) -> None:
    from mibot_eval.planning import RunRequest
    from mibot_eval.runner import execute
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
