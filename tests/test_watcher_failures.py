"""The hub reads every watcher once per step; a watcher that raises is switched off, never the user's step."""
import torch
from torch import nn
from nndoctor.probes.watchers.base import Watcher, read_step

class Boom(Watcher):
    name = "boom"
    def reads(self, optimizer):
        raise AssertionError("unsupported tensor")

def test_a_watcher_that_raises_is_switched_off_not_the_users_step():
    w = Boom(run=None)
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    read_step([w], opt)
    read_step([w], opt)
    assert w.failed == "AssertionError: unsupported tensor"
