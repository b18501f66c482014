"""`expyrun ui [DIR] [--port P]`: the runs viewer (SPEC 11.3).

The server (`expyrun.ui.server`) is imported only once the arguments are read, so this module
costs nothing to the other commands.
"""

from __future__ import annotations

from pathlib import Path

from expyrun.commands.arguments import CommandParser


def main(args: list[str]) -> int:
    """Serve the runs viewer of DIR until Ctrl-C."""
    parser = CommandParser(prog="expyrun ui")
    parser.add_argument("dir", nargs="?", default=".", help="the folder holding the runs (default: .)")
    parser.add_argument("--port", type=int, help="first port to try (default 8080)")
    options = parser.parse_args(args)
    from expyrun.ui.server import serve

    return serve(Path(options.dir), options.port)
