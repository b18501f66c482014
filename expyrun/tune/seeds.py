"""The seeds of a seeded sampler (`sampler: {name: ..., seed: S}`) in each launch and trial worker.

Why not S everywhere: every launch builds its own sampler, so a resumed study, or N launches (or
`workers`) sharing it, would each replay S's sequence and propose the points already tried; and a
trial worker's own sampler (for `expyrun.trial().suggest_*()` inside the trial) would replay the
draws of the study process. So S names a family of streams, one per use, derived from S alone:

- a launch's sampler: S itself for the launch that asks for the study's first trial (a fresh study
  then proposes exactly what plain Optuna does with S), else `derive(S, "launch", N)` where N is the
  number of the first new trial this launch asks for. N is unique to the launch (trials are numbered
  under the study's lock), stays the same when the same commands are run again, and needs neither a
  worker index nor coordination between workers or Slurm array tasks (a requeued task asks at another
  number, so it never replays itself either);
- the sampler a trial worker uses for suggestions made inside trial N: `derive(S, "in-trial", N)`.

Samplers whose seed names one sequence shared by every process (QMCSampler: each trial takes the
next point of one scrambled sequence, counted in the storage) keep S.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SHARED_SEED = ("QMCSampler",)  # the seed names one sequence that every process walks along


def given_seed(section: dict[str, Any]) -> int | None:
    """The integer `seed` of a `sampler` section; None when there is none (nothing to derive)."""
    seed = section.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def derive(seed: int, *parts: str | int) -> int:
    """A seed for one use of `seed`, the same on every machine and Python (not `hash()`), below 2**32
    (NumPy's RandomState takes no more)."""
    digest = hashlib.sha256(json.dumps([seed, *parts]).encode("ascii")).digest()
    return int.from_bytes(digest[:4], "big")


def launch_seed(section: dict[str, Any], first_number: int) -> int | None:
    """The seed of the sampler of a launch whose first new trial is number `first_number`."""
    seed = given_seed(section)
    if seed is None or first_number == 0 or section.get("name") in SHARED_SEED:
        return seed
    return derive(seed, "launch", first_number)


def in_trial_seed(section: dict[str, Any], number: int) -> int | None:
    """The seed of a trial worker's sampler for what trial `number` suggests itself."""
    seed = given_seed(section)
    return None if seed is None else derive(seed, "in-trial", number)


def seeded(section: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """The `sampler` section with `seed`; a shared-seed sampler keeps its seed and gets an
    independent sampler seeded with `seed` for the parameters outside its sequence."""
    if seed is None or seed == given_seed(section):
        return section
    if section.get("name") in SHARED_SEED:
        import optuna

        return {**section, "independent_sampler": optuna.samplers.RandomSampler(seed=seed)}
    return {**section, "seed": seed}
