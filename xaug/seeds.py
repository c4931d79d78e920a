"""The one range of a seed, wherever one is read: flags (`--seed`, `--split-seed`), pipeline files,
ablation specs and training settings.

A seed is 0 to 2**32 - 1: what every generator the project seeds takes (numpy's legacy seeding
takes no more; torch's manual_seed overflowed above 2**64 with a traceback); a larger number is a
typo, not another stream.

    check_seed(7, "--seed")                 # 7
    seed: int = Field(0, ge=0, le=SEED_MAX)  # a spec's seed field
"""
from __future__ import annotations

from xaug.errors import BadInput

SEED_MAX = 2**32 - 1


def seed_problem(value) -> str | None:
    """What is wrong with `value` as a seed, or None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX:
        return None
    return f"must be 0 to 2**32 - 1, got {value}"


def check_seed(value, where: str) -> int:
    """`value` if it is a seed; else BadInput naming `where` (a flag or key)."""
    problem = seed_problem(value)
    if problem:
        raise BadInput(problem, where=where)
    return value
