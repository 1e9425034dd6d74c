"""Probes: instruments that only measure (hooks, tracers, statistics). No verdicts here.

Every probe is a context manager that leaves no hook, flag or RNG change behind.
"""
