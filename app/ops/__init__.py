"""Operator tooling: the `status`, `replay`, `reconcile` and `webhooks` commands."""
