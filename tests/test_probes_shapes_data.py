"""The SHP/DAT probes against slow, obvious references, and the promise that they leave nothing behind."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nndoctor.probes.broadcast import BroadcastTracer, broadcast_shape
from nndoctor.probes.data_stats import FirstLayers, NonFinite, feature_stats, row_digests, scan
from nndoctor.probes.sample_rows import SampleRows, moves_of_others

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)


@settings(max_examples=200, deadline=None)
@given(shapes, shapes)
def test_broadcast_shape_agrees_with_torch(a, b):
    try:
        expected = tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        expected = None
    assert broadcast_shape(a, b) == expected


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_tracer_records_cross_products_only_and_leaves_no_mode_or_hook():
    model = nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8)
    with BroadcastTracer(model) as tracer:
        pred = model(x)  # (8, 1): the bias add is not larger than its inputs
        _ = pred * 2.0 + torch.ones(1, 1)
        _ = ((pred - y) ** 2).mean()
    assert [(e.op, e.shapes, e.result) for e in tracer.events] == [("sub", ((8, 1), (8,)), (8, 8))]
    assert "test_probes_shapes_data.py:" in tracer.events[0].source
    assert "pred - y" in tracer.events[0].source_line
    assert _hooks(model) == 0
    assert not torch.overrides._get_current_function_mode_stack()


def test_sample_rows_matches_a_direct_comparison():
    torch.manual_seed(0)
    n = 6
    x = torch.randn(n, 5)
    swapped = x.clone()
    swapped[0] = x[3]
    for mixes in (False, True):
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh())

        def run(inputs):
            with SampleRows(model, n) as rows:
                out = model(inputs)
                out = out - out.mean(0) if mixes else out  # (N, 4)
            return rows.events, out

        (before, out_a), (after, out_b) = run(x), run(swapped)
        direct = (out_b - out_a)[1:].abs().amax(1) / out_a.abs().max()  # the reference, on the model's output
        probe = moves_of_others(before[-1].tensors[0], after[-1].tensors[0], 0)
        if mixes:  # the module's own output is per sample; the mixing happens after it
            assert torch.all(probe == 0) and torch.all(direct > 0)
        else:
            assert torch.allclose(probe, direct)
        assert _hooks(model) == 0


def test_pairwise_outputs_are_read_per_pair():
    n = 5
    z = torch.randn(n, 3)
    w = z.clone()
    w[2] = torch.randn(3)
    sim_a, sim_b = z @ z.T, w @ w.T  # (N, N): row and column 2 change, nothing else

    def rows(t):
        with SampleRows(nn.Identity(), n) as rec:
            rec.model(t)
        return rec.events[-1].tensors[0]

    assert torch.all(moves_of_others(rows(sim_a), rows(sim_b), 2) == 0)


def test_feature_stats_agree_with_numpy_and_skip_non_finite():
    x = torch.tensor([[1.0, 10.0], [3.0, float("nan")], [5.0, 30.0]])
    stats = feature_stats(x)
    assert np.allclose(stats.mean.numpy(), [3.0, 20.0])
    assert np.allclose(stats.std.numpy(), [np.std([1, 3, 5]), np.std([10, 30])])
    assert (stats.low, stats.high, stats.integer_valued, stats.tabular) == (1.0, 30.0, True, True)
    counts = NonFinite()
    counts.add(x)
    counts.add(torch.tensor([[float("inf"), float("nan")]]))
    assert (counts.nan, counts.inf, counts.rows, counts.samples) == (2, 1, 2, 4)
    assert counts.positions() == [(1, 2), (0, 1)]


def test_row_digests_equal_exactly_for_equal_samples():
    a = {"x": torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.5]]), "ids": torch.tensor([4, 4, 4])}
    d = row_digests(a)
    assert d[0] == d[1] != d[2]


def test_first_layers_sees_weights_and_norms_in_order_and_cleans_up():
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(3, 2, 2)
    with FirstLayers(model) as layers:
        model(x)
    assert [c.path for c in layers.calls] == ["1", "3"]
    assert layers.calls[0].inputs[0].untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert _hooks(model) == 0


def test_scan_keeps_a_sample_spread_over_everything_read():
    from nndoctor.data import DataSource

    y = torch.arange(10).repeat_interleave(500)  # 5000 samples sorted by class
    x = torch.stack([y.float(), torch.zeros(len(y))], 1)
    x[7, 1] = float("nan")
    found = scan(DataSource((x, y), batch_size=64), max_samples=300, seconds=60.0)
    inputs, targets = found.sample
    assert found.complete and found.read == 5000 and torch.equal(found.targets, y)
    assert len(targets) <= 300 and set(targets.tolist()) == set(range(10))  # not just the first classes
    assert torch.equal(inputs[:, 0].long(), targets)  # rows kept whole
    assert sum(found.digests.values()) == 5000 and len(found.digests) == 11  # 10 distinct rows + the NaN one
    assert found.non_finite["inputs"].nan == 1 and found.non_finite["targets"].total == 0
