"""What a tag is, for `__run__.__tags__` (checked with the config, before anything is created) and
`expyrun tag` (`track/annotations.py`): one rule in the lowest layer both can import."""

from __future__ import annotations

import re
from typing import Any

from expyrun.errors import ConfigError, UsageError

_TAG = re.compile(r"[^\s,+\-][^\s,]*")
HINT = "a tag is one word without spaces or commas, not starting with + or -, such as best or lr-0.1"


def check_tag(tag: Any) -> str:
    """`tag` when it is one word (no spaces or commas) not starting with `+` or `-` (add/remove)."""
    if not isinstance(tag, str) or _TAG.fullmatch(tag) is None:
        raise UsageError(f"`{tag}`: not a tag", HINT)
    return tag


def check_launch_tags(value: Any, where: str) -> tuple[str, ...]:
    """`__run__.__tags__`: a list of tags (or one tag, or null for none)."""
    tags = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags):
        raise ConfigError(f"{where}: `__run__.__tags__` must be a list of tags, got {value!r}", HINT)
    return tuple(tags)
