"""Command line: argument parsing and exit codes only (0: no error finding, 1: an error finding, 2: nndoctor could not run)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from nndoctor.spec import Setup

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT, when there is no report to stand for


class UsageError(Exception):
    """nndoctor itself cannot run: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, exit 2 (argparse prints usage too)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from nndoctor._version import __version__

    parser = _Parser(prog="nndoctor", description="Debug deep-learning training in PyTorch.")
    parser.add_argument("--version", action="version", version=f"nndoctor {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("check", help="run the playbook on a Setup returned by FILE[:FUNCTION]")
    p.add_argument("target", metavar="FILE[:FUNCTION]")
    _add_outputs(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=_positive_float, default=None, metavar="SECONDS",
                   help="time budget for the whole playbook (default 15 s; 5 with --quick, 900 with --thorough)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--quick", dest="mode", action="store_const", const="quick", default="default",
                       help="the run-after-every-change loop: step 1, the five bugs and a short one-batch "
                            "overfit; no baselines or comparisons")
    depth.add_argument("--thorough", dest="mode", action="store_const", const="thorough",
                       help="every experiment, with a long budget")
    p.add_argument("--memory", default=None, metavar="SIZE", help="device memory budget, e.g. 2GiB")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="device the memory budget is for, e.g. cuda (need not be on this machine; default: the model's)")
    _add_code_filters(p)

    p = sub.add_parser("run", help="run an unmodified training script under observation")
    p.add_argument("--max-steps", type=_positive_int, default=None, metavar="N")
    _add_outputs(p)
    _add_code_filters(p)
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    p = sub.add_parser("demo", help="run the playbook on a built-in example with planted bugs")
    p.add_argument("--html", default=None, metavar="PATH")
    p.add_argument("--json", default=None, metavar="PATH")

    p = sub.add_parser("init", help="write a lightweight first model for DATA, then check it")
    p.add_argument("data", metavar="DATA", help=".npz (x, y), .csv, a folder of images by class, or module.py:function")
    p.add_argument("--target", default=None, metavar="COLUMN", help="the CSV's target column (default: the last)")
    p.add_argument("--task", default=None, choices=("classification", "binary", "multilabel", "multi-label",
                                                    "regression", "tabular", "image", "sequence"))
    p.add_argument("--framework", default="torch", choices=("torch", "lightning", "keras"))
    p.add_argument("-o", "--output", default="nndoctor_setup.py", metavar="FILE")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--no-check", action="store_true", help="write the file only")
    p.add_argument("--budget", type=_positive_float, default=30.0, metavar="SECONDS")
    p.add_argument("--seed", type=int, default=0)
    _add_outputs(p)

    p = sub.add_parser("codes", help="list the codes, or explain one")
    p.add_argument("code", nargs="?", default=None)
    p.add_argument("--errors", action="store_true",
                   help="the crash catalogue instead: common PyTorch error messages (with an id: that one's cause and fix)")
    return parser


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
    p.add_argument("--html", default=None, metavar="PATH", help="write the report as a self-contained HTML page")


def _add_code_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select", action="append", default=None, metavar="CODES",
                   help="only these codes, families (LOS) or names, comma-separated")
    p.add_argument("--ignore", action="append", default=None, metavar="CODES", help="never report these")


