"""Attention and sequences in a live run: an attention built batch_first=False fed (batch, sequence,
embedding) mixes the samples (SHP002 at the attention); the twin built batch_first=True is silent."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nndoctor


class SeqClassifier(nn.Module):
    def __init__(self, batch_first: bool, layer: str):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        if layer == "encoder":
            self.mix = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1, batch_first=batch_first)
        else:
            self.mix = nn.MultiheadAttention(16, 2, batch_first=batch_first)
        self.layer = layer
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        h = self.embed(tokens)  # (batch, sequence, embedding)
        h = self.mix(h) if self.layer == "encoder" else self.mix(h, h, h, need_weights=False)[0]
        return self.head(h.mean(1))


def _train(model: nn.Module, steps: int = 6) -> nndoctor.Report:
    torch.manual_seed(0)
    tokens, y = torch.randint(0, 50, (64, 12)), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for i in range(steps):
            b = slice((i * 16) % 64, (i * 16) % 64 + 16)
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens[b]), y[b]).backward()
            opt.step()
    return mon.report()


@pytest.mark.parametrize("layer", ["attention", "encoder"])
def test_seq_first_attention_fed_batch_first_is_shp002(layer):
    torch.manual_seed(0)
    (finding,) = _train(SeqClassifier(batch_first=False, layer=layer)).by_code("SHP002")
    assert finding.location == ("model.mix" if layer == "attention" else "model.mix.self_attn")
    assert finding.evidence["cause"] == "architecture" and finding.evidence["other_samples_moved"] >= 10
    assert finding.evidence["query_shape"] == [16, 12, 16]


@pytest.mark.parametrize("layer", ["attention", "encoder"])
def test_batch_first_attention_is_silent(layer):
    torch.manual_seed(0)
    report = _train(SeqClassifier(batch_first=True, layer=layer))
    assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


def test_seq_first_attention_fed_sequence_first_is_silent():
    """The pre-2020 layout done right: (sequence, batch, embedding) into batch_first=False."""
    class SeqFirst(SeqClassifier):
        def forward(self, tokens):
            h = self.embed(tokens).transpose(0, 1)  # (sequence, batch, embedding)
            return self.head(self.mix(h).mean(0))

    torch.manual_seed(0)
    report = _train(SeqFirst(batch_first=False, layer="encoder"))
    assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


class SquareRows(nn.Module):
    """Rows of a flattened 4x4 image as a sequence: 16 features per sample, a batch of 16 samples."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.embed, self.head = nn.Linear(4, 16), nn.Linear(16, 3)
        self.mix = nn.MultiheadAttention(16, 2, batch_first=batch_first)

    def forward(self, v):
        h = self.embed(v.view(-1, 4, 4))  # (batch, 4 rows, embedding)
        return self.head(self.mix(h, h, h, need_weights=False)[0].mean(1))


def _train_square(model: nn.Module) -> nndoctor.Report:
    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for i in range(4):
            b = slice(i * 16, i * 16 + 16)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return mon.report()


@pytest.mark.parametrize("batch_first", [False, True])
def test_an_input_as_wide_as_the_batch_is_still_judged_by_the_attention_query(batch_first):
    # the input is (16, 16): its axis 1 has the batch's size too; the attention's query (16, 4, 16) decides
    report = _train_square(SquareRows(batch_first))
    if batch_first:
        assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []
    else:
        (finding,) = report.by_code("SHP002")
        assert finding.location == "model.mix" and finding.evidence["query_shape"] == [16, 4, 16]


def test_sequence_first_done_right_with_as_many_steps_as_samples_is_silent():
    class SeqFirstSquare(SeqClassifier):  # 16 tokens per sequence, 16 sequences per batch
        def forward(self, tokens):
            return self.head(self.mix(self.embed(tokens).transpose(0, 1)).mean(0))

    torch.manual_seed(0)
    model = SeqFirstSquare(batch_first=False, layer="encoder")
    tokens, y = torch.randint(0, 50, (64, 16)), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for i in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens[i * 16:][:16]), y[i * 16:][:16]).backward()
            opt.step()
    assert [f.code for f in mon.report().findings if f.severity.value in ("error", "warning")] == []


# ----- padding: key-padding-mask polarity (SHP003), padded targets in the loss (LOS005) -----------------------
PAD = 0


def _padded_tokens(n: int = 32, length: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 40, (n, length), generator=g)
    lengths = torch.randint(4, length, (n,), generator=g)
    tokens[torch.arange(length)[None, :] >= lengths[:, None]] = PAD
    return tokens


class Encoder(nn.Module):
    def __init__(self, inverted: bool, padding_idx: int | None = PAD):
        super().__init__()
        self.inverted = inverted
        self.embed = nn.Embedding(40, 16, padding_idx=padding_idx)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 1,
                                         enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        mask = tokens != PAD if self.inverted else tokens == PAD  # True = ignore this key
        return self.head(self.enc(self.embed(tokens), src_key_padding_mask=mask)[:, 0])


