"""Per-key request rates, concurrent renders, spend budgets and usage, and their administration."""
