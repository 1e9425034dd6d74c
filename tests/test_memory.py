"""The memory probe against slow, obvious references, and RUN004's claims against fresh measurements."""
from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils.checkpoint import checkpoint_sequential

import nndoctor
from cases.mem_cases import IMAGE_BUDGET, WIDE_BUDGET, large_images, wide_images
from helpers import run_checked
from nndoctor.checks.memory import _micro_batch
from nndoctor.probes.fake_memory import CUDA_CONTEXT, FakeStep
from nndoctor.probes.memory import PeakModel, SavedActivations, measure_step
from nndoctor.setup_file import load_setup
from nndoctor.spec import parse_size

CPU = torch.device("cpu")


def cross_entropy_step(model: nn.Module, batch) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


def saved_by_graph_walk(loss: torch.Tensor, exclude: list[torch.Tensor]) -> int:
    """Reference: walk the autograd graph and add up the distinct storages behind every ``_saved_*`` tensor."""
    known = {t.untyped_storage().data_ptr() for t in exclude}
    found: dict[int, int] = {}
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            value = getattr(node, name)
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in known:
                    found[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sum(found.values())


def test_tiny_mlp_matches_the_bytes_counted_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    optimizer = torch.optim.Adam(model.parameters())
    m = measure_step(model, optimizer, (x, y), cross_entropy_step, batch_size=5, device=CPU)
    # ReLU saves its output (5x8 float32); the second Linear saves the same tensor (counted once) and its
    # weight (a parameter); the first Linear saves x (the batch). The loss saves log-softmax (5x3) and
    # a scalar total weight.
    assert m.activations == {"model.1": 5 * 8 * 4, "loss": 5 * 3 * 4 + 4}
    weights = (4 * 8 + 8 + 8 * 3 + 3) * 4
    assert m.parameters == weights and m.gradients == weights
    assert m.optimizer_state == 2 * weights + 4 * 4  # exp_avg and exp_avg_sq, plus one step count per tensor
    assert m.state_created == m.optimizer_state  # a first step allocates all of it
    assert m.inputs == 5 * 4 * 4 + 5 * 8


class ViewPairs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))  # (N, 8), saved by tanh
        return h[:, :4] * h[:, 4:]  # mul saves two views of h: the same storage


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


@pytest.mark.parametrize("build", [
    lambda: (ViewPairs(), torch.randn(5, 6), torch.randn(5, 4), nn.functional.mse_loss),
    lambda: (CNN(), torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)), nn.functional.cross_entropy),
    lambda: (nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), torch.randn(3, 5, 16), torch.randn(3, 5, 16),
             nn.functional.mse_loss),
    lambda: (nn.LSTM(6, 7, batch_first=True), torch.randn(2, 5, 6), torch.randn(2, 5, 7),
             lambda out, y: nn.functional.mse_loss(out[0], y)),
], ids=["views", "cnn-batchnorm", "transformer-layer", "lstm"])
def test_saved_activations_match_a_walk_of_the_autograd_graph(build):
    torch.manual_seed(0)
    model, x, y, loss_fn = build()
    exclude = list(model.parameters()) + list(model.buffers()) + [x, y]
    with SavedActivations(model, exclude=exclude) as saved:
        loss = loss_fn(model(x), y)
    assert saved.total == saved_by_graph_walk(loss, exclude)
    if isinstance(model, ViewPairs):  # tanh's output once, though mul saved two views of it; the loss its input
        assert saved.by_module == {"model": 5 * 8 * 4, "loss": 5 * 4 * 4}


def test_probe_leaves_no_hook_behind():
    model = CNN()
    batch = (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))
    measure_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, cross_entropy_step, batch_size=4, device=CPU)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        model(torch.randn(2, 3, 8, 8)).sum()
    assert packed  # our saved-tensor hooks are gone: the next ones registered see every tensor


def test_growth_extrapolates_to_a_larger_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    optimizer = torch.optim.Adam(model.parameters())

    def at(size: int):
        batch = (torch.randn(size, 3, 32, 32), torch.randint(0, 10, (size,)))
        return measure_step(model, optimizer, batch, cross_entropy_step, batch_size=size, device=CPU)

    small, large, target = at(8), at(16), at(48)
    growth = PeakModel(small, large)
    assert growth.peak(16) == pytest.approx(large.peak)
    assert growth.peak(48) == pytest.approx(target.peak, rel=0.05)
    assert growth.largest_batch(target.peak) in range(46, 51)


@pytest.fixture(scope="module")
def planted():
    setup = large_images(IMAGE_BUDGET)
    report = run_checked(setup, select=["RUN004"])
    return setup, report


