"""Loading a user's setup file: ``FILE[:FUNCTION]`` imported as ``python FILE`` would, FUNCTION called.

Every problem (no such file or function, a syntax error, an exception, not a Setup) is a
SetupFileError whose one-line message says what to fix; the CLI prints it and exits 2.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from typing import Any

from nndoctor.spec import Setup, SetupError


class SetupFileError(Exception):
    """The setup file could not give a Setup; the message says why, in one line."""


def load_setup(target: str) -> Setup:
    """Import FILE and call FUNCTION (default ``setup``); any problem is a SetupFileError."""
    path, _, func_name = target.partition(":") if not os.path.exists(target) else (target, "", "")
    func_name = func_name or "setup"
    if not os.path.exists(path):
        raise SetupFileError(f"file not found: {path}")
    if os.path.isdir(path):
        raise SetupFileError(f"{path} is a directory; give a Python file that defines {func_name}()")
    if not path.endswith(".py"):
        raise SetupFileError(f"{path} is not a Python file (.py)")
    module = _import_file(path)
    func = getattr(module, func_name, None)
    if func is None:
        found = [n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__]
        hint = f"; functions defined there: {', '.join(found)}" if found else ""
        raise SetupFileError(f"{path} defines no function {func_name!r}{hint}")
    if not callable(func):
        raise SetupFileError(f"{path}:{func_name} is not a function")
    try:
        inspect.signature(func).bind()
    except TypeError:
        raise SetupFileError(f"{path}:{func_name} must take no arguments, its signature is {func_name}{inspect.signature(func)}") from None
    except ValueError:
        pass
    try:
        result = func()
    except SetupError as exc:
        raise SetupFileError(f"{path}:{func_name}() built an invalid Setup: {exc}") from None
    except Exception as exc:
        raise SetupFileError(f"{path}:{func_name}() raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(result, Setup):
        raise SetupFileError(f"{path}:{func_name}() returned {type(result).__name__}, not a nndoctor.Setup")
    return result


def _import_file(path: str) -> Any:
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the user's file can import its neighbours, as `python FILE` would
    name = "_nndoctor_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SetupFileError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SetupFileError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise SetupFileError(f"importing {path} called sys.exit({exc.code}); guard script code with if __name__ == '__main__'") from None
    except Exception as exc:
        raise SetupFileError(f"importing {path} raised {type(exc).__name__}: {_first_line(exc)}") from None
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
