"""Leaderboard rebuilt from recorded episodes: rows, idempotence, markdown, PNG, and the HTML page as
headless Chromium renders it (long table, pivot, figures reported by others)."""

from __future__ import annotations

import csv
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mibot_eval.cli import main
from mibot_eval.results.measure.leaderboard import LEADERBOARD_COLUMNS
from mibot_eval.results.views.leaderboard import rebuild
from mibot_eval.results.views.publish import publish_run
from tests.data.fixtures import chain_records, copy_recorded, libero_run, official, task_records, write_run

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture()
def results(tmp_path) -> Path:
    """Three runs: full LIBERO, the recorded partial LIBERO run, a WidowX run with repeats."""
    root = tmp_path / "results"
    counts = {"libero_spatial": [50] * 4 + [49] * 6, "libero_object": [50] * 10,
              "libero_goal": [50] * 4 + [49] * 6, "libero_10": [50] * 2 + [49] * 2 + [48] * 6}
    libero_run(root, "libero_full", counts)
    copy_recorded("libero_partial", root)
    names = ["put_carrot_on_plate", "put_eggplant_in_basket", "put_spoon_on_towel",
             "stack_green_on_yellow"]
    records = [r for i, (name, k) in enumerate(zip(names, (15, 20, 23, 18), strict=True))
               for r in task_records("simpler_widowx", i, k, 24, task_name=name, repeats=6,
                                     benchmark="simpler")]
    write_run(root, "widowx", "Xiaomi-Robotics-0-SimplerEnv-WidowX",
              {"simpler_widowx": official("simpler_widowx")}, records,
              checkpoint_id="beef")
    completed = [1] * 17 + [2] * 23 + [3] * 34 + [4] * 45 + [5] * 881
    write_run(root, "calvin", "Xiaomi-Robotics-0-Calvin-ABC_D",
              {"calvin_abc_d": official("calvin_abc_d")},
              chain_records("calvin_abc_d", completed), checkpoint_id="cafe")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames or ()) == LEADERBOARD_COLUMNS
        return list(reader)


def test_rebuild_rows_and_idempotence(results) -> None:
    rows, markdown = rebuild(results)
    board = results / "leaderboard.csv"
    first = board.read_bytes()
    rebuild(results)
    assert board.read_bytes() == first
    by = {(r["checkpoint_id"], r["suite"]): r for r in _rows(board)}
    full = by[("c0ffee", "libero")]
    assert full["kind"] == "aggregate" and full["value"] == "98.7" and full["partial"] == "false"
    assert full["reported"] == "98.7" and full["consistent_with_reported"] == "true"
    assert full["expected"] == "2000"
    widowx = by[("beef", "simpler_widowx")]
    assert widowx["metric"] == "average" and round(float(widowx["value"]), 1) == 79.2
    assert widowx["episodes"] == "576" and widowx["n"] == "96" and widowx["partial"] == "false"
    calvin = by[("cafe", "calvin_abc_d")]
    assert calvin["metric"] == "avg_len" and calvin["value"] == "4.75" and "chain_5=88.1" in calvin["details"]
    # the partial run pools with the full run (same checkpoint, suite, protocol): the later
    # record of a trial both recorded wins; one row per (checkpoint, suite, protocol)
    spatial = [r for r in _rows(board) if r["suite"] == "libero_spatial"]
    assert len(spatial) == 1 and spatial[0]["runs"] == "libero_full;libero_partial"
    # (the partial run's two errored trials were recorded ok by the full run: ok beats error)
    assert (spatial[0]["value"], spatial[0]["episodes"], spatial[0]["errors"]) == ("98.8", "500", "0")
    assert "| Xiaomi-Robotics-0-LIBERO | libero | average | 98.7 |" in markdown
    assert len(rows) == 7
    # the pivot and the figures reported by others are written beside the long CSV
    assert "| Xiaomi-Robotics-0-LIBERO | sync,replan_steps=10 | 98.7 [98.0, 99.1] |" in markdown
    assert (results / "leaderboard_pivot.csv").read_text().count("\n") == 4  # header + 3 checkpoints
    assert (results / "published.csv").read_text().startswith("model,suite,metric,headline,value,source")


def test_report_then_rebuild_agree_and_never_duplicate(results) -> None:
    board = results / "leaderboard.csv"
    for _ in range(2):
        for run in ("libero_partial", "libero_full", "widowx", "calvin"):
            publish_run(results / run, board)
    after_reports = board.read_text()
    rebuild(results)
    assert board.read_text() == after_reports
    keys = [tuple(r[c] for c in ("checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution"))
            for r in _rows(board)]
    assert len(keys) == len(set(keys)) == 7


