"""A compiled classifier on random data; `--softmax` ends the model in nn.Softmax before CrossEntropyLoss
(the bug: LOS001), without it the same program is correct. `--inductor` compiles for real (a C++ build)."""
import sys

import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.randn(512, 20), torch.randint(0, 4, (512,))
layers = [nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4)]
if "--softmax" in sys.argv:
    layers.append(nn.Softmax(dim=1))
model = torch.compile(nn.Sequential(*layers), backend="inductor" if "--inductor" in sys.argv else "eager")
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(4):
    for i in range(0, 512, 64):
        opt.zero_grad()
        loss = loss_fn(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        opt.step()
