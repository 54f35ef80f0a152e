"""The shortest honest pipe: httpx streaming a URL straight into boto3 `upload_fileobj`.

The baseline of the archive benchmarks, run as its own process (`python -m bench.pipe`) so its peak RSS is
its own: the same upstream URL, the same bucket and the same transfer settings as the worker (part size,
parts in flight), and nothing else (no database, no hashing, no checks). With several URLs it moves them on
a thread pool of `--threads`, as a worker runs several jobs at once. `--follow-redirects` follows a
download's redirect (the Gemini API's file URI answers 302 to its file host), as the gateway does. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import httpx
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


class IterReader:
    """A non-seekable file-like `read(n)` over an iterator of byte chunks (what upload_fileobj needs)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            self._buffer += b"".join(self._chunks)
            out = bytes(self._buffer)
            self._buffer.clear()
            return out
        while len(self._buffer) < size and not self._eof:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._eof = True
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--prefix", default="pipe")
    parser.add_argument("--part-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True, help="parts in flight per upload")
    parser.add_argument("--threads", type=int, default=1, help="uploads at once")
    parser.add_argument("--bearer", default="")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', sent with every GET")
    parser.add_argument("--follow-redirects", action="store_true", help="follow the upstream's redirects")
    parser.add_argument("--urls-file", help="one URL per line (instead of --url)")
    parser.add_argument("--url", action="append", default=[])
    args = parser.parse_args(argv)
    urls = list(args.url)
    if args.urls_file:
        with open(args.urls_file) as handle:
            urls += [line.strip() for line in handle if line.strip()]

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="us-east-1",
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        config=Config(max_pool_connections=max(10, args.threads * args.concurrency)),
    )
    transfer = TransferConfig(
        multipart_threshold=args.part_size,
        multipart_chunksize=args.part_size,
        max_concurrency=args.concurrency,
        use_threads=args.concurrency > 1,
    )
    headers = {"authorization": f"Bearer {args.bearer}"} if args.bearer else {}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with httpx.Client(
        timeout=httpx.Timeout(600.0),
        headers=headers,
        limits=httpx.Limits(max_connections=args.threads),
        follow_redirects=args.follow_redirects,
    ) as client:

        def move(url: str) -> int:
            with client.stream("GET", url) as response:
                response.raise_for_status()
                size = int(response.headers["content-length"])
                key = f"{args.prefix}/{uuid.uuid4().hex}"
                s3.upload_fileobj(IterReader(response.iter_bytes()), args.bucket, key, Config=transfer)  # type: ignore[arg-type]  # read(n) is all it uses
            return size

        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            total = sum(pool.map(move, urls))
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(
        json.dumps(
            {
                "bytes": total,
                "objects": len(urls),
                "seconds": seconds,
                "mb_per_s": total / seconds / 1e6,
                "peak_rss_mib": rss,
                "rss_before_mib": rss_before,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
