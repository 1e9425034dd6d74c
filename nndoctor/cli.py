"""Command line: argument parsing and exit codes only (0: no error finding, 1: an error finding, 2: nndoctor could not run)."""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
from typing import Any, NoReturn

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


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
                   help="time budget for the whole playbook (default 120)")
    p.add_argument("--memory", default=None, metavar="SIZE", help="device memory budget, e.g. 2GiB")
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
        return {"check": cmd_check, "run": cmd_run, "demo": cmd_demo, "codes": cmd_codes}[args.command](args)
    except UsageError as exc:
        print(f"nndoctor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


# ----- check ---------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from nndoctor.playbook import DEFAULT_BUDGET, check
    from nndoctor.report.console import emit_report, progress_display
    from nndoctor.spec import SetupError, parse_size

    _resolve_filters(args)
    if args.memory is not None:
        try:
            parse_size(args.memory)
        except SetupError as exc:
            raise UsageError(str(exc)) from None
    _check_writable(args.json, args.html)
    setup = load_setup(args.target)
    with progress_display() as progress:
        try:
            report = check(setup, seed=args.seed, budget=args.budget or DEFAULT_BUDGET, select=args.select,
                           ignore=args.ignore, memory=args.memory, progress=progress)
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


def load_setup(target: str) -> Any:
    """Import FILE and call FUNCTION (default ``setup``); any problem is a UsageError (exit 2)."""
    from nndoctor.spec import Setup, SetupError

    path, _, func_name = target.partition(":") if not os.path.exists(target) else (target, "", "")
    func_name = func_name or "setup"
    if not os.path.exists(path):
        raise UsageError(f"file not found: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; give a Python file that defines {func_name}()")
    if not path.endswith(".py"):
        raise UsageError(f"{path} is not a Python file (.py)")
    module = _import_file(path)
    func = getattr(module, func_name, None)
    if func is None:
        found = [n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__]
        hint = f"; functions defined there: {', '.join(found)}" if found else ""
        raise UsageError(f"{path} defines no function {func_name!r}{hint}")
    if not callable(func):
        raise UsageError(f"{path}:{func_name} is not a function")
    try:
        inspect.signature(func).bind()
    except TypeError:
        raise UsageError(f"{path}:{func_name} must take no arguments, its signature is {func_name}{inspect.signature(func)}") from None
    except ValueError:
        pass
    try:
        result = func()
    except SetupError as exc:
        raise UsageError(f"{path}:{func_name}() built an invalid Setup: {exc}") from None
    except Exception as exc:
        raise UsageError(f"{path}:{func_name}() raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(result, Setup):
        raise UsageError(f"{path}:{func_name}() returned {type(result).__name__}, not a nndoctor.Setup")
    return result


def _import_file(path: str) -> Any:
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the user's file can import its neighbours, as `python FILE` would
    name = "_nndoctor_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise UsageError(f"importing {path} called sys.exit({exc.code}); guard script code with if __name__ == '__main__'") from None
    except Exception as exc:
        raise UsageError(f"importing {path} raised {type(exc).__name__}: {_first_line(exc)}") from None
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


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

    if args.errors:
        return _crash_catalogue(args.code)
    if args.code:
        try:
            codes = sorted(catalogue.resolve(args.code))
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        print("\n\n".join(catalogue.get(c).doc() for c in codes))
        return EXIT_OK
    import textwrap

    for prefix, (_module, _step, title) in catalogue.FAMILIES.items():
        print(f"{prefix}  {title}")
        for entry in catalogue.CODES.values():
            if entry.family == prefix:
                head = f"  {entry.code}  {entry.name:<30} {entry.severity.value:<8}"
                lines = textwrap.wrap(entry.summary, width=100 - len(head) - 1) or [""]
                print(f"{head} {lines[0]}")
                for line in lines[1:]:
                    print(" " * (len(head) + 1) + line)
    print("\nDetails: nndoctor codes CODE; common PyTorch error messages: nndoctor codes --errors")
    return EXIT_OK


def _crash_catalogue(entry_id: str | None) -> int:
    """``codes --errors [ID]``: the crash catalogue (catalogue/crashes.py) that RUN findings quote."""
    import difflib
    import textwrap

    from nndoctor.catalogue import crashes

    if entry_id:
        entry = crashes.BY_ID.get(entry_id.lower())
        if entry is None:
            close = difflib.get_close_matches(entry_id.lower(), list(crashes.BY_ID), n=3, cutoff=0.5)
            raise UsageError(f"unknown error id {entry_id!r}" + (f"; did you mean {', '.join(close)}?" if close
                                                                 else "; see `nndoctor codes --errors`"))
        example = textwrap.indent(entry.example, "    ")
        where = f" (needs {entry.needs.upper()})" if entry.needs else ""
        print(f"{entry.id}\n\nMatches (regex)\n    {entry.pattern}\n\nCause\n    {entry.cause}\n\nFix\n    {entry.fix}"
              f"\n\nExample{where}\n{example}")
        return EXIT_OK
    width = max(len(e.id) for e in crashes.ERRORS) + 2
    for entry in crashes.ERRORS:
        lines = textwrap.wrap(entry.cause, width=100 - width - 2) or [""]
        print(f"  {entry.id:<{width}}{lines[0]}")
        for line in lines[1:]:
            print(" " * (width + 2) + line)
    print(f"\n{len(crashes.ERRORS)} known errors. Details: nndoctor codes --errors ID")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
