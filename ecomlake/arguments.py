"""argparse value types shared by the subcommands: a bad value is a usage error naming what is allowed."""

from __future__ import annotations

import argparse
import math


def whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


def number(*, allow_zero: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {'>= 0' if allow_zero else '> 0'}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
positive_float = number(allow_zero=False)
non_negative_float = number(allow_zero=True)
