"""SimplerEnv suites: the shipped episode lists and the suite YAMLs derived from them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mibot_eval.config import load_checkpoints, load_suite
from mibot_eval.errors import UserError
from mibot_eval.suites.simpler import SimplerAdapter
from mibot_eval.suites.simpler_episodes import load_reference, reference_bytes, task_episodes
from tests.conftest import SHARED

REFERENCE = SHARED / "reference" / "xiaomi-robotics-0" / "simplerenv"
SUITES = ("simpler_google_vm", "simpler_google_va", "simpler_widowx")
COUNTS = {
    "simpler_google_vm": {"pick_coke_can": 300, "move_near": 240, "open_drawer": 108,
                          "close_drawer": 108, "put_in_drawer": 108},
    "simpler_google_va": {"pick_coke_can": 825, "move_near": 600, "open_drawer": 189,
                          "close_drawer": 189, "put_in_drawer": 189},
    "simpler_widowx": {"put_carrot_on_plate": 144, "put_eggplant_in_basket": 144,
                       "put_spoon_on_towel": 144, "stack_green_on_yellow": 144},
}
STEP_LIMITS = {"pick_coke_can": 80, "move_near": 80, "open_drawer": 113, "close_drawer": 113,
               "put_in_drawer": 200, "put_carrot_on_plate": 60, "put_eggplant_in_basket": 120,
               "put_spoon_on_towel": 60, "stack_green_on_yellow": 60}


class NoSimulator:
    """Enough of a backend to list episodes (nothing is built)."""

    asset_dir = None


def adapter(name: str) -> SimplerAdapter:
    return SimplerAdapter(load_suite(name), backend=NoSimulator())


@pytest.mark.parametrize("dataset", ["fractal", "bridge"])
def test_shipped_lists_equal_the_release_files(dataset: str) -> None:
    path = REFERENCE / f"{dataset}.json"
    if not path.is_file():
        pytest.skip(f"reference file {path} not available")
    assert reference_bytes(dataset) == path.read_bytes()


@pytest.mark.parametrize("suite", SUITES)
def test_episode_counts_per_task(suite: str) -> None:
    specs = adapter(suite).episodes()
    assert Counter(s.task_name for s in specs) == COUNTS[suite]
    assert [s.task_name for s in specs[:1]] == [next(iter(COUNTS[suite]))]  # reported table order
    assert len({s.key for s in specs}) == len(specs)
    by_task: dict[int, list[int]] = {}
    for s in specs:
        by_task.setdefault(s.task_id, []).append(s.trial)
    assert all(trials == list(range(len(trials))) for trials in by_task.values())


def test_trials_follow_the_official_list_order() -> None:
    a = adapter("simpler_google_vm")
    entries = load_reference("fractal")
    open_drawer = [i for i, e in enumerate(entries) if e["task_suite_name"] == "visual_matching/open_drawer"]
    specs = a.episodes(tasks=[2])
    assert [a.episode_for(s).reference_index for s in specs] == open_drawer
    first = a.episode_for(specs[0])
    assert first.env_kwargs == entries[open_drawer[0]]["env_kwargs"]
    assert first.reset_options == entries[open_drawer[0]]["env_reset_options"]


def test_widowx_repeats_are_marked_with_the_first_copy() -> None:
    a = adapter("simpler_widowx")
    specs = a.episodes()
    for task_id in range(4):
        task = [s for s in specs if s.task_id == task_id]
        firsts = [s for s in task if a.repeat_of(s) is None]
        assert len(task) == 144 and len(firsts) == 24
        groups = Counter(a.repeat_of(s) or s.key for s in task)
        assert set(groups.values()) == {6} and len(groups) == 24
        for s in task:  # a copy is the same episode as the one it points to
            origin = a.repeat_of(s)
            if origin is not None:
                trial = int(origin.rsplit("/", 1)[1])
                assert trial < s.trial
                assert a.episode_for(s).env_kwargs == a._tasks[task_id][trial].env_kwargs
                assert a.episode_for(s).reset_options == a._tasks[task_id][trial].reset_options
    assert a.repeat_of(specs[30]) == "simpler_widowx/0/6"


def test_google_lists_have_no_repeats() -> None:
    for suite in ("simpler_google_vm", "simpler_google_va"):
        a = adapter(suite)
        assert all(a.repeat_of(s) is None for s in a.episodes())


@pytest.mark.parametrize("suite", SUITES)
def test_yaml_limits_and_rates_come_from_the_list(suite: str) -> None:
    a = adapter(suite)
    limits = {}
    for task in a._tasks:
        for ep in task:
            limits.setdefault(ep.task_name, set()).add(ep.env_kwargs["max_episode_steps"])
            assert ep.env_kwargs["control_freq"] == a.protocol.control_hz
    assert limits == {name: {STEP_LIMITS[name]} for name in COUNTS[suite]}
    assert a.protocol.max_steps == max(STEP_LIMITS[name] for name in COUNTS[suite])
    assert a.protocol.episodes_per_task == max(COUNTS[suite].values())
    assert a.protocol.replan_steps == 4 and a.protocol.action_dim == 7


def test_task_names_and_aggregation_match_the_reported_numbers() -> None:
    """checkpoints.yaml's aggregation rule (drawer pooling) turns the reported per-task numbers
    into the reported averages, with the suite YAMLs' task names and episode counts."""
    from mibot_eval.config import load_aggregates

    checkpoints = load_checkpoints()
    rules = {rule.key: rule for rule in load_aggregates() if rule.key in SUITES}
    assert set(rules) == set(SUITES)
    for name in SUITES:
        protocol = load_suite(name)
        reported = next(c.reported[name] for c in checkpoints.values() if name in c.reported)
        tasks = [t["name"] for t in protocol.params["tasks"]]
        assert set(tasks) == set(reported) - {"average"}
        counts = {t["name"]: t["episodes"] for t in protocol.params["tasks"]}
        rates = [
            sum(reported[m] * counts[m] for m in members) / sum(counts[m] for m in members)
            for _, members in rules[name].groups  # a group pools its tasks' episodes
        ]
        assert round(sum(rates) / len(rates), 1) == reported["average"]


