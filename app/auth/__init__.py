"""Who is calling: callers and their API keys, the admin key, and the administration of both (admin API, `keys` CLI)."""
