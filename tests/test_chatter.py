"""Simulator chatter goes to <run>/simulator.log, not the terminal; -v shows it."""

from __future__ import annotations

import os

from mibot_eval.suites import chatter


def test_quiet_sends_python_and_c_level_output_to_the_log(tmp_path, capfd) -> None:
    chatter.set_log(None)
    with chatter.quiet():
        print("[info] Applying task order index 0")  # before the run folder is known: kept
        os.write(2, b"[robosuite WARNING] No private macro file found!\n")  # as a C library would
    log = tmp_path / chatter.LOG_FILE
    chatter.set_log(log)
    with chatter.quiet():
        print("EGL notice")
    out, err = capfd.readouterr()
    assert "task order" not in out + err and "macro" not in out + err and "EGL" not in out + err
    text = log.read_text()
    assert "task order" in text and "macro file" in text and "EGL notice" in text
    chatter.set_log(log, verbose=True)
    with chatter.quiet():
        print("shown with -v")
    assert "shown with -v" in capfd.readouterr().out
    chatter.set_log(None)
