"""argparse value types shared by every command: comma lists of ints (with ranges) and strings."""

from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    """'0,3,5' or ranges like '0-99' (inclusive), or both: '0-2,7'."""
    values: list[int] = []
    try:
        for part in text.replace(",", " ").split():
            first, sep, last = part.partition("-")
            if sep and first:
                if int(last) < int(first):
                    raise ValueError(part)
                values += range(int(first), int(last) + 1)
            else:
                values.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers or ranges like '0,3,5' or '0-99', got {text!r}"
        ) from None
    return values


def str_list(text: str) -> list[str]:
    return [x for x in text.replace(",", " ").split() if x]
