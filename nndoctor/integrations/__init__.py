"""Framework callbacks: thin adapters that translate a framework's events into Monitor events.

Each lives behind an optional extra and imports its framework only when imported itself.
"""
