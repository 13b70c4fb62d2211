"""LIBERO-PRO variants through the real LIBERO simulator (few envs, short episodes: CI cost).

One variant of each family runs a tiny-checkpoint episode through the real loading path, and the
instruction the policy was sent is the variant's (a `_lan` run that sent the clean text would
silently be clean LIBERO). A `_paired` variant starts exactly where the clean trial starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.config import load_suite

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")

# suite -> the instruction sent at the first query (release format: capitalize() + ".")
CLEAN = "Pick up the black bowl between the plate and the ramekin and place it on the plate."
ONE_PER_FAMILY = {
    "libero_spatial_lan": "Lift the black bowl between the plate and ramekin and set it on the plate.",
    "libero_spatial_object": CLEAN,
    "libero_spatial_swap": CLEAN,
    "libero_spatial_task": "Pick the akita black bowl not between the plate and the ramekin and place it on "
                           "the plate.",
    "libero_spatial_with_mug": CLEAN,
}


def test_one_variant_of_each_family_runs_a_tiny_episode(tmp_path, tiny_checkpoint) -> None:
    pytest.importorskip("transformers", reason="the model stack is installed by `make setup`")
    from mibot_eval import evaluate

    summary = evaluate("tiny", suites=list(ONE_PER_FAMILY), tasks=[0], episodes=1, results_dir=tmp_path,
                       max_steps=2, progress=False)
    assert summary.run_dir.name == "tiny__libero_pro__sync__max2"
    records = {r["suite"]: r for r in summary.records}
    assert set(records) == set(ONE_PER_FAMILY)
    for suite, instruction in ONE_PER_FAMILY.items():
        record = records[suite]
        assert record["status"] == "ok", record.get("error")
        assert record["steps"] == 2 or record["success"]
        assert record["metrics"]["instructions_sent"] == [[0, instruction]]
        assert record["instruction"] == instruction[:-1].lower()  # the source text, before formatting
        protocol = summary.protocols[suite]["protocol"]
        assert protocol["params"]["perturbation"]["base_suite"] == "libero_spatial"
        assert protocol["max_steps"] == 2 and protocol["seed"] == 7
    simulator = summary.manifest["suites"]["libero_spatial_lan"]["simulator"]
    assert simulator["instruction_source"] == "bddl_language"
    assert simulator["init_states_suite"] == simulator["task_suite"] == "libero_spatial_lan"


def test_paired_variant_starts_where_the_clean_trial_starts() -> None:
    from mibot_eval.suites.libero import LiberoAdapter

    clean = LiberoAdapter(load_suite("libero_spatial"))
    paired = LiberoAdapter(load_suite("libero_spatial_lan_paired"))
    try:
        first = [a.reset(a.episodes(tasks=[0], episodes_per_task=2)[1]) for a in (clean, paired)]
        assert np.array_equal(clean.sim_state(), paired.sim_state())
        assert np.array_equal(first[0].state, first[1].state)
        for view in first[0].images:
            assert np.array_equal(first[0].images[view], first[1].images[view])
        assert first[0].instruction == CLEAN
        assert first[1].instruction == ONE_PER_FAMILY["libero_spatial_lan"]
        assert paired._env.language_instruction == first[1].instruction[:-1].lower()  # what LIBERO-PRO sends
    finally:
        clean.close()
        paired.close()
