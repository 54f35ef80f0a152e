"""Signed callbacks to internal services when a video is archived, fails, or its archive fails."""
