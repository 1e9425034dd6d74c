"""The Keras loss path (integrations/keras.py): a compiled loss with ``from_logits=True`` after a last layer
that already applies softmax/sigmoid (LOS001). Keras's own losses run on the torch backend through
``keras.ops``, not ``torch.nn.functional``, so the live loss-input watcher cannot see them: the compiled
loss and the model's last activation say it directly."""
from __future__ import annotations

from typing import Any

from nndoctor.findings import Finding

SQUASHING = {"softmax", "sigmoid"}
LOGITS_WANTED = {"categorical_crossentropy": "softmax", "sparse_categorical_crossentropy": "softmax",
                 "binary_crossentropy": "sigmoid", "categorical_focal_crossentropy": "softmax",
                 "binary_focal_crossentropy": "sigmoid"}


def _losses(model: Any) -> list[Any]:
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        return list(loss.values())
    return list(loss) if isinstance(loss, (list, tuple)) else [loss]


def _last_activation(model: Any) -> tuple[str, str]:
    layers = getattr(model, "layers", None) or []
    for layer in reversed(layers):
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", "")
        if name and name != "linear":
            return name, layer.name
        if act is not None or getattr(layer, "weights", None):  # a layer with weights and a linear output
            return "", ""
    return "", ""


def judge_compiled_loss(model: Any) -> list[Finding]:
    out = []
    activation, layer = _last_activation(model)
    if activation not in SQUASHING:
        return out
    for loss in _losses(model):
        config = loss.get_config() if hasattr(loss, "get_config") else {}
        if not config.get("from_logits"):
            continue
        kind = config.get("name", type(loss).__name__)
        cls = type(loss).__name__
        out.append(Finding(
            "LOS001", f"The compiled loss {cls}(from_logits=True) applies {LOGITS_WANTED.get(kind, activation)} to "
            f"the model's output itself, but the last layer `{layer}` already ends in {activation}: the loss sees "
            f"probabilities squashed twice, its floor is far above 0 and the gradients are squashed.",
            location=f"model.{layer}", evidence={"loss": cls, "from_logits": True, "activation": activation,
                                                  "cause": "activation"},
            suggestions=[f"Either drop activation='{activation}' from `{layer}` (keep from_logits=True), or keep it "
                         "and compile the loss with from_logits=False."]))
    return out