def test_largest_batch_fits_and_the_next_does_not(planted):
    setup, report = planted
    [finding] = report.by_code("RUN004")
    largest = finding.evidence["largest_batch"]
    assert finding.evidence["largest_batch_verified"] and 1 <= largest < 64
    model = setup.model.__class__()
    optimizer = setup.optimizer(model.parameters())
    x, y = setup.train_data
    peaks = [measure_step(model, optimizer, (x[:n].clone(), y[:n].clone()), lambda m, b: setup.loss_fn(m(b[0]), b[1]),
                          batch_size=n, device=CPU).peak for n in (largest, largest + 1)]
    budget = parse_size(IMAGE_BUDGET)
    assert peaks[0] <= budget < peaks[1]


def test_finding_carries_the_breakdown_and_ranked_remedies(planted):
    _setup, report = planted
    [finding] = report.by_code("RUN004")
    ev = finding.evidence
    assert ev["peak_bytes"] > parse_size(IMAGE_BUDGET)
    parts = ("parameters_bytes", "buffers_bytes", "gradients_bytes", "optimizer_state_bytes", "inputs_bytes",
             "activations_bytes")
    assert sum(ev[k] for k in parts) <= ev["peak_bytes"]
    assert ev["activations_bytes"] > 0.5 * ev["peak_bytes"]  # large feature maps dominate
    assert next(iter(ev["activations_by_module"])).startswith("model.features.")
    savings = [r["saving_bytes"] for r in ev["remedies"]]
    assert savings == sorted(savings, reverse=True) and len(savings) == len(finding.suggestions)
    assert ev["remedies"][0]["remedy"] == "batch-and-accumulation" and ev["remedies"][0]["fits"]
    assert {r["remedy"] for r in ev["remedies"]} >= {"mixed-precision", "activation-checkpointing"}


def _measured_peak_with(setup, loss_of) -> float:
    """The steady-state peak of a fresh copy's step at the setup's batch, the step computed by ``loss_of``."""
    model = setup.model.__class__()
    optimizer = setup.optimizer(model.parameters())
    x, y = setup.train_data
    return measure_step(model, optimizer, (x.clone(), y.clone()), loss_of, batch_size=len(y), device=CPU).peak


