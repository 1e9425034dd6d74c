"""The crash catalogue (catalogue/crashes.py): every entry reproduced, its search query, and the RUN findings
that quote it."""
from __future__ import annotations

import contextlib
import multiprocessing
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndoctor
from nndoctor import Setup, cli
from nndoctor.catalogue import crashes, search_query
from nndoctor.probes.errors import classify, known_error
from nndoctor.report.terminal import render_text

REPRODUCED = [e for e in crashes.ERRORS if not e.needs]
FROM_TEXT = [(e, text) for e in crashes.ERRORS for text in e.texts]


def raise_example(entry: crashes.KnownError) -> BaseException:
    """Run the entry's example as a user would and return what it raised."""
    if "multiprocessing_context='fork'" in entry.example and "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exec(compile(entry.example, f"<{entry.id}>", "exec"), {"torch": torch, "nn": nn, "F": F})
        except Exception as exc:  # the error the example is there to make
            _stop_workers(exc)
            return exc
    raise AssertionError(f"{entry.id}: the example raised nothing")


def _stop_workers(exc: BaseException) -> None:
    """Shut a failed DataLoader's workers down now: left to the garbage collector, each waits 5 s to exit."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, torch.utils.data.dataloader._MultiProcessingDataLoaderIter):
                value._shutdown_workers()
        tb = tb.tb_next


def assert_query_quotes(query: str, message: str) -> None:
    """The quoted phrase is the message's own text: every part between wildcards occurs in it, in order."""
    quoted = re.search(r'"([^"]*)"', query)
    if quoted is None:  # nothing fixed in the message: the exception type alone
        return
    text, at = message.replace('"', ""), 0
    for part in (p.strip() for p in quoted.group(1).split("*")):
        if part:
            at = text.find(part, at)
            assert at >= 0, (part, message)
            at += len(part)


@pytest.mark.parametrize("entry", REPRODUCED, ids=[e.id for e in REPRODUCED])
def test_every_entry_is_reproduced_and_matched(entry):
    exc = raise_example(entry)
    found, query = known_error(exc)
    assert found is entry, (f"{type(exc).__name__}: {exc}", found and found.id)
    assert query.endswith(" pytorch")
    assert_query_quotes(query, str(exc))


@pytest.mark.parametrize("entry,text", FROM_TEXT, ids=[f"{e.id}-{i}" for i, (e, _) in enumerate(FROM_TEXT)])
def test_messages_seen_elsewhere_match_their_entry(entry, text):
    """Matched from text, not reproduced: GPU/NCCL-only messages and other versions' wording, as PyTorch writes
    them (its source and issue reports)."""
    assert crashes.match(text) is entry, crashes.match(text)
    assert_query_quotes(search_query.search_query("RuntimeError", text, entry), text)


def test_every_entry_is_reproduced_or_has_verbatim_text():
    assert len(crashes.ERRORS) >= 30
    assert len({e.id for e in crashes.ERRORS}) == len(crashes.ERRORS)
    for e in crashes.ERRORS:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", e.id), e.id
        assert e.needs in ("", "cuda", "nccl"), e.id
        assert e.example.strip(), e.id
        assert e.needs == "" or e.texts, f"{e.id} cannot run here and quotes no message"
        assert e.cause.endswith(".") and e.fix.endswith(".") and e.fix[0].isupper(), e.id


def test_every_query_phrase_occurs_in_a_message_of_its_entry():
    """An entry's own query phrases are not invented: each occurs in its reproduction or a verbatim text."""
    for e in crashes.ERRORS:
        messages = list(e.texts) + ([str(raise_example(e))] if not e.needs else [])
        for phrase in e.query:
            assert any(phrase.replace('"', "") in m.replace('"', "") for m in messages), (e.id, phrase)


