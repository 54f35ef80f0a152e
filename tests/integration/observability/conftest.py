"""The worker tests' in-process stack (API, simulator, worker, Postgres, SeaweedFS), reused as is."""

from tests.integration.worker.conftest import archive_stack as archive_stack
