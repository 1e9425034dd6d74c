"""LOS: incorrect input to the loss."""
from nndoctor.catalogue import Code, Severity

CODES = [
    Code(
        code="LOS001",
        name="probabilities-to-logit-loss",
        severity=Severity.ERROR,
        summary="Softmax/sigmoid outputs fed to a loss that expects logits (CrossEntropyLoss, BCEWithLogitsLoss).",
        what="""
The model's outputs are already probabilities (rows in [0, 1] summing to 1, or every value in
(0, 1)) and they go to a loss that applies softmax or sigmoid itself. nndoctor names the final
module (or line) that produced them.
""",
        why="""
Softmax is applied twice: the loss can only move within a narrow range, gradients shrink, and the
model trains slowly to a mediocre accuracy without any error.
""",
        example="""
model = nn.Sequential(nn.Linear(64, 10), nn.Softmax(dim=1))
loss = nn.CrossEntropyLoss()(model(x), y)
""",
        fix="""
Remove the final `nn.Softmax`/`nn.Sigmoid`: `CrossEntropyLoss` and `BCEWithLogitsLoss` take raw
logits. Apply softmax only when you need probabilities at inference time.
""",
        ignore="Never for CrossEntropyLoss or BCEWithLogitsLoss.",
    ),
    Code(
        code="LOS002",
        name="not-log-probabilities",
        severity=Severity.ERROR,
        summary="A loss that expects log-probabilities (NLLLoss, KLDivLoss) gets logits or probabilities.",
        what="""
`NLLLoss` and `KLDivLoss` expect log-probabilities (values <= 0 whose exp sums to 1 per row). The
inputs are raw logits or probabilities instead.
""",
        why="NLLLoss on logits is minimised by making one logit huge, not by learning the classes: the loss is meaningless.",
        example="""
model = nn.Sequential(nn.Linear(64, 10))
loss = nn.NLLLoss()(model(x), y)
""",
        fix="Add `nn.LogSoftmax(dim=1)` as the last layer, or use `CrossEntropyLoss` on the logits.",
        ignore="Never: the loss does not measure what you think it measures.",
    ),
    Code(
        code="LOS003",
        name="loss-task-mismatch",
        severity=Severity.ERROR,
        summary="The loss or the output activation does not fit the targets.",
        what="""
The loss or the output activation cannot represent the targets: MSE on class indices,
cross-entropy on continuous targets, BCE on multi-class indices, a sigmoid output for regression
targets outside (0, 1), a ReLU right before a logits loss, softmax over a single unit.
""",
        why="The model optimises something other than the task; it may train and still be useless.",
        example="""
model = nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())
loss = nn.MSELoss()(model(x), house_prices)      # targets in the hundreds of thousands
""",
        fix="""
Match loss and output to the targets: CrossEntropyLoss with one logit per class for class indices,
MSE/L1 with a linear output for regression, BCEWithLogitsLoss with one logit per label for binary
or multi-label targets.
""",
        ignore="Rarely; e.g. a deliberate ordinal regression on class indices.",
    ),
    Code(
        code="LOS004",
        name="bad-initial-loss",
        severity=Severity.WARNING,
        summary="The untrained model's loss is far from what it should be (e.g. ln(C) for C classes).",
        what="""
Before training, a well-initialised model predicts roughly uniform classes, so its cross-entropy is
about ln(C) (the entropy of the class frequencies); for MSE it is about the target variance. The
measured initial loss is far from that.
""",
        why="""
A far-off initial loss points to a bad initialisation, an output scale bug, a wrong loss reduction
or mis-scaled targets, and costs the first part of training.
""",
        example="""
head = nn.Linear(128, 10); nn.init.normal_(head.weight, std=10.0)   # huge logits: loss ~ 40 instead of 2.3
""",
        fix="Use the default initialisation (or scale the last layer down), check the loss's reduction and the target scale.",
        ignore="For pretrained models, whose initial loss should be lower than chance.",
    ),
]