QUERIES = [
    ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (64x784 and 128x10)",
     '"mat1 and mat2 shapes cannot be multiplied" pytorch'),
    ("RuntimeError", "The size of tensor a (10) must match the size of tensor b (64) at non-singleton dimension 1",
     '"The size of tensor a * must match the size of tensor b * at non-singleton dimension" pytorch'),
    ("RuntimeError", "shape '[64, 10]' is invalid for input of size 1000",
     '"shape * is invalid for input of size" pytorch'),
    ("OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)",
     '"CUDA out of memory" pytorch'),
    ("RuntimeError", "size mismatch for fc.weight: copying a param with shape torch.Size([10, 512]) from checkpoint, "
     "the shape in current model is torch.Size([10, 256]).",
     '"size mismatch for *: copying a param with shape * from checkpoint" pytorch'),
    ("AttributeError", "'MyNet' object has no attribute 'fc3'", '"object has no attribute" pytorch'),
    ("FileNotFoundError", "[Errno 2] No such file or directory: '/home/me/data/train.csv'",
     '"No such file or directory" pytorch'),
    ("TypeError", "MyNet.forward() got an unexpected keyword argument 'labels'",
     '"forward() got an unexpected keyword argument" pytorch'),
    ("KeyError", "'label'", "KeyError pytorch"),  # nothing fixed: the type alone
    ("ValueError", "bad row 17", 'ValueError "bad row" pytorch'),  # too little on its own: the type joins
    ("ValueError", "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
     '  File "/data/ds.py", line 9, in __getitem__\nValueError: could not convert string to float: \'abc\'',
     '"could not convert string to float" pytorch'),  # a worker's error: its own message, not the wrapper
]


@pytest.mark.parametrize("type_name,message,query", QUERIES, ids=[q[2][:40] for q in QUERIES])
def test_query_keeps_the_message_and_drops_the_users_specifics(type_name, message, query):
    entry = crashes.match(message)
    assert search_query.search_query(type_name, message, entry) == query


# ----- through nndoctor.check: RUN findings quote the catalogue ---------------------------------------------------
class SigmoidNet(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.out = nn.Linear(16, 3)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc(x))
        if self.inplace:
            h += 1.0  # changes sigmoid's output, which its backward needs
        else:
            h = h + 1.0
        return self.out(h)


