"""The person-grouped k-fold split a source dataset records (stratified by sex when known)."""
from __future__ import annotations

from typing import Any

from xaug.layout import PersonMeta

SPLIT_METHOD = "sklearn.StratifiedGroupKFold"


def person_folds(persons: list[str], meta: dict[str, PersonMeta], k: int = 5, seed: int = 0,
                 val_fold: int = 0) -> dict[str, Any]:
    """Assign every person of the train split to one of k folds; both hands stay together.

    Stratified by sex when the sheet gives it for every person (as the seed team balanced it).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    people = sorted(set(persons))
    k_eff = max(2, min(k, len(people))) if len(people) >= 2 else 1
    stratify = "sex" if people and all(meta.get(p) and meta[p].sex for p in people) else None
    if stratify and min(sum(1 for p in people if meta[p].sex == s) for s in ("M", "F")) < k_eff:
        stratify = None  # too few persons of one sex for k stratified folds
    folds: dict[str, int] = {}
    if k_eff == 1:
        folds = {p: 0 for p in people}
    else:
        y = [(meta[p].sex if stratify else "-") for p in people]
        splitter = StratifiedGroupKFold(n_splits=k_eff, shuffle=True, random_state=seed)
        for fold, (_, idx) in enumerate(splitter.split(people, y, groups=people)):
            for i in idx:
                folds[people[i]] = fold
    return {"method": SPLIT_METHOD, "k": k_eff, "seed": seed, "val_fold": val_fold if k_eff > 1 else None,
            "stratify": stratify, "folds": folds}
