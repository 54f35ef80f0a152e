"""The worker's process does not load what only the API, the simulators or the image derivation need: FastAPI,
Starlette and uvicorn (about 25 MiB of resident memory) and PyAV with its FFmpeg libraries (about 20 MiB, loaded
on the first derived image). Measured in bench/ (the archive benchmark's peak RSS); this keeps the import graph
that makes it so."""

from __future__ import annotations

import subprocess
import sys

HEAVY_FOR_A_WORKER = ("fastapi", "starlette", "uvicorn", "av")


def loaded_after(statement: str) -> set[str]:
    probe = f"import sys\n{statement}\nprint(' '.join(sorted({{name.split('.')[0] for name in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_video_gateway_worker_loads_neither_the_web_stack_nor_pyav() -> None:
    # What `video-gateway worker` imports before it runs: the CLI module, then the worker's process module.
    loaded = loaded_after("import app.cli\nfrom app.archive.process import run_worker")
    assert not loaded & set(HEAVY_FOR_A_WORKER), sorted(loaded & set(HEAVY_FOR_A_WORKER))


def test_the_probe_sees_them_where_they_are_used() -> None:
    # The same probe on the API's module: a probe that saw nothing would pass the test above for nothing.
    assert {"fastapi", "starlette"} <= loaded_after("import app.main")