def test_cli_leaderboard_writes_markdown_and_png(results, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["leaderboard", str(results), "-o", str(out / "lb.csv"), "--markdown",
                 str(out / "lb.md"), "--png", str(out / "lb.png"), "--pivot-png", str(out / "pivot.png")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| checkpoint | suite |" in printed and "## Pivot: benchmark headlines" in printed
    for png in ("lb.png", "pivot.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "lb.md").read_text().startswith("| checkpoint |")
    assert "## Reported by others (not measured here)" in (out / "lb.md").read_text()
    assert len(_rows(out / "lb.csv")) == 7
    assert (out / "lb_pivot.csv").is_file() and (out / "published.csv").is_file()
    assert f"wrote {out / 'lb.csv'}, {out / 'lb_pivot.csv'}, {out / 'published.csv'}" in printed


class _Cells(HTMLParser):
    """Text of one table's cells (by data-col), by row, as rendered; `classes` keeps each cell's class."""

    def __init__(self, table_id: str = "leaderboard") -> None:
        super().__init__()
        self.table_id = table_id
        self.rows: list[dict[str, str]] = []
        self.classes: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self._in_board = False
        self._col: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == self.table_id:
            self._in_board = True
        elif self._in_board and tag == "tr":
            self.rows.append({})
            self.classes.append({})
        elif self._in_board and tag == "td":
            self._col = attributes.get("data-col")
            self.rows[-1][self._col or "?"] = ""
            self.classes[-1][self._col or "?"] = attributes.get("class") or ""
        elif tag == "img":
            self.images.append({k: v or "" for k, v in attributes.items()})

    def handle_endtag(self, tag) -> None:
        if tag == "table":
            self._in_board = False
        if tag == "td":
            self._col = None

    def handle_data(self, data) -> None:
        if self._col is not None:
            self.rows[-1][self._col] += data


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_html_leaderboard_renders_offline_in_headless_chromium(results, tmp_path) -> None:
    site = tmp_path / "site"
    assert main(["leaderboard", str(results), "--html", str(site)]) == 0
    page = site / "index.html"
    html = page.read_text()
    # self-contained: nothing to fetch (no external src/href/url(), no scripts)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html)
    assert "url(" not in html and "<script" not in html and "<link" not in html
    # what a reader sees: render it, with a probe that records whether each image decoded
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>addEventListener('load',()=>{for(const i of "
                                  "document.images){i.setAttribute('data-w',i.naturalWidth)}})"
                                  "</script></body>"))
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout
    parser = _Cells()
    parser.feed(dom)
    rows = {(r["checkpoint"], r["suite"]): r for r in parser.rows if r}
    libero = rows[("Xiaomi-Robotics-0-LIBERO", "libero")]
    assert libero["value"] == "98.7" and libero["reported"] == "98.7" and libero["consistent"] == "yes"
    widowx = rows[("Xiaomi-Robotics-0-SimplerEnv-WidowX", "simpler_widowx")]
    assert widowx["value"] == "79.2" and widowx["n"] == "96"
    assert rows[("Xiaomi-Robotics-0-Calvin-ABC_D", "calvin_abc_d")]["value"] == "4.75"
    spatial = rows[("Xiaomi-Robotics-0-LIBERO", "libero_spatial")]
    assert spatial["value"] == "98.8" and spatial["ci"].startswith("[")
    assert parser.images and all(int(i.get("data-w", "0")) > 100 for i in parser.images)
    # each run's manifest is on the page
    for run in ("libero_full", "libero_partial", "widowx", "calvin"):
        assert f'id="run-{run}"' in dom
    assert "&quot;git_commit&quot;: &quot;abc123&quot;" in dom or '"git_commit": "abc123"' in dom
    # the pivot: one row per (checkpoint, execution), the headline cells as rendered
    pivot = _Cells("pivot")
    pivot.feed(dom)
    cells = {r["checkpoint"]: (r, c) for r, c in zip(pivot.rows, pivot.classes, strict=True) if r}
    assert sorted(cells) == ["Xiaomi-Robotics-0-Calvin-ABC_D", "Xiaomi-Robotics-0-LIBERO",
                             "Xiaomi-Robotics-0-SimplerEnv-WidowX"]
    libero, classes = cells["Xiaomi-Robotics-0-LIBERO"]
    assert libero["execution"] == "sync,replan_steps=10" and libero["libero_average"] == "98.7 [98.0, 99.1]"
    assert classes["libero_average"] == "num complete" and classes["simpler_widowx_average"] == "num empty"
    assert libero["simpler_widowx_average"] == "" and libero["calvin_abc_d_avg_len"] == ""
    assert cells["Xiaomi-Robotics-0-SimplerEnv-WidowX"][0]["simpler_widowx_average"] == "79.2 [69.0, 86.0]"
    assert cells["Xiaomi-Robotics-0-Calvin-ABC_D"][0]["calvin_abc_d_avg_len"] == "4.75 [4.67, 4.81]"
    # figures reported by others: their own table, with a source for each, never in the measured ones
    published = _Cells("published")
    published.feed(dom)
    figures = [r for r in published.rows if r]
    assert figures and all(r["source"] and r["url"].startswith("https://") for r in figures)
    assert {r["model"] for r in figures}.isdisjoint({r.get("checkpoint") for r in parser.rows + pivot.rows})
    assert dom.index('id="pivot"') < dom.index('id="reported-by-others"') < dom.index('id="published"')
