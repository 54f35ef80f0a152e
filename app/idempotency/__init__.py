"""`Idempotency-Key` for POSTs that start a paid render: a retried request never buys a second render."""
