"""Characters (`POST /v1/videos/characters`, `GET /v1/videos/characters/{id}`): made upstream from an uploaded
clip, owned by the caller that made them, known to callers by our own `char_` id only."""