def test_checkpointing_and_mixed_precision_estimates_match_doing_it(planted):
    setup, report = planted
    [finding] = report.by_code("RUN004")
    remedies = {r["remedy"]: r for r in finding.evidence["remedies"]}
    [advice] = [s for s in finding.suggestions if "checkpoint_sequential" in s]
    segments = int(re.search(r"segments=(\d+)", advice).group(1))

    def checkpointed(model, batch):
        features = checkpoint_sequential(model.features, segments, batch[0], use_reentrant=False)
        return setup.loss_fn(model.head(features.flatten(1)), batch[1])

    def autocast(model, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return setup.loss_fn(model(batch[0]), batch[1])

    assert remedies["activation-checkpointing"]["peak_bytes"] == pytest.approx(
        _measured_peak_with(setup, checkpointed), rel=0.15)
    assert remedies["mixed-precision"]["peak_bytes"] == pytest.approx(_measured_peak_with(setup, autocast), rel=0.15)


@pytest.mark.parametrize("full, largest, expected", [(64, 34, (32, 2)), (64, 24, (16, 4)), (97, 30, (25, 4)),
                                                     (64, 1, (1, 64))])
def test_micro_batch_keeps_the_effective_batch(full, largest, expected):
    assert _micro_batch(full, largest) == expected


def test_the_suggested_micro_batch_fits(planted):
    _setup, report = planted
    [finding] = report.by_code("RUN004")
    steps = math.ceil(64 / finding.evidence["largest_batch"])
    fixed = run_checked(large_images(IMAGE_BUDGET, batch_size=math.ceil(64 / steps)), select=["RUN004"])
    assert "RUN004" not in fixed.codes()


@pytest.mark.parametrize("batch", [64, 16], ids=["does-not-fit", "fits"])
def test_a_step_that_does_not_fit_stops_the_steps_that_run_the_model(batch):
    # the playbook's order: a model that does not run on its device is fixed first, in seconds, not minutes
    report = run_checked(large_images(IMAGE_BUDGET, batch_size=batch), select=["RUN004", "SHP002", "DAT001"])
    status = {c.name: (c.status, c.detail) for c in report.checks}
    assert status["data-scale"][0] == "passed"  # the data alone is still read
    if batch == 64:
        assert status["memory-fit"] == ("failed", "RUN004") and status["batch-independence"][0] == "skipped"
        assert "batch 64 does not fit" in status["batch-independence"][1] and "(RUN004)" in status["batch-independence"][1]
    else:
        assert "RUN004" not in report.codes() and status["batch-independence"][0] == "passed"


class DeviceWithRoomFor24(nn.Module):
    """Stands in for a GPU: raises the error CUDA raises when a batch of more than 24 samples arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 24:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fc(x)


def test_out_of_memory_crash_becomes_one_run004_with_the_batch_that_runs():
    torch.manual_seed(0)
    setup = nndoctor.Setup(model=DeviceWithRoomFor24(), train_data=(torch.randn(128, 64), torch.randint(0, 10, (128,))),
                           loss_fn=nn.CrossEntropyLoss())
    report = run_checked(setup, select=["RUN"])
    [finding] = [f for f in report.findings if f.code.startswith("RUN")]
    assert finding.code == "RUN004"
    assert finding.evidence["largest_batch"] == 24 and finding.evidence["largest_batch_verified"]
    assert "ran out of memory" in finding.message and "test_memory.py" in finding.message


def test_no_budget_on_cpu_skips_with_a_reason():
    setup = large_images(IMAGE_BUDGET, batch_size=8)
    setup.memory_budget = None
    report = run_checked(setup, select=["RUN004"])
    [record] = [c for c in report.checks if c.name == "memory-fit"]
    assert record.status == "skipped" and "--memory" in record.detail
    assert not report.findings


# ----- fake-tensor traces ------------------------------------------------------------------------------
def _mlp_and_batch(n: int = 256):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return model, (torch.randn(n, 64), torch.randint(0, 10, (n,)))


def test_traced_mlp_step_is_within_15_percent_of_the_measured_peak():
    model, batch = _mlp_and_batch()
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)  # noqa: E731
    fake = FakeStep(copy.deepcopy(model), adam, CPU)
    traced = [fake.trace(batch, 256, 256, cross_entropy_step) for _ in range(2)]  # a first and a steady step
    optimizer = adam(model)
    measured = [measure_step(model, optimizer, batch, cross_entropy_step, batch_size=256, device=CPU) for _ in range(2)]
    for t, m in zip(traced, measured):
        assert t.peak == pytest.approx(m.peak, rel=0.15)
        assert t.activations == m.activations and t.optimizer_state == m.optimizer_state


def test_traced_transient_peak_holds_parameters_gradients_and_optimizer_state():
    model, batch = _mlp_and_batch()
    fake = FakeStep(model, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), CPU)
    first = fake.trace(batch, 256, 256, cross_entropy_step)
    # the update of a first step holds the gradients and the state it creates, next to the parameters
    assert first.parameters + first.step_peak >= first.parameters + first.gradients + first.optimizer_state > 0
    assert first.peak >= first.parameters + first.gradients + first.optimizer_state


def test_traced_first_step_peak_matches_torchs_memtracker():
    """Reference: torch's own MemTracker (per-category live bytes under fake tensors) on one first step."""
    mem_tracker = pytest.importorskip("torch.distributed._tools.mem_tracker")
    model, batch = _mlp_and_batch()
    first = FakeStep(copy.deepcopy(model), lambda m: torch.optim.Adam(m.parameters()), CPU).trace(
        batch, 256, 256, cross_entropy_step)
    with FakeTensorMode():
        twin = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        optimizer = torch.optim.Adam(twin.parameters())
        x, y = torch.empty(256, 64), torch.zeros(256, dtype=torch.long)
        tracker = mem_tracker.MemTracker()
        tracker.track_external(twin, optimizer)
        with tracker:
            cross_entropy_step(twin, (x, y)).backward()
            optimizer.step()
    [total] = [snapshot["Total"] for snapshot in tracker.get_tracker_snapshot("peak").values()]
    assert first.parameters + max(first.forward_backward_peak, first.step_peak) == total


def test_a_trace_allocates_no_batch_and_leaves_the_real_model_alone():
    model, batch = _mlp_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fake = FakeStep(copy.deepcopy(model), lambda m: torch.optim.SGD(m.parameters(), lr=0.1), CPU)
    step = fake.trace(batch, 100_000, 256, cross_entropy_step)  # ~400 MiB of activations: shapes only
    assert step.inputs == 100_000 * (64 * 4 + 8) and step.activation_bytes > 100_000 * 512 * 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _forward_inputs(setup):
    """Record the inputs the model's copies are called with (hooks travel with the copies)."""
    seen: list[tuple[bool, int]] = []  # (fake, batch) of every forward that builds a graph (training forwards)
    setup.model.register_forward_pre_hook(
        lambda m, args: seen.append((isinstance(args[0], FakeTensor), args[0].shape[0])) if torch.is_grad_enabled()
        else None)
    return seen


@pytest.fixture(scope="module")
def wide():
    setup = wide_images(64)
    seen = _forward_inputs(setup)
    calls = []
    import nndoctor.checks.memory as memory_check

    real = memory_check.measure_step
    memory_check.measure_step = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        report = run_checked(setup, select=["RUN004"])
    finally:
        memory_check.measure_step = real
    return report, seen, calls


def test_128px_cnn_over_512mib_is_named_by_a_trace_without_a_real_step_at_full_size(wide):
    report, seen, measured_steps = wide
    [finding] = report.by_code("RUN004")
    ev = finding.evidence
    assert ev["method"] == "fake-trace" and not measured_steps
    budget = parse_size(WIDE_BUDGET)
    assert ev["peak_bytes"] > budget and ev["largest_batch_verified"]
    largest = ev["largest_batch"]
    assert ev["measured_peaks"][largest] <= budget < ev["measured_peaks"][largest + 1]
    assert finding.location.startswith("model.features")
    assert ev["activations_bytes"] > 0.5 * ev["peak_bytes"] and "Breakdown:" in finding.message
    # the only real training forward is step 1's (one-training-step); memory-fit's ran on fake tensors
    assert [n for fake, n in seen if not fake] == [64]
    assert {64, 32, largest, largest + 1} <= {n for fake, n in seen if fake}


def test_the_same_cnn_at_batch_32_is_silent_by_a_trace():
    report = run_checked(wide_images(32), select=["RUN004"])
    assert "RUN004" not in report.codes()
    memory = report.meta["extras"]["memory"]
    assert memory["method"] == "fake-trace" and memory["peak_bytes"] <= parse_size(WIDE_BUDGET)


class DataDependent(nn.Module):
    """Scales by a value read from the data (``.item()``): fake tensors have no values to read."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) / (1.0 + x.abs().max().item())


def test_a_step_fake_tensors_cannot_trace_is_measured_instead_and_says_so():
    torch.manual_seed(0)
    setup = nndoctor.Setup(model=DataDependent(), train_data=(torch.randn(512, 256), torch.randn(512, 256)),
                           loss_fn=nn.MSELoss(), batch_size=512, memory_budget="1MiB")
    report = run_checked(setup, select=["RUN004"])
    [finding] = report.by_code("RUN004")
    assert finding.evidence["method"] == "measured" and "fake tensors cannot trace" in finding.evidence["fallback"]
    assert "fake tensors cannot trace" in finding.message


TRANSFORMER_SETUP = """
    import torch
    from torch import nn
    import nndoctor

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(1000, 256)
            layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
            self.head = nn.Linear(256, 1000)

        def forward(self, tokens):
            return self.head(self.encoder(self.embed(tokens)))

    def setup():
        torch.manual_seed(0)
        tokens = torch.randint(0, 1000, (64, 64))
        return nndoctor.Setup(model=TinyLM(), train_data=(tokens, tokens), batch_size=64,
                              loss_fn=lambda logits, t: nn.functional.cross_entropy(logits.flatten(0, 1), t.flatten()),
                              optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
"""


def _lm_file(tmp_path):
    path = tmp_path / "lm.py"
    path.write_text(textwrap.dedent(TRANSFORMER_SETUP))
    return path


def _cli_check(tmp_path, *args):
    path = _lm_file(tmp_path)
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "nndoctor", "check", str(path), "--select", "RUN004",
                           "--json", str(out), *args], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(out.read_text())


@pytest.mark.slow  # the in-process --device cuda test covers the decision
def test_cli_device_cuda_24gb_on_a_cpu_machine_answers_for_a_transformer(tmp_path):
    doc = _cli_check(tmp_path, "--device", "cuda", "--memory", "24GB")
    assert not [f for f in doc["findings"] if f["code"] == "RUN004"]  # ~0.5 GiB plus margin: fits
    [record] = [c for c in doc["checks"] if c["name"] == "memory-fit"]
    assert record["status"] == "passed"


def test_device_cuda_gives_the_largest_batch_with_the_margin_stated(tmp_path):
    setup = load_setup(f"{_lm_file(tmp_path)}:setup")
    setup.device, setup.memory_budget = "cuda", parse_size("1GB")
    report = run_checked(setup, select=["RUN004"])
    [finding] = report.by_code("RUN004")
    ev = finding.evidence
    assert ev["device"] == "cuda" and ev["method"] == "fake-trace"
    assert ev["margin_bytes"] > CUDA_CONTEXT and "CUDA context" in finding.message
    if not torch.cuda.is_available():
        assert "cpu kernels" in ev["traced_with"]
    largest, budget = ev["largest_batch"], parse_size("1GB")
    assert 1 <= largest < 64 and ev["largest_batch_verified"]

    def with_margin(peak: int) -> float:
        return peak * 1.05 + (ev["margin_bytes"] - 0.05 * ev["peak_bytes"])

    assert with_margin(ev["measured_peaks"][largest]) <= budget < with_margin(ev["measured_peaks"][largest + 1])


def test_setup_device_must_name_a_torch_device():
    with pytest.raises(nndoctor.SetupError, match="torch device"):
        nndoctor.Setup(model=nn.Linear(2, 2), train_data=(torch.randn(4, 2), torch.randn(4, 2)),
                       loss_fn=nn.MSELoss(), device="tpu-of-dreams")
