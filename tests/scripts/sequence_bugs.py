"""Three tiny sequence models trained on random tokens. Flags plant one bug each; without flags the same
program is correct: --batch-first (an attention built batch_first=False fed (batch, seq, emb): SHP002),
--inverted-mask (key_padding_mask True on the real tokens: SHP003), --pad-in-loss (padded targets without
ignore_index: LOS005), --no-causal (a next-token model without its causal mask: SHP004)."""
import sys

import torch
from torch import nn

PAD, V = 0, 40
bug = set(sys.argv[1:])
torch.manual_seed(0)
tokens = torch.randint(1, V, (32, 12))
lengths = torch.randint(5, 12, (32,))
tokens[torch.arange(12)[None, :] >= lengths[:, None]] = PAD
labels = torch.randint(0, 3, (32,))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, 16, padding_idx=PAD)
        self.attn = nn.MultiheadAttention(16, 2, batch_first="--batch-first" not in bug)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x)
        ignore = x != PAD if "--inverted-mask" in bug else x == PAD
        h = self.attn(h, h, h, key_padding_mask=None if "--batch-first" in bug else ignore, need_weights=False)[0]
        return self.head(h.mean(1))


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, 16, padding_idx=PAD)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(16, V)

    def forward(self, x):
        causal = "--no-causal" not in bug
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if causal else None
        return self.head(self.enc(self.embed(x), mask=mask, is_causal=causal))


clf, lm = Classifier(), LM()
opt = torch.optim.AdamW([*clf.parameters(), *lm.parameters()], lr=1e-3)
lm_loss = nn.CrossEntropyLoss() if "--pad-in-loss" in bug else nn.CrossEntropyLoss(ignore_index=PAD)
for step in range(6):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(clf(tokens), labels)
    x, y = tokens[:, :-1], tokens[:, 1:]
    loss = loss + lm_loss(lm(x).reshape(-1, V), y.reshape(-1))
    loss.backward()
    opt.step()
