"""Did-you-mean for the command line: a misspelt command (`lst`) or flag (`--dryrun`).

Apart from `arguments.py` so that a launch, which checks its flags, does not import argparse.
"""

from __future__ import annotations


def misspelt(word: str, choices: tuple[str, ...]) -> str | None:
    """The choice `word` is a misspelling of (`--dryrun`, `--Debug`, `--neded`, `lst`), or None.

    Compared without dashes and case, and closer than `difflib`'s default: `--seed` is a key, not
    a misspelt `--needed`.
    """
    import difflib

    def bare(text: str) -> str:
        return text.lstrip("-").lower().replace("_", "-")

    by_bare = {bare(choice): choice for choice in choices}
    close = difflib.get_close_matches(bare(word), list(by_bare), n=1, cutoff=0.75)
    return by_bare[close[0]] if close else None
