"""Benchmarks outside pytest: kernel suites, the regression gate, load runs.

Every figure is paired with an anchor measured in the same run (a reference
implementation or a calibration loop), because on small shared machines only
ratios are stable from one run to the next.
"""
