"""`video-gateway worker`: one worker process, its resources, and its signal handling.

SIGTERM or SIGINT once: stop claiming and finish in-flight work within the grace period, then release
what is left. A second signal: exit at once (the leases lapse and other workers take the jobs over).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import structlog

from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.archive.worker import Worker
from app.core import metrics
from app.core.config import Settings
from app.core.db import Database
from app.upstream.router import UpstreamRouter

logger = logging.getLogger(__name__)

FORCED_EXIT_CODE = 130


async def run_worker(settings: Settings) -> None:
    database = Database.connect(settings.db)
    upstreams = UpstreamRouter(settings)
    storage = ArchiveStorage(settings.s3)
    stop_metrics = metrics.serve(settings.worker.metrics_port)
    try:
        await storage.ensure_bucket()
        worker = Worker(JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage))
        structlog.contextvars.bind_contextvars(worker_id=worker.worker_id)
        signals_seen = 0

        def on_signal() -> None:
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen == 1:
                worker.request_stop()
            else:
                logger.warning("second stop signal: exiting now with %d job(s) in flight", worker.in_flight)
                os._exit(FORCED_EXIT_CODE)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await worker.run()
    finally:
        if stop_metrics is not None:
            await asyncio.to_thread(stop_metrics)
        await upstreams.aclose()
        storage.close()
        await database.dispose()
