"""SHP: tensor shapes that do not crash but silently compute the wrong thing."""
from nndoctor.catalogue import Code, Severity

E = Severity.ERROR

CODES = [
    Code(
        code="SHP001",
        name="silent-broadcast",
        severity=E,
        summary=("An elementwise op (typically in the loss) broadcast prediction and target of different shapes "
                 "into a larger tensor."),
        what="""
nndoctor traces every torch operation of the forward pass and the loss (a `TorchFunctionMode`, active
only while it checks) and looks for elementwise operations whose result is larger than each of their
inputs. It reports the ones where both inputs hold the same values per position and one of them has an
extra size-1 axis, so that implicit broadcasting pairs every element of one with every element of the
other: predictions `(N, 1)` minus targets `(N,)` give `(N, N)`. The finding names the op, the shapes,
the module (or `loss_fn`) and your source line. A batch of another size must show the same broadcast
at the same line, so a size that only happens to equal the batch size is not reported.

Broadcasts written on purpose stay silent: a bias `(N, D) + (D,)`, scaling by a scalar or a `(N, 1)`
mask, position embeddings `(1, T, D) + (N, T, D)`, attention masks, index grids
(`i[:, None] >= i`), and explicit outer products where both operands are given the same rank
(`a[:, None] - b[None, :]`) or come from one tensor (`x[:, None] - x`).
""",
        why="""
Nothing crashes: `nn.MSELoss` only prints a warning, a hand-written loss not even that. The loss
averages N x N differences between every prediction and every target, so the best the model can do is
predict the mean target. Training runs, the loss goes down a little and plateaus.
""",
        example="""
pred = model(x)                         # (N, 1)
loss = ((pred - y) ** 2).mean()         # y: (N,) -> (pred - y) is (N, N)
loss = nn.MSELoss()(pred, y)            # the same, with only a UserWarning
""",
        fix="""
Give both operands the same shape: `pred.squeeze(1)`, or keep the targets as `(N, 1)`
(`y.unsqueeze(1)`, `y.view_as(pred)`). Asserting `pred.shape == y.shape` before an elementwise loss
catches it for good.
""",
        ignore=("When the pairing of every element with every other is what you want and the operands differ in "
                "rank on purpose."),
    ),
    Code(
        code="SHP002",
        name="batch-mixing",
        severity=E,
        summary=("The output for one sample depends on other samples of the batch (a wrong view/reshape, "
                 "normalisation over the batch dimension)."),
        what="""
A copy of the model in eval mode (so batch-norm uses its running statistics and dropout is off) runs
on the first batch twice: as it is, and with one sample replaced by another sample of the batch. For a
correct model only that sample's outputs change. When other samples' outputs move beyond float
tolerance, the model mixes samples. Forward hooks compare every module's inputs and outputs between
the two runs; the finding names the first module whose output (or, when the mixing happens in code
between modules, the module whose forward did it) shows other samples moving, and how many moved.
In a live run (`nndoctor run`, the Monitor, the callbacks), a model holding an attention built with
`batch_first=False` (`nn.MultiheadAttention`, the `nn.Transformer*Layer`s) is replayed once at the end
on a copy with its last training batch: when the attention's axis 0 has the samples (the loss's targets
count) and replacing sample 0 moves the outputs of other samples, the finding names the attention
(`evidence.cause` = `architecture`).
""",
        why="""
A model that mixes samples learns from the wrong data (each row is a blend of several samples), its
predictions depend on what else is in the batch, and its evaluation changes with the batch size. With
`view`/`reshape` instead of `permute`/`transpose` the shapes are right and nothing crashes.
""",
        example="""
h = x.view(T, N, D)                      # x is (N, T, D): reinterprets memory, mixing samples
h, _ = self.lstm(h)                      # nn.LSTM without batch_first expects (T, N, D)

out = nn.LogSoftmax(dim=0)(logits)       # normalises over the batch, not over the classes
""",
        fix="""
Reorder axes with `x.transpose(0, 1)` or `x.permute(...)` (or use `batch_first=True`), apply softmax,
log-softmax and normalisations over the feature axis (`dim=1` or `dim=-1`), and reduce over the
right axis (`x.mean(dim=1)`, not `dim=0`).
""",
        ignore="""
When the model compares the samples of a batch on purpose (set models, in-batch attention) or uses
batch statistics in eval mode by design (batch-norm with `track_running_stats=False`; reported as a
warning).
""",
    ),
    Code(
        code="SHP003",
        name="key-padding-mask-inverted",
        severity=E,
        summary="An attention key_padding_mask of the wrong polarity: True on the real tokens, False on the padding.",
        what="""
PyTorch's `key_padding_mask` (nn.MultiheadAttention, nn.TransformerEncoder/Decoder and their layers) is
True (or -inf) where a key must be IGNORED. In a live run the first 4 training calls of
`F.multi_head_attention_forward` have their mask compared with the model's token ids: the padding is
where the tokens equal the embedding's `padding_idx` (without one, the single id filling every unmasked
position while the masked ones vary). A mask that is exactly the complement of the padding in every call
read is this finding, located at the line that called the model. `evidence.cause` = `preprocessing`: the
mask is built from the data with the convention of another library (Hugging Face's attention_mask is 1
on the real tokens).
""",
        why="""
Every query attends only to padding: the real tokens never reach each other, the model learns from the
padding's position pattern alone, and nothing crashes (a row with every key masked would give NaN; this
one always has the padding to attend to).
""",
        example="""
mask = tokens != PAD                     # True on the real tokens (the Hugging Face convention)
h = encoder(embed(tokens), src_key_padding_mask=mask)
""",
        fix="""
Pass `tokens == PAD` (True on the padding), or `~attention_mask` for a mask that is 1 on real tokens.
""",
        ignore="Never: no model wants to attend only to its padding.",
    ),
    Code(
        code="SHP004",
        name="future-token-leak",
        severity=E,
        summary="A next-token model sees the future: its prediction at position t depends on token t+1 (no causal mask).",
        what="""
In a live run, when the first training loss's targets are the model's input tokens shifted by one
(next-token prediction), a copy of the model (eval mode, no gradients, RNG restored) runs the first
training batch twice at the end of the run: as it was, and with only token t+1 changed (t = half the
sequence). If the outputs at positions 0..t move beyond float tolerance, each position can see the
tokens it must predict. Located at the model; `evidence.cause` = `leakage`.
""",
        why="""
Without a causal mask the model copies the next token from its input: the training loss falls far below
what next-token prediction allows, validation on the same pipeline looks as good, and generation (one
token at a time, with no future to copy) produces garbage.
""",
        example="""
h = self.encoder(self.embed(tokens))          # nn.TransformerEncoder without mask=/is_causal=
loss = F.cross_entropy(self.head(h)[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
""",
        fix="""
Give the attention a causal mask: `mask=nn.Transformer.generate_square_subsequent_mask(T)` with
`is_causal=True`, or `F.scaled_dot_product_attention(q, k, v, is_causal=True)`.
""",
        ignore="A bidirectional model trained on a shifted target on purpose is not next-token prediction; ignore it there.",
    ),
]
