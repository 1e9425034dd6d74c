"""A search-engine query for an error message ("google it", offline): the message's fixed part, the user's own
numbers, shapes, paths and names taken out. Like the rest of ``nndoctor.catalogue``, no torch import."""
from __future__ import annotations

import re

from nndoctor.catalogue.crashes import KnownError

# The user's own specifics (numbers, shapes, sizes, paths, quoted names, memory amounts) become "*", which search
# engines read as a wildcard inside a quoted phrase; then the leading clauses that hold enough words are kept.
_DTYPE_NAMES = r"Long|Int|Short|Char|Byte|Bool|Float|Double|Half|BFloat16|ComplexFloat|ComplexDouble"
_SPECIFICS = [
    (re.compile(r"\x1b\[[0-9;]*m"), ""),  # colours (torch.load's message has some)
    (re.compile(r"\[enforce fail at [^\]]*\]\s*(?:err == \d+\.\s*)?"), ""),
    (re.compile(r"(?:[A-Za-z]:|\.{1,2}|~)?(?:[\\/][\w.\-~]+){2,}[\\/]?(?::\d+)?|"
                r"\b[\w\-]+\.(?:py|pt|pth|ckpt|bin|json|yaml|csv|safetensors)\b"), "*"),  # paths
    (re.compile(r"<[^<>]*>"), "*"),  # <class 'x'>, </torch_123_0>
    (re.compile(rf"(?<!\w)'(?!(?:{_DTYPE_NAMES})')[^'\n]*'(?!\w)"), "*"),  # quoted names and values, not dtypes
    (re.compile(r'"([a-z][a-z0-9_]*)"'), r"\1"),  # a kernel's name ("softmax_lastdim_kernel_impl") is PyTorch's
    (re.compile(r'"[^"\n]*"|`[^`\n]*`'), "*"),
    (re.compile(r"torch\.Size\(\[[^\]]*\]\)"), "*"),
    (re.compile(r"0x[0-9a-fA-F]+"), "*"),
    (re.compile(r"\b\d+(?:\.\d+)?\s*(?:[KMGTP]i?B|bytes)\b"), "*"),
    (re.compile(r"\b(?:cuda|xpu|mps|npu):\d+\b"), "*"),  # the user's device
    (re.compile(r"\b\d+(?:\s*x\s*\d+)+\b"), "*"),  # 64x784
    (re.compile(r"\b(?!(?:torch|nn|np|numpy|F|Tensor|e\.g|i\.e)\.)[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b(?!\()"), "*"),
    (re.compile(r"(?<![\w.])(?!(?:torch|nn|np|numpy|F|Tensor)\.)[A-Za-z_]\w*\.(?=[a-z_]\w*\()"), ""),  # MyNet.forward()
]
_GROUP_WITH_DIGITS = re.compile(r"\[[^\[\]]*\d[^\[\]]*\]|(?<![\w.])\([^()]*\d[^()]*\)")
_NUMBER = re.compile(r"(?<![\w.*])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)(?!\.\d)")
_STARS = re.compile(r"\*(?:[\s,;:x=*]*\*)+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s+(?=\()")
_CLAUSE = re.compile(r"(?<=[,;:])\s+")
_DATALOADER_WRAPPED = re.compile(r"^Caught \w+ in DataLoader worker process")


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{2,}", text))


def normalise(message: str) -> str:
    """The fixed part of an error message's first line, with the user's own specifics replaced by ``*``."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if _DATALOADER_WRAPPED.match(line) and len(lines) > 1:
        line = lines[-1]  # the worker's own error, quoted as the traceback's last line
    line = re.sub(r"^\w+(?:Error|Exception|Exit|Interrupt): ", "", line)
    for pattern, repl in _SPECIFICS:
        line = pattern.sub(repl, line)
    for _ in range(3):  # nested [[...]] and ([...])
        line = _GROUP_WITH_DIGITS.sub("*", line)
    line = _NUMBER.sub("*", line)
    line = _STARS.sub("*", line)
    line = re.sub(r"\s+", " ", line).strip()
    # Keep sentences (and parenthesised asides) until 5 words; within the last, clauses until 8 words or a "*".
    kept: list[str] = []
    for sentence in _SENTENCE.split(line):
        if _words(" ".join(kept)) >= 5:
            break
        for clause in _CLAUSE.split(sentence):
            so_far = _words(" ".join(kept))
            if so_far >= 5 and ("*" in clause or so_far >= 8):
                break
            kept.append(clause)
    return " ".join(kept).strip(" *.,;:!?-=").strip()


def search_query(type_name: str, message: str, entry: KnownError | None = None) -> str:
    """A query for a search engine: the message's fixed part quoted, then `pytorch`. A known entry's own phrase is
    used when the message holds it; the exception type joins when the message says too little on its own."""
    text = message.replace('"', "")
    phrase = next((q for q in (entry.query if entry else ()) if q.replace('"', "") in text), "") or normalise(message)
    phrase = phrase.replace('"', "")
    if not phrase:
        return f"{type_name} pytorch"
    if _words(phrase) < 3:
        return f'{type_name} "{phrase}" pytorch'
    return f'"{phrase}" pytorch'
