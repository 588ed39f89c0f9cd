"""Pairwise precision and recall of a grouping against the corpus's ground truth.

Ground truth: a failure's group is its bug, split by facet, because one bug can surface both as
a failed request and as a script error (a network failure and the error it causes are two
issues): truth = "<bug>/network" for network failures, "<bug>/script" otherwise. Over all pairs
of failures: precision = pairs grouped together that share a truth group / pairs grouped
together; recall = pairs that share a truth group and are grouped together / pairs that share
a truth group. A truth group is split when its failures land in more than one cluster, merged
when a cluster holds it and another truth group.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


@dataclass(frozen=True, slots=True)
class Score:
    """A grouping's pairwise scores."""

    precision: float
    recall: float
    clusters: int
    truth_groups: int
    failures: int
    split: tuple[str, ...]  # truth groups spread over more than one cluster
    merged: tuple[str, ...]  # truth groups sharing a cluster with another truth group


def score(labelled: Iterable[tuple[str, str]]) -> Score:
    """Score (cluster, truth) pairs, one per failure."""
    cells: Counter[tuple[str, str]] = Counter(labelled)
    pred: Counter[str] = Counter()
    true: Counter[str] = Counter()
    preds_of: defaultdict[str, set[str]] = defaultdict(set)
    truths_in: defaultdict[str, set[str]] = defaultdict(set)
    for (p, t), n in cells.items():
        pred[p] += n
        true[t] += n
        preds_of[t].add(p)
        truths_in[p].add(t)
    tp = sum(_pairs(n) for n in cells.values())
    pp = sum(_pairs(n) for n in pred.values())
    tt = sum(_pairs(n) for n in true.values())
    return Score(
        precision=tp / pp if pp else 1.0,
        recall=tp / tt if tt else 1.0,
        clusters=len(pred),
        truth_groups=len(true),
        failures=sum(true.values()),
        split=tuple(sorted(t for t, ps in preds_of.items() if len(ps) > 1)),
        merged=tuple(sorted({t for ts in truths_in.values() if len(ts) > 1 for t in ts})),
    )


@dataclass(frozen=True, slots=True)
class ClassScore:
    """Recall within the truth groups of one failure class."""

    name: str
    truth_groups: int
    recall: float
    split: tuple[str, ...]
    merged: tuple[str, ...]


def by_class(
    labelled: list[tuple[str, str]], classes: Mapping[str, tuple[str, ...]], overall: Score
) -> list[ClassScore]:
    """Per failure class (a bug may have several): recall among its truth groups, and which of
    them were split or merged."""
    per_truth: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for p, t in labelled:
        per_truth[t][p] += 1
    out: list[ClassScore] = []
    names = sorted({c for cs in classes.values() for c in cs})
    for name in names:
        groups = [t for t in per_truth if name in classes.get(t.partition("/")[0], ())]
        if not groups:
            continue
        tt = sum(_pairs(sum(per_truth[t].values())) for t in groups)
        tp = sum(_pairs(n) for t in groups for n in per_truth[t].values())
        out.append(
            ClassScore(
                name=name,
                truth_groups=len(groups),
                recall=tp / tt if tt else 1.0,
                split=tuple(t for t in overall.split if t in groups),
                merged=tuple(t for t in overall.merged if t in groups),
            )
        )
    return out
