"""The signed webhook receiver: upstream `video.completed` / `video.failed` events, verified, stored once."""
