"""Training the learned cloud classifier on labelled patches (needs ``pip install 'musyq[train]'``).

LightGBM fits the trees; they are then written as the flat arrays :mod:`musyq.ard.cloudmodel` reads,
so the shipped models carry no LightGBM dependency. Thin and thick cloud are one class, as the
quality layer has one cloud code; shadows are found from the clouds by geometry, not learnt.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
from numpy.typing import NDArray

from musyq.ard.cloudmodel import GROUP_BANDS, TreeModel, features
from musyq.core.errors import MusyqError
from musyq.ard.labelled import LabelledPatch
from musyq.io.output import CLOUD, FILL

PIXELS_PER_PATCH = 20_000
PATCH_PIXEL_SIZE = 30.0
TREES = 20
PARAMETERS: dict[str, Any] = {
    "objective": "binary", "num_leaves": 15, "learning_rate": 0.4, "min_data_in_leaf": 300, "bagging_fraction": 0.7,
    "bagging_freq": 1, "feature_fraction": 0.7, "deterministic": True, "force_row_wise": True, "num_threads": 2,
    "verbose": -1,
}


def training_samples(patches: Sequence[LabelledPatch], groups: tuple[str, ...], seed: int = 0,
                     per_patch: int = PIXELS_PER_PATCH) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Features and cloud labels of an even random sample of every patch's labelled pixels."""
    rng = np.random.default_rng(seed)
    rows: list[NDArray[np.float32]] = []
    labels: list[NDArray[np.bool_]] = []
    for patch in patches:
        if "thermal" in groups and patch.temperature is None:
            raise MusyqError(f"{patch.name}: a thermal model needs patches with a brightness temperature band")
        planes = features({n: patch.bands[n] for g in groups for n in GROUP_BANDS[g]}, patch.temperature,
                          PATCH_PIXEL_SIZE, groups)
        labelled = np.flatnonzero(patch.labels.ravel() != FILL)
        pick = rng.choice(labelled, min(per_patch, labelled.size), replace=False)
        rows.append(planes.reshape(planes.shape[0], -1)[:, pick].T)
        labels.append(patch.labels.ravel()[pick] == CLOUD)
    return np.concatenate(rows), np.concatenate(labels)


def _flatten(tree: dict[str, Any], nodes: list[tuple[int, float, int, int, float]]) -> int:
    """Append a LightGBM tree's nodes (depth first) and return its root's index."""
    index = len(nodes)
    if "leaf_value" in tree:
        nodes.append((-1, 0.0, -1, -1, float(tree["leaf_value"])))
        return index
    if tree.get("decision_type", "<=") != "<=":
        raise MusyqError(f"unsupported split {tree['decision_type']!r} in the trained trees")
    nodes.append((int(tree["split_feature"]), float(tree["threshold"]), -1, -1, 0.0))
    left = _flatten(tree["left_child"], nodes)
    right = _flatten(tree["right_child"], nodes)
    feature, threshold, _, _, _ = nodes[index]
    nodes[index] = (feature, threshold, left, right, 0.0)
    return index


def fit_trees(samples: NDArray[np.float32], labels: NDArray[np.bool_], seed: int = 0) -> Any:
    """The LightGBM booster (its own API: no scikit-learn needed) for cloud / not-cloud."""
    try:
        import lightgbm
    except ImportError:
        raise MusyqError("training a cloud model needs LightGBM: pip install 'musyq[train]'") from None
    data = lightgbm.Dataset(samples, label=labels.astype(np.float32))
    return lightgbm.train({**PARAMETERS, "seed": seed}, data, num_boost_round=TREES)


def train(patches: Sequence[LabelledPatch], groups: tuple[str, ...], seed: int = 0) -> TreeModel:
    """A cloud / not-cloud tree ensemble on the band groups ``groups``, from the patches' labels."""
    samples, labels = training_samples(patches, groups, seed)
    dump = fit_trees(samples, labels, seed).dump_model()
    nodes: list[tuple[int, float, int, int, float]] = []
    roots = [_flatten(tree["tree_structure"], nodes) for tree in dump["tree_info"]]
    feature, threshold, left, right, value = zip(*nodes, strict=True)
    # thresholds are compared in float32, the precision of the features: round each down so that a
    # value LightGBM sent left (at most the float64 threshold) still goes left
    thresholds = np.array(threshold, dtype=np.float64)
    rounded = thresholds.astype(np.float32)
    rounded = np.where(rounded.astype(np.float64) > thresholds, np.nextafter(rounded, np.float32(-np.inf)), rounded)
    info = {"trained_on": sorted(p.name for p in patches), "pixels": int(labels.size),
            "cloud_share": round(float(labels.mean()), 4), "seed": seed, "trees": TREES, "parameters": PARAMETERS,
            "lightgbm": version("lightgbm")}
    return TreeModel(groups, np.array(feature, dtype=np.int32), rounded.astype(np.float32),
                     np.array(left, dtype=np.int32), np.array(right, dtype=np.int32),
                     np.array(value, dtype=np.float32), np.array(roots, dtype=np.int32), info)
