"""Scaffold a new check in one command: the catalogue entry (with its doc headings), a planted-bug case
and its clean twin, ready to fill in.

    python scripts/new_check.py LOS005 softmax-twice --severity warning

Prints what it added; edits nothing that exists except appending to the family's files.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENTRY = '''
CODES.append(
    Code(
        code="{code}",
        name="{name}",
        severity=Severity.{severity},
        summary="TODO: one line, as in the public catalogue table.",
        what="""
TODO: what it means.
""",
        why="""
TODO: why it matters.
""",
        example="""
TODO: a minimal buggy example.
""",
        fix="""
TODO: the fix.
""",
        ignore="TODO: when it is safe to ignore.",
    )
)
'''

CASE = '''

def _{fn}(fixed: bool):
    raise NotImplementedError("TODO: build a Setup with the bug planted; `fixed` applies the fix")


CASES.append(Case("{name}", lambda: _{fn}(fixed=False), ("{code}",), twin=lambda: _{fn}(fixed=True),
                  select=("{code}",)))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("code")
    parser.add_argument("name")
    parser.add_argument("--severity", choices=["error", "warning", "info"], default="warning")
    args = parser.parse_args()
    from nndoctor import catalogue

    code = args.code.upper()
    if not re.fullmatch(r"[A-Z]{3}\d{3}", code) or code[:3] not in catalogue.FAMILIES:
        parser.error(f"{code}: a code is a known family prefix and three digits, e.g. LOS005")
    if code in catalogue.CODES:
        parser.error(f"{code} exists already; codes are never renumbered or reused")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", args.name):
        parser.error("a name is lower-case words joined by hyphens, naming the bug (not the fix)")
    module = catalogue.FAMILIES[code[:3]][0]
    cat_file = os.path.join(ROOT, "nndoctor", "catalogue", f"{module}.py")
    case_file = os.path.join(ROOT, "tests", "cases", f"{module}_cases.py")
    with open(cat_file, "a") as fh:
        fh.write(ENTRY.format(code=code, name=args.name, severity=args.severity.upper()))
    if not os.path.exists(case_file):
        with open(case_file, "w") as fh:
            fh.write(f'"""{code[:3]} cases: planted bugs and their clean twins."""\n'
                     "from __future__ import annotations\n\nfrom . import Case\n\nCASES: list[Case] = []\n")
    with open(case_file, "a") as fh:
        fh.write(CASE.format(code=code, name=args.name, fn=args.name.replace("-", "_")))
    print(f"added {code} {args.name} to {os.path.relpath(cat_file, ROOT)} and a case to "
          f"{os.path.relpath(case_file, ROOT)}; now write the check in nndoctor/checks/ with "
          f"@check(..., codes=(\"{code}\",)) and fill in the TODOs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
