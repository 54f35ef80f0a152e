"""The operator console at `/console`: server-rendered pages over the gateway's tables, behind the admin key."""