def test_episode_selection() -> None:
    a = adapter("simpler_google_vm")
    specs = a.episodes(tasks=[4, 1], episodes_per_task=3)
    assert [(s.task_name, s.trial) for s in specs] == [
        ("put_in_drawer", 0), ("put_in_drawer", 1), ("put_in_drawer", 2),
        ("move_near", 0), ("move_near", 1), ("move_near", 2),
    ]
    # more than a task has: the task's own count (the data decides)
    assert Counter(s.task_name for s in a.episodes(episodes_per_task=200))["open_drawer"] == 108
    with pytest.raises(UserError, match="out of range"):
        a.episodes(tasks=[5])
    with pytest.raises(UserError, match="episodes per task must be 1..300"):
        a.episodes(episodes_per_task=301)


def test_yaml_that_disagrees_with_the_list_is_refused(tmp_path) -> None:
    text = Path(load_suite("simpler_widowx").source).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("episodes: 144, unique: 24}\n  - {name: put_eggplant",
                                "episodes: 143, unique: 24}\n  - {name: put_eggplant"))
    with pytest.raises(UserError, match="lists 143 episodes, the official list has 144"):
        SimplerAdapter(load_suite(str(bad)), backend=NoSimulator())
    bad.write_text(text.replace("source: bridge/put_carrot_on_plate", "source: bridge/put_carrot"))
    with pytest.raises(UserError, match="no episodes for task_suite_name 'bridge/put_carrot'"):
        SimplerAdapter(load_suite(str(bad)), backend=NoSimulator())


def test_task_episodes_marks_identical_entries_only() -> None:
    entries = task_episodes("bridge", [("carrot", "bridge/put_carrot_on_plate")])[0]
    firsts = [e for e in entries if e.first_copy is None]
    assert [e.reset_options["obj_init_options"]["episode_id"] for e in firsts] == list(range(24))
    assert json.dumps(entries[24].env_kwargs) == json.dumps(entries[0].env_kwargs)
