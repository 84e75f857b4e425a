"""The whole-pipeline runners, the top layer: the `ecomlake` command, the embedded demo and the benchmarks.

They may import every stage; nothing below imports them (docs/architecture.md).
"""
