"""`nndoctor run SCRIPT ARGS`: execute an unmodified training script under the Monitor.

The script runs as ``python SCRIPT ARGS`` would: ``__name__ == "__main__"``, the same ``sys.argv``,
``sys.path[0]`` set to the script's folder, the same working directory, its own stdout/stderr, and
its exit status kept. The report is printed after the script's own output. Under ``torchrun`` every
rank runs this way and rank 0 alone prints the report merged from all ranks.
"""
from __future__ import annotations

import os
import runpy
import sys
import traceback

from nndoctor.live.monitor import Monitor, StopTraining
from nndoctor.probes.rank_facts import world


def run_script(script: str, args: list[str], *, max_steps: int | None = None, json_path: str | None = None,
               html_path: str | None = None, select: set[str] | None = None, ignore: set[str] | None = None) -> int:
    from nndoctor.report.console import emit_report

    script_path = os.path.abspath(script)
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    sys.argv = [script] + list(args)
    if sys.path:
        sys.path[0] = os.path.dirname(script_path)
    else:
        sys.path.insert(0, os.path.dirname(script_path))
    status = 0
    note = ""
    monitor = Monitor(max_steps=max_steps)
    try:
        with monitor:
            runpy.run_path(script_path, run_name="__main__")
    except StopTraining:
        note = f"stopped after {max_steps} optimizer steps (--max-steps)"
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        note = "interrupted (Ctrl-C)"
        status = 130
    except BaseException as exc:  # the script crashed: show its traceback as python would, keep status 1
        traceback.print_exception(type(exc), exc, _from_script(exc.__traceback__, script_path), file=sys.stderr)
        status = 1
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None:
            sys.path[0] = saved_path0
    sys.stdout.flush()
    report = monitor.report()  # in a distributed run: every rank's findings, merged on rank 0
    rank, _ = world()
    _end_process_group()
    if rank != 0 and not report.meta.get("unmerged"):
        return status  # rank 0 prints the merged report
    if rank != 0:
        note = f"rank {rank} alone: rank 0 did not collect it" + (f"; {note}" if note else "")
    if monitor.steps == 0 and not note and not report.findings:  # "no problems" would claim too much
        note = ("no optimizer step ran in this process, nothing to judge; a script that starts its own "
                "workers (torch.multiprocessing.spawn) is watched under torchrun -m nndoctor run")
    report.meta.update({"script": script, "args": list(args), "script_exit_status": status, "note": note})
    if select or ignore:
        report = report.filtered(select, ignore)
    title = f"nndoctor run {script}" + (f" ({note})" if note else "")
    found = emit_report(report, json_path, html_path, title=title)
    # The script's own failure wins; otherwise an error finding makes the exit status 1, as for check.
    return status if status else found


def _end_process_group() -> None:
    """A group the script left alive (stopped by --max-steps, or never destroyed) is destroyed now, after
    the exchange of reports has brought every rank here: gloo workers that exit with a live group
    often abort at interpreter exit."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


def _from_script(tb, script_path: str):
    """The traceback from the script's first frame on, as ``python SCRIPT`` prints it (not runpy's frames)."""
    first = tb
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == script_path:
            return tb
        tb = tb.tb_next
    return first.tb_next if first is not None else None