def _resolve_filters(args: argparse.Namespace) -> tuple[set[str] | None, set[str] | None]:
    """The codes of --select and --ignore; an unknown token is a usage error naming the closest codes."""
    from nndoctor import catalogue

    try:
        return (catalogue.resolve(args.select) if args.select else None,
                catalogue.resolve(args.ignore) if args.ignore else None)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return {"check": cmd_check, "run": cmd_run, "demo": cmd_demo, "codes": cmd_codes,
                "init": cmd_init}[args.command](args)
    except UsageError as exc:
        print(f"nndoctor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before the playbook started (import, the setup file) or after it
        print("nndoctor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# ----- check ---------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from nndoctor.interrupts import remembered_ctrl_c, stop_if_requested
    from nndoctor.setup_file import SetupFileError, load_setup
    from nndoctor.spec import SetupError, parse_size

    _resolve_filters(args)
    if args.memory is not None:
        try:
            parse_size(args.memory)
        except SetupError as exc:
            raise UsageError(str(exc)) from None
    _check_writable(args.json, args.html)
    with remembered_ctrl_c():
        try:
            setup = load_setup(args.target)
        except SetupFileError as exc:
            raise UsageError(str(exc)) from None
        stop_if_requested()  # a Ctrl-C while the setup file ran, swallowed by its code: nothing to report yet
        return _check_loaded(args, setup)


def _check_loaded(args: argparse.Namespace, setup: Setup) -> int:
    from nndoctor.playbook import check
    from nndoctor.report.console import emit_report, progress_display
    from nndoctor.spec import SetupError

    if args.device is not None:
        import torch

        try:
            setup.device = str(torch.device(args.device))
        except (RuntimeError, TypeError):
            raise UsageError(f"--device must name a torch device such as cuda or cpu, got {args.device!r}") from None
    with progress_display() as progress:
        try:
            report = check(setup, seed=args.seed, budget=args.budget or "auto", select=args.select,
                           ignore=args.ignore, memory=args.memory, progress=progress, mode=args.mode)
        except SetupError as exc:
            raise UsageError(str(exc)) from None
    return emit_report(report, args.json, args.html, title=f"nndoctor check {args.target}")


def _check_writable(*paths: str | None) -> None:
    for path in paths:
        if not path:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise UsageError(f"cannot write the report to {path}: it is a directory")
        if not os.path.isdir(folder):
            raise UsageError(f"cannot write the report to {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise UsageError(f"cannot write the report to {path}: folder {folder} is not writable")


# ----- init ----------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    """Write a lightweight first model for DATA (nndoctor/scaffold), then check it as `check FILE` would."""
    from nndoctor import scaffold

    if os.path.exists(args.output) and not args.force:
        raise UsageError(f"{args.output} exists; choose another name with -o or pass --force to overwrite it")
    _check_writable(args.output, args.json, args.html)
    try:
        source = scaffold.open_source(args.data, args.target)
        profile = scaffold.infer_profile(source, args.task)
        written = scaffold.write_setup_file(args.output, source, profile, args.framework)
    except scaffold.ScaffoldError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {args.output}: a lightweight first model ({args.framework})")
    print("\n".join("  " + line for line in profile.lines()))
    if args.no_check:
        print(f"\nNext: python {args.output}, then nndoctor check {args.output}")
        return EXIT_OK
    from nndoctor.playbook import check
    from nndoctor.report.console import emit_report, progress_display
    from nndoctor.setup_file import SetupFileError, load_setup

    try:
        setup = load_setup(written.path)
    except SetupFileError as exc:
        raise UsageError(str(exc)) from None
    with progress_display() as progress:
        report = check(setup, seed=args.seed, budget=args.budget, progress=progress)
    status = emit_report(report, args.json, args.html, title=f"nndoctor init {args.data}")
    print("\n" + scaffold.next_steps(report, args.output))
    return status


# ----- run, demo, codes ----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    select, ignore = _resolve_filters(args)
    _check_writable(args.json, args.html)
    if not os.path.isfile(args.script):
        raise UsageError(f"script not found: {args.script}")
    from nndoctor.live.runner import run_script

    return run_script(args.script, args.args, max_steps=args.max_steps, json_path=args.json, html_path=args.html,
                      select=select, ignore=ignore)


def cmd_demo(args: argparse.Namespace) -> int:
    from nndoctor.demo import run_demo

    _check_writable(args.json, args.html)
    return run_demo(html_path=args.html, json_path=args.json)


def cmd_codes(args: argparse.Namespace) -> int:
    from nndoctor import catalogue
    from nndoctor.report import codes as views

    try:
        if args.errors:
            print(views.crash_doc(views.crash_entry(args.code)) if args.code else views.crash_table())
        else:
            print(views.code_docs(sorted(catalogue.resolve(args.code))) if args.code else views.code_table())
    except KeyError as exc:  # an unknown code or error id: the message names the closest ones
        raise UsageError(exc.args[0]) from None
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
