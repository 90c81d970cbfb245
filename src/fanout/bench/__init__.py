"""The benchmark harness behind ``fanout bench`` and ``make bench`` (see ``runner``)."""

from fanout.bench.runner import run

__all__ = ["run"]
