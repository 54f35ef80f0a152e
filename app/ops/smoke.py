"""`video-gateway smoke --profile NAME`: one short render on one upstream profile, end to end, step by step.

For an operator with a real key who wants to know, before pointing callers at it, that a profile works: it
checks the request the way the facade would, creates one render through the profile's adapter, polls it
until it ends, downloads the MP4 and prints its size and SHA-256. It uses no database, S3 or worker, and
costs one real render on a real provider. The test suite runs it only against the simulators.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Annotated

import typer

from app.core.config import DEFAULT_PROFILE, Settings, get_settings
from app.core.errors import GatewayError
from app.upstream.router import build_adapter
from app.upstream.schemas import CreateVideoCommand

DEFAULT_PROMPT = "A paper boat drifting across a calm pond at sunrise"
TERMINAL = ("completed", "failed")


async def run_smoke(
    settings: Settings,
    *,
    profile: str,
    model: str,
    seconds: str,
    size: str,
    prompt: str,
    out: Path,
    poll_seconds: float,
    timeout_seconds: float,
) -> bool:
    """True when the render completed and its MP4 was saved; every step is printed as it happens."""
    try:
        upstream = settings.upstream_profile(profile)
    except KeyError:
        typer.echo(f"no upstream profile named {profile!r} (configured: {', '.join(['default', *settings.upstreams])})")
        return False
    adapter = build_adapter(upstream, profile=profile, transport=None, allow_http=settings.is_dev)
    command = CreateVideoCommand(prompt=prompt, model=model, seconds=seconds, size=size)
    started = time.monotonic()
    try:
        typer.echo(
            f"1/4 check: {model} on profile {profile!r} ({upstream.kind}, {upstream.base_url}), {seconds} s, {size}"
        )
        adapter.check_create(command)
        typer.echo("2/4 create: submitting one render (this is billed by the provider)")
        video = await adapter.create_video(command)
        typer.echo(f"    upstream id {video.id}, status {video.status}")
        while video.status not in TERMINAL:
            if time.monotonic() - started > timeout_seconds:
                typer.echo(
                    f"3/4 poll: still {video.status} after {timeout_seconds:.0f} s; giving up (the render goes on)"
                )
                return False
            await asyncio.sleep(poll_seconds)
            video = await adapter.retrieve_video(video.id)
            progress = "" if video.progress is None else f" {video.progress}%"
            typer.echo(f"3/4 poll: {video.status}{progress} after {time.monotonic() - started:.0f} s")
        if video.status == "failed":
            error = video.error
            typer.echo(f"    failed: {error.code if error else '?'}: {error.message if error else ''}")
            return False
        typer.echo(f"4/4 download: the MP4 to {out}")
        digest = hashlib.sha256()
        size_bytes = 0
        async with adapter.stream_content(video.id, variant="video") as response:
            with out.open("wb") as file:
                async for chunk in response.aiter_raw(1024 * 1024):
                    digest.update(chunk)
                    size_bytes += len(chunk)
                    file.write(chunk)
        typer.echo(f"    {size_bytes} bytes, sha256 {digest.hexdigest()}, in {time.monotonic() - started:.0f} s")
        return size_bytes > 0
    except GatewayError as exc:
        typer.echo(f"    refused: HTTP {exc.status_code} {exc.code or ''}: {exc.message}")
        return False
    finally:
        await adapter.aclose()


def smoke(
    profile: Annotated[str, typer.Option(help="The upstream profile to try (see VG_UPSTREAMS).")] = DEFAULT_PROFILE,
    model: Annotated[str, typer.Option(help="A model that profile renders.")] = "veo-3.1-fast-generate-preview",
    seconds: Annotated[str, typer.Option(help="Video length, as the facade takes it.")] = "4",
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT, as the facade takes it.")] = "1280x720",
    prompt: Annotated[str, typer.Option(help="What to render.")] = DEFAULT_PROMPT,
    out: Annotated[Path, typer.Option(help="Where the MP4 goes.")] = Path("smoke.mp4"),
    poll_seconds: Annotated[float, typer.Option(help="Seconds between polls.")] = 5.0,
    timeout_seconds: Annotated[float, typer.Option(help="Give up polling after this long.")] = 600.0,
) -> None:
    """One real render on one profile, printed step by step (costs one render at the provider)."""
    ok = asyncio.run(
        run_smoke(
            get_settings(),
            profile=profile,
            model=model,
            seconds=seconds,
            size=size,
            prompt=prompt,
            out=out,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )
    )
    raise typer.Exit(0 if ok else 1)