class OwnError(nn.Module):
    """A model whose forward raises an error of the user's own making, unknown to the catalogue."""

    def __init__(self, broken: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.broken = broken

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.broken:
            raise ValueError(f"unsupported mode 'fast' for a batch of {len(x)}")
        return self.fc(x)


class Images(torch.utils.data.Dataset):
    """Images whose sizes differ (the fix: one size for all)."""

    def __init__(self, same_size: bool) -> None:
        self.same_size = same_size

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        side = 8 if self.same_size or i % 2 == 0 else 6
        return torch.randn(1, side, side), i % 3


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def run_findings(setup: Setup) -> list:
    return [f for f in nndoctor.check(setup, select="RUN", budget=20).findings if f.severity.value == "error"]


@pytest.mark.parametrize("inplace", [True, False], ids=["planted", "clean-twin"])
def test_inplace_crash_is_run005_with_the_known_error_and_its_query(inplace):
    torch.manual_seed(0)
    found = run_findings(Setup(model=SigmoidNet(inplace), train_data=data(), loss_fn=nn.CrossEntropyLoss(),
                               batch_size=16))
    if not inplace:
        assert found == []
        return
    (f,) = found
    assert f.code == "RUN005"
    assert "test_crash_catalogue.py" in f.location  # the forward line that made the overwritten tensor
    assert f.evidence["known_error"] == "inplace-modified-saved-tensor"
    assert f.evidence["search_query"] == (
        '"one of the variables needed for gradient computation has been modified by an inplace operation" pytorch')
    assert "Likely cause: an in-place operation" in f.message
    assert f.suggestions[0].startswith("Use the out-of-place form")
    assert f.suggestions[-1] == "Search: " + f.evidence["search_query"]
    text = render_text(nndoctor.check(Setup(model=SigmoidNet(True), train_data=data(), loss_fn=nn.CrossEntropyLoss()),
                                      select="RUN", budget=20))
    assert "search:" in text and "modified by an inplace operation" in text


@pytest.mark.parametrize("inplace", [True, False], ids=["planted", "clean-twin"])
def test_live_crash_names_the_known_error_and_its_query(inplace):
    """The Monitor on the user's own loop: the crash that ends training quotes the catalogue too."""
    torch.manual_seed(0)
    model = SigmoidNet(inplace)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with pytest.raises(RuntimeError) if inplace else contextlib.nullcontext():
        with nndoctor.Monitor(model, opt) as mon:
            for _ in range(2):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    found = [f for f in mon.report().findings if f.code.startswith("RUN")]
    if not inplace:
        assert found == []
        return
    (f,) = found
    assert f.code == "RUN005" and "test_crash_catalogue.py" in f.location
    assert f.evidence["known_error"] == "inplace-modified-saved-tensor"
    assert "Likely cause: an in-place operation" in f.message
    assert f.suggestions[-1] == "Search: " + f.evidence["search_query"]


@pytest.mark.parametrize("broken", [True, False], ids=["planted", "clean-twin"])
def test_unknown_error_still_gets_its_location_and_a_query(broken):
    found = run_findings(Setup(model=OwnError(broken), train_data=data(), loss_fn=nn.CrossEntropyLoss()))
    if not broken:
        assert found == []
        return
    (f,) = found
    assert f.code == "RUN005"
    assert "known_error" not in f.evidence
    assert "test_crash_catalogue.py" in f.evidence["source"]
    assert "raise ValueError" in f.evidence["source_line"]
    assert f.evidence["search_query"] == '"unsupported mode * for a batch of" pytorch'  # 'fast' and 32 left out
    assert f.suggestions[-1] == "Search: " + f.evidence["search_query"]


@pytest.mark.parametrize("same_size", [False, True], ids=["planted", "clean-twin"])
def test_data_crash_names_the_known_error(same_size):
    loader = torch.utils.data.DataLoader(Images(same_size), batch_size=4)
    found = run_findings(Setup(model=TinyConv(), train_data=loader, loss_fn=nn.CrossEntropyLoss()))
    if same_size:
        assert found == []
        return
    (f,) = found
    assert f.code == "RUN005" and f.evidence["phase"] == "data"
    assert f.evidence["known_error"] == "stack-unequal-size"
    assert "Likely cause: samples of different sizes" in f.message
    assert f.suggestions[-1] == 'Search: "stack expects each tensor to be equal size" pytorch'


def test_specialised_messages_keep_their_fix_first_and_add_the_query():
    """RUN001's own explanation is not replaced: the query joins as the last suggestion."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(12, 3))
    (f,) = run_findings(Setup(model=model, train_data=data(), loss_fn=nn.CrossEntropyLoss()))
    assert f.code == "RUN001" and f.location == "model.2"
    assert f.suggestions[0].startswith("Set in_features=16")
    assert f.evidence["known_error"] == "mat1-mat2-shapes"
    assert f.suggestions[-1] == 'Search: "mat1 and mat2 shapes cannot be multiplied" pytorch'


@pytest.mark.parametrize("as_float", [True, False], ids=["planted", "clean-twin"])
def test_a_message_the_classifier_misses_takes_its_kind_from_the_catalogue(as_float):
    """PyTorch 2.x says "expected target dtype to be Long" for float class indices: a dtype error (RUN002)."""
    x, y = data()
    found = run_findings(Setup(model=nn.Linear(8, 3), train_data=(x, y.float() if as_float else y),
                               loss_fn=nn.CrossEntropyLoss()))
    if not as_float:
        assert found == []
        return
    (f,) = found
    assert f.code == "RUN002" and f.location == "loss_fn"
    assert f.evidence["known_error"] == "class-index-dtype"
    assert any("y.long()" in s for s in f.suggestions)


def test_kinds_name_entries_and_codes():
    assert set(crashes.KIND_OF) <= set(crashes.BY_ID)
    assert set(crashes.KIND_OF.values()) <= {"shape", "dtype", "device", "memory"}


def test_classify_carries_entry_and_query_for_a_wrapped_error():
    """A framework's error raised from PyTorch's is looked up by its cause."""
    try:
        try:
            torch.randn(3, 4).t().view(12)
        except RuntimeError as inner:
            raise RuntimeError("training step failed") from inner
    except RuntimeError as exc:
        info = classify(exc, "forward")
    assert info.known is crashes.BY_ID["view-non-contiguous"]
    assert info.query == '"training step failed" pytorch'


def test_cli_lists_and_explains_the_crash_catalogue(capsys):
    assert cli.main(["codes", "--errors"]) == 0
    out = capsys.readouterr().out
    assert all(e.id in out for e in crashes.ERRORS)
    assert cli.main(["codes", "--errors", "backward-twice"]) == 0
    out = capsys.readouterr().out
    assert "retain_graph=True" in out and "y.backward()" in out
    assert cli.main(["codes", "--errors", "backward-twise"]) == 2
    assert "backward-twice" in capsys.readouterr().err
