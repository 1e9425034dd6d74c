"""Simple baselines fitted with scikit-learn on the user's own data: majority class / mean, a linear
model and nearest neighbours, on flattened inputs (token ids become a bag of tokens).

Only measures: each baseline's predictions on the evaluation samples, in the form of
``scoring.target_labels``, or the reason it was skipped.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sparse
import torch

from nndoctor.data import index, tensors_in

MAX_TRAIN = 2000  # samples the baselines are fitted on (subsampled for speed)
MAX_FEATURES = 4096  # wider inputs (images) are randomly projected down to PROJECTED features
PROJECTED = 1024


@dataclass
class Baseline:
    name: str  # "majority class", "logistic regression", ...
    kind: str  # majority | linear | neighbours
    predictions: np.ndarray | None = None  # on the evaluation samples
    skipped: str = ""  # why it did not run
    seconds: float = 0.0


@dataclass
class Features:
    train: Any  # (N, D) dense array or sparse matrix
    eval: Any
    description: str  # how inputs became features
    token_ids: bool  # some inputs are token ids: distances between them mean nothing


def is_token_ids(t: torch.Tensor) -> bool:
    """Integer sequences with values beyond 0/1: ids into an embedding, not quantities."""
    return not t.is_floating_point() and t.dtype != torch.bool and t.ndim >= 2 and t.numel() > 0 and int(t.max()) > 1


def features(train_inputs: Any, eval_inputs: Any) -> Features:
    """Flattened inputs as (samples, features); token ids as bag-of-tokens counts; wide inputs projected."""
    train_leaves, eval_leaves = tensors_in(train_inputs), tensors_in(eval_inputs)
    n_train = len(train_leaves[0])
    blocks, parts, token_ids = [], [], False
    for tr, ev in zip(train_leaves, eval_leaves):
        both = torch.cat([tr.detach().cpu(), ev.detach().cpu()])  # one vocabulary / layout for both splits
        if is_token_ids(both):
            token_ids = True
            blocks.append(_bag_of_tokens(both))
            parts.append(f"bag of tokens over {tuple(tr.shape[1:])} ids")
        else:
            blocks.append(both.reshape(len(both), -1).float().numpy())
            parts.append(f"{int(np.prod(tr.shape[1:]))} flattened values")
    matrix = sparse.hstack(blocks, format="csr") if any(sparse.issparse(b) for b in blocks) else np.hstack(blocks)
    train, eval_ = matrix[:n_train], matrix[n_train:]
    if not sparse.issparse(matrix) and matrix.shape[1] > MAX_FEATURES:
        from sklearn.random_projection import SparseRandomProjection

        projection = SparseRandomProjection(n_components=PROJECTED, random_state=0).fit(train)
        train, eval_ = projection.transform(train), projection.transform(eval_)
        parts.append(f"randomly projected to {PROJECTED} features")
    return Features(train, eval_, "; ".join(parts), token_ids)


def _bag_of_tokens(ids: torch.Tensor) -> sparse.csr_matrix:
    flat = ids.reshape(len(ids), -1).long().numpy()  # (N, T)
    rows = np.repeat(np.arange(len(flat)), flat.shape[1])
    vocab = int(flat.max()) + 1
    return sparse.csr_matrix((np.ones(flat.size), (rows, flat.ravel().clip(0))), shape=(len(flat), vocab))


def fit_baselines(kind: str, train_inputs: Any, y_train: np.ndarray, eval_inputs: Any, seed: int = 0,
                  max_train: int = MAX_TRAIN) -> tuple[list[Baseline], str]:
    """Majority/mean, linear and nearest-neighbour baselines fitted on at most ``max_train`` samples,
    with their predictions on ``eval_inputs``, and a description of the features they saw."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = np.sort(np.random.default_rng(seed).permutation(len(y_train))[:max_train])
    feats = features(index(train_inputs, torch.from_numpy(rows)), eval_inputs)
    x, y = feats.train, y_train[rows]
    if kind == "regression":
        y = y if y.shape[1] > 1 else y.ravel()
    def scaled(model: Any) -> Any:
        return make_pipeline(StandardScaler(with_mean=not sparse.issparse(x)), model)

    bag = " (bag of tokens)" if feats.token_ids else ""
    if kind == "regression":
        candidates = [("mean", "majority", DummyRegressor(strategy="mean")),
                      (f"ridge regression{bag}", "linear", scaled(RidgeCV(alphas=np.logspace(-3, 3, 7)))),
                      ("5-nearest neighbours", "neighbours", scaled(KNeighborsRegressor(5)))]
    else:
        linear = LogisticRegression(max_iter=300)
        candidates = [("majority class", "majority", DummyClassifier(strategy="most_frequent")),
                      (f"logistic regression{bag}", "linear",
                       scaled(MultiOutputClassifier(linear) if kind == "multilabel" else linear)),
                      ("5-nearest neighbours", "neighbours", scaled(KNeighborsClassifier(5)))]
    baselines = []
    for name, role, model in candidates:
        if role == "neighbours" and feats.token_ids:
            baselines.append(Baseline(name, role, skipped="the inputs are token ids: distances between id "
                                                          "sequences mean nothing"))
            continue
        start = time.monotonic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: a baseline only needs to be decent
                predicted = model.fit(x, y).predict(feats.eval)
        except ValueError as exc:  # e.g. one class only in a multilabel column
            baselines.append(Baseline(name, role, skipped=str(exc).splitlines()[0][:200]))
            continue
        predicted = np.asarray(predicted).reshape(feats.eval.shape[0], -1)
        baselines.append(Baseline(name, role, predicted if kind in ("regression", "multilabel") else predicted.ravel(),
                                  seconds=time.monotonic() - start))
    return baselines, feats.description
