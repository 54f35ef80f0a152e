"""Per-key request rates, concurrent renders, spend budgets and usage; keys and limits administration."""
