"""OFB: overfitting a single batch (step 3 of the playbook)."""
from nndoctor.catalogue import Code, Severity

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO

CODES = [
    Code(
        code="OFB000",
        name="overfit-ok",
        severity=I,
        summary="The model overfits a single batch (info, with steps taken).",
        what="""
nndoctor trained a copy of the model with your optimizer on one fixed batch (the first batch, at most
64 samples) and the task's error on that batch reached (near) zero and stayed there: at most 2% of
labels wrong for classification, an MSE of at most 5% of the targets' variance for regression, or the
loss at 5% of its start when you give a custom `step`. The finding gives the steps it took, the loss
and error curves, and a learning-rate range test: 30-step runs at your learning rate times powers of
ten on the same batch, widened until the best has a worse rate on each side, the range that makes
fast stable progress, where training becomes unstable, and a suggestion (your own rate when it is in
the range) that is only made once it reaches the goal when trained to the end.
""",
        why="""
A model that can fit one batch can represent the task and its gradients flow; bugs in the loss, the
optimizer or the architecture usually show here first. The range test's suggestion is deterministic
for a seed and is checked by training with it, unlike finders that read the slope of one noisy run.
""",
        example="""
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
nndoctor.check(Setup(model=model, train_data=loader, loss_fn=nn.CrossEntropyLoss()))
# OFB000: overfits one batch of 64 samples in 55 steps; range test: 1e-3 to 1e-2, suggested 1e-2
""",
        fix="Nothing to fix. The learning-rate range is measured on one batch: for full training, stay at or below it.",
        ignore="It is information only.",
    ),
    Code(
        code="OFB001",
        name="error-goes-up",
        severity=E,
        summary="Error rises while overfitting one batch: a flipped sign in loss or gradient.",
        what="""
Training on one fixed batch made the task's error worse (nndoctor measures the error itself, with
cross-entropy, binary cross-entropy or MSE on your outputs and targets, so a loss that falls while the
error rises shows). Confirmed from the start weights: one step of your optimizer climbs the task loss
(its update has a positive inner product with the task loss's gradient, and the loss measured after
the step is higher), while a step of the same length down the task loss's gradient lowers it. The
message says which sign is flipped: the loss (its gradient points against the task's: `-criterion`)
or the optimizer (its update climbs its own loss: `maximize=True`, a negative learning rate, or a
hand-written update that adds the gradient).
""",
        why="Training optimises the opposite of what you want: the longer it runs, the worse the model gets.",
        example="""
loss_fn = lambda out, y: -nn.functional.cross_entropy(out, y)      # negated loss
optimizer = lambda p: torch.optim.Adam(p, lr=1e-3, maximize=True)  # or: ascent
""",
        fix="""
Minimise the loss itself: remove the minus sign; remove `maximize=True`; a hand-written update must
subtract the gradient (`p -= lr * p.grad`). nndoctor reruns the batch with the sign flipped to show
the fix works.
""",
        ignore="Never, unless you really mean to maximise (then your loss should not be the task's loss).",
    ),
    Code(
        code="OFB002",
        name="error-explodes",
        severity=E,
        summary="Error explodes: a numerical issue or a learning rate far too high.",
        what="""
While training on one batch the loss became NaN/Inf or climbed to ten times its start. nndoctor then
trains copies with your learning rate 10x and 100x lower (and the range test's suggestion): if one
reaches the goal and stays there, it is the learning rate and the message shows both curves; if none
does, the other changes of the differential diagnosis (OFB004) run, and the one that reaches the goal
is the cause (e.g. raw inputs standardised: `preprocessing`); if none does, it is a numerical problem
and the message points to the NUM (and DAT002) findings. A loss that is NaN/Inf at the first step,
before any update, is never the learning rate.
""",
        why="An exploding run destroys the weights (dead ReLUs, NaN parameters); nothing after it learns.",
        example="""
optimizer = lambda p: torch.optim.SGD(p, lr=10)
""",
        fix="""
Lower the learning rate to the confirmed value (or add warm-up or gradient clipping); for a
numerical cause, use stable formulations (`log_softmax`, `logsumexp`, `BCEWithLogitsLoss`) and
normalise the inputs.
""",
        ignore="Never: the run is destroyed.",
    ),
    Code(
        code="OFB003",
        name="error-oscillates",
        severity=W,
        summary="Error oscillates: learning rate too high, or shuffled labels / bad augmentation.",
        what="""
On one fixed batch the loss fell and climbed back by at least 30% of its start, or touched the goal
and left it again, or crept up although each step points downhill, instead of converging. nndoctor
confirms that your learning rate 10x or 100x lower reaches the goal and stays there, and reads the
same samples of your dataset twice: different targets mean labels drawn anew on every read; different
inputs mean random augmentation, so a real single-batch run would chase a moving target. When no
lower rate settles it, the other changes of the differential diagnosis (OFB004) run; the one that
reaches the goal is the cause (dropout 0.9 under momentum: `regularisation`), with severity error.
""",
        why="Steps overshoot the minimum; training is slow, noisy and may end far from where it could.",
        example="""
optimizer = lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.99)
""",
        fix="""
Lower the learning rate (or the momentum) to the value the message confirms; make labels a fixed
property of each sample; turn augmentation off to overfit a batch.
""",
        ignore="When you deliberately train with a cyclical or very large learning rate schedule.",
    ),
    Code(
        code="OFB004",
        name="error-plateaus",
        severity=W,
        summary="Error plateaus: learning rate too low, too much regularisation, or a broken loss/data pipeline.",
        what="""
On one fixed batch the error did not reach the goal: it plateaus (its second half brought less than
2% of its start), or it is still falling but more than 4x the goal after 500 steps. nndoctor then
runs a differential diagnosis (checks/diagnosis.py): one change at a time on copies, same batch, seed
and step budget, most likely first: the mechanical fixes of earlier findings (a softmax before
cross-entropy removed, LOS001), raw targets/inputs standardised, then standardised with the learning
rate retuned by a range test on the standardised copy (targets at 3000 +- 30 under SGD: neither change
alone gets there), the learning rate from a range test over 1e-7..10, the optimizer rebuilt over the
model's own parameters (when no parameter moved), default re-initialisation (constant weights), the
output activation removed, no weight decay, no dropout, a width-1/2 bottleneck widened. The first
change that reaches the goal is the cause: `evidence.cause`, `evidence.verified_fix` (before/after)
and severity error; one that only leaves at most a quarter of the final error counts when no later
one reaches the goal. If none does, the message lists each change ruled out, with its numbers. A
descent nearly at the goal when time runs out is info.
""",
        why="""
If a model cannot memorise 64 samples, it will not learn the whole data set: something stops the
weights from moving (a tiny learning rate, weight decay pulling them to zero) or the loss does not
measure what you think.
""",
        example="""
optimizer = lambda p: torch.optim.Adam(p, lr=1e-7)
optimizer = lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=10)
""",
        fix="Apply the change the message confirms (e.g. raise the learning rate to the suggested value).",
        ignore="When heavy regularisation is intended and you do not need the model to fit its training data.",
    ),
    Code(
        code="OFB005",
        name="lr-schedule-collapse",
        severity=W,
        summary="A learning-rate scheduler written for epochs is stepped every batch: the LR collapses and training stalls (live).",
        what="""
A decaying scheduler (StepLR, MultiStepLR, ExponentialLR, ...) reached many times its step_size or its
last milestone within the run, because `scheduler.step()` sits inside the batch loop: the learning rate
fell below 1/100 of its start and the loss stopped improving after it did. The message quotes the
scheduler's class and creation line, how many times it stepped per optimizer step, the LR trajectory and
the loss before and after the collapse. With the LR below 1e-3 of its start and the loss stalled it is
an error; a collapse without a measured stall is not reported.
""",
        why="""
The schedule was tuned in epochs: stepped per batch it decays hundreds of times faster, the learning
rate reaches ~0 in the first epoch and the rest of the run changes nothing.
""",
        example="""
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
for epoch in range(90):
    for x, y in loader:
        loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
        scheduler.step()          # every batch: 0.1x every 30 batches
""",
        fix="Call `scheduler.step()` once per epoch (after the batch loop), or express step_size/milestones in batches.",
        ignore="When a decay to ~0 within the run is intended (then the stall is the point).",
    ),
    Code(
        code="OFB006",
        name="scheduler-before-optimizer",
        severity=Severity.INFO,
        summary="scheduler.step() is called before optimizer.step(): the first value of the schedule is skipped (live).",
        what="""
The first `scheduler.step()` of an optimizer came before its first `optimizer.step()` (PyTorch warns
about it too). Since PyTorch 1.1 the scheduler must step after the optimizer; in the old order the
first learning rate of the schedule is never used. nndoctor names the scheduler's creation line and
the line of the early step. Info: the harm is one skipped value unless the schedule is short.
""",
        why="""
A warm-up that starts one step further along, or a step decay that comes one step early: usually
harmless, but in a short schedule a skipped value is a whole phase.
""",
        example="""
for x, y in loader:
    scheduler.step()
    loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
""",
        fix="Call `scheduler.step()` after `optimizer.step()`.",
        ignore="When the skipped first value does not matter (a long schedule).",
    ),
    Code(
        code="OFB007",
        name="complicated-pipeline",
        severity=Severity.INFO,
        summary="The data pipeline is complicated before the model works (random augmentation, worker processes, heavy loading); a warning when augmentation is what stops overfitting.",
        what="""
The playbook's advice is to build complicated data pipelines later. nndoctor reads the same training
samples twice (random augmentation gives different inputs), looks at the DataLoader's `num_workers`,
and times loading a sample against training on it; any of these is reported as info in the overfit
step. With augmentation it also overfits the same samples read once and read afresh at every step
(same copy, seed and step budget): when the fixed read reaches the goal and the augmented one stays
at least twice as far from it, augmentation is what stops the model, and it is a warning with both
errors.
""",
        why="""
While a model does not learn, every moving part is a suspect: augmentation can destroy the signal (a
crop that cuts the object, noise larger than the features), worker processes turn errors into hangs
or opaque crashes, and slow loading makes every experiment slow. A pipeline added after the model
works can be debugged one piece at a time.
""",
        example="""
class Noisy(Dataset):
    def __getitem__(self, i):
        return self.x[i] + 2.0 * torch.randn_like(self.x[i]), self.y[i]   # noise larger than the signal
loader = DataLoader(Noisy(x, y), batch_size=64, shuffle=True, num_workers=8)
""",
        fix="""
Get the model working on a plain in-memory pipeline (`num_workers=0`, no augmentation, data
pre-processed once into tensors), then add augmentation and workers back one at a time.
""",
        ignore="When the model already works and the pipeline is there on purpose.",
    ),
]