@pytest.mark.parametrize("padding_idx", [PAD, None], ids=["padding_idx", "inferred-pad"])
@pytest.mark.parametrize("inverted", [True, False], ids=["planted", "fixed"])
def test_key_padding_mask_polarity(inverted, padding_idx):
    torch.manual_seed(0)
    tokens, y = _padded_tokens(), torch.randint(0, 3, (32,))
    model = Encoder(inverted, padding_idx)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens), y).backward()
            opt.step()
    report = mon.report()
    if inverted:
        (finding,) = report.by_code("SHP003")
        assert "test_live_sequences.py:" in finding.location and finding.evidence["cause"] == "preprocessing"
        assert finding.evidence["pad_id"] == PAD
    else:
        assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 16, padding_idx=PAD)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 40)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


@pytest.mark.parametrize("ignore", [False, True], ids=["planted", "fixed"])
def test_padded_targets_in_a_language_model_loss(ignore):
    torch.manual_seed(0)
    tokens = _padded_tokens()
    model = TinyLM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD) if ignore else nn.CrossEntropyLoss()
    with nndoctor.Monitor() as mon:
        for _ in range(4):
            opt.zero_grad()
            logits = model(tokens[:, :-1])
            loss_fn(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1)).backward()
            opt.step()
    report = mon.report()
    if not ignore:
        (finding,) = report.by_code("LOS005")
        assert "test_live_sequences.py:" in finding.location and finding.evidence["cause"] == "loss"
        assert 0.1 < finding.evidence["padded_target_share"] < 0.6 and finding.evidence["padded_loss_share"] > 0.05
    else:
        assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []



class Tagger(nn.Module):
    """One label per token (a tagger): the padded positions are known from the input, not from the labels."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 16, padding_idx=PAD)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


@pytest.mark.parametrize("ignored", [False, True], ids=["planted", "fixed"])
def test_labels_at_padded_positions_of_a_tagger(ignored):
    torch.manual_seed(0)
    tokens = _padded_tokens()
    labels = tokens % 5  # padded positions get label 0: a real class, unless set to ignore_index
    if ignored:
        labels[tokens == PAD] = -100
    model = Tagger()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(model(tokens).reshape(-1, 5), labels.reshape(-1)).backward()
            opt.step()
    report = mon.report()
    if not ignored:
        (finding,) = report.by_code("LOS005")
        assert finding.evidence["kind"] == "position" and finding.evidence["cause"] == "loss"
        assert "test_live_sequences.py:" in finding.location and 0.1 < finding.evidence["padded_target_share"] < 0.6
    else:
        assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


# ----- a causal language model without its causal mask (SHP004) -----------------------------------------------
class CausalLM(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(40, 16)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True), 1,
                                         enable_nested_tensor=False)
        self.head = nn.Linear(16, 40)

    def forward(self, tokens):
        T = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T) if self.causal else None
        return self.head(self.enc(self.embed(tokens), mask=mask, is_causal=self.causal))


@pytest.mark.parametrize("causal", [False, True], ids=["planted", "fixed"])
def test_next_token_model_without_causal_mask(causal):
    torch.manual_seed(0)
    data = torch.randint(0, 40, (32, 13))
    model = CausalLM(causal)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with nndoctor.Monitor() as mon:
        for _ in range(4):
            opt.zero_grad()
            x, y = data[:, :-1], data[:, 1:]
            nn.functional.cross_entropy(model(x).reshape(-1, 40), y.reshape(-1)).backward()
            opt.step()
    report = mon.report()
    if not causal:
        (finding,) = report.by_code("SHP004")
        assert finding.location == "model" and finding.evidence["cause"] == "leakage"
    else:
        assert [f.code for f in report.findings if f.severity.value in ("error", "warning")] == []


# ----- through the real CLI, on an unmodified script: planted bugs and the fixed twin -------------------------
CLI_CASES = [(["--batch-first", "--pad-in-loss", "--no-causal"],
              {"SHP002": "model.attn", "LOS005": "sequence_bugs.py:", "SHP004": "model"}),
             (["--inverted-mask"], {"SHP003": "sequence_bugs.py:"}),
             ([], {})]


@pytest.mark.parametrize("flags,expected", CLI_CASES, ids=["three-bugs", "inverted-mask", "fixed"])
def test_sequence_bugs_through_the_cli(tmp_path, flags, expected):
    import json
    import os

    from test_cli import nndoctor as cli

    path = tmp_path / "r.json"
    cli("run", "--json", str(path), os.path.join(os.path.dirname(__file__), "scripts", "sequence_bugs.py"), *flags)
    loud = {f["code"]: f for f in json.loads(path.read_text())["findings"] if f["severity"] in ("error", "warning")}
    assert set(loud) == set(expected)
    for code, where in expected.items():
        assert where in loud[code]["location"] and loud[code]["evidence"]["cause"]
