"""The benchmark server with a slower paced stream, for the relay's callgrind pass.

Under callgrind a gateway runs ~50x slower: with the paced stream's 0.5 ms gap,
several chunks would wait for it in one read, and it would relay fewer, larger
writes than it does live. ``python -m benchmarks._relay_upstream --gap S [--port
N]`` runs `benchmarks._server` with the paced chunks ``S`` seconds apart instead,
so each still arrives in a read of its own; every answer is the same bytes.
"""

from __future__ import annotations

import argparse

from . import _server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._relay_upstream")
    parser.add_argument("--gap", type=float, required=True, help="seconds")
    args, rest = parser.parse_known_args(argv)
    # The server reads this global at each paced write; it is Final to its
    # readers, so it is set by name.
    setattr(_server, "PACED_GAP_S", args.gap)  # noqa: B010
    _server.main(rest)


if __name__ == "__main__":
    main()
