"""The archive: every finished asset streamed to S3 inside its download window, tracked in Postgres."""
