"""A nanoGPT-style character language model, written in the structure of karpathy/nanoGPT's train.py (not its
code): AdamW with decay / no-decay groups, a warm-up + cosine ``get_lr`` set into the param groups by hand each
iteration, gradient accumulation with loss / k, bf16 autocast with a disabled GradScaler (as nanoGPT does for
bf16), clipping after ``unscale_``, periodic evaluation in eval mode, ``torch.compile`` behind a flag.
Data: the source text of a standard-library module. A correct program: nndoctor must stay silent on it.

    python nanogpt_style.py [--compile] [--iters N] [--accum K] [--no-amp]
"""
import argparse
import inspect
import json.decoder
import math
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--compile", action="store_true")
parser.add_argument("--iters", type=int, default=60)
parser.add_argument("--accum", type=int, default=2)
parser.add_argument("--no-amp", action="store_true")
parser.add_argument("--device", default="cpu", help="cuda: nanoGPT's own setting (bf16 autocast, float16 + GradScaler "
                    "where bf16 is missing)")
args = parser.parse_args()
device_type = "cuda" if "cuda" in args.device else "cpu"
amp_dtype = torch.float16 if device_type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16

# -- config (tiny) ---------------------------------------------------------------------------------------------
block_size, batch_size, n_layer, n_head, n_embd, dropout = 32, 8, 2, 2, 32, 0.1
learning_rate, min_lr, warmup_iters, lr_decay_iters = 3e-3, 3e-4, 6, args.iters
weight_decay, beta1, beta2, grad_clip, eval_interval, eval_iters = 0.1, 0.9, 0.99, 1.0, 20, 2
torch.manual_seed(1337)

text = inspect.getsource(json.decoder)
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
train_data, val_data = data[:n], data[n:]


def get_batch(split):
    d = train_data if split == "train" else val_data
    ix = torch.randint(len(d) - block_size, (batch_size,))
    x, y = torch.stack([d[i:i + block_size] for i in ix]), torch.stack([d[i + 1:i + 1 + block_size] for i in ix])
    return x.to(args.device), y.to(args.device)


# -- model --------------------------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(n_embd, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(n_embd), CausalSelfAttention()
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block() for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]  # matrices and embeddings decay; biases and norms do not
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2))


model = GPT(len(chars)).to(args.device)
optimizer = model.configure_optimizers()
scaler = torch.amp.GradScaler(device_type, enabled=amp_dtype == torch.float16 and not args.no_amp)  # bf16 needs none
ctx = nullcontext() if args.no_amp else torch.autocast(device_type=device_type, dtype=amp_dtype)
raw_model = model
if args.compile:
    model = torch.compile(model)


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ("train", "val"):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split)
            with ctx:
                _, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean().item()
    model.train()
    return out


X, Y = get_batch("train")
for iter_num in range(args.iters + 1):
    lr = get_lr(iter_num)
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    if iter_num % eval_interval == 0:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
    if iter_num == args.iters:
        break
    for micro_step in range(args.accum):
        with ctx:
            _, loss = model(X, Y)
            loss = loss / args.accum
        X, Y = get_batch("train")  # prefetch the next batch, as nanoGPT does
        scaler.scale(loss).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
print("done", flush=True)
