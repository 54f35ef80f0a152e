"""Thumbnail and spritesheet derived from a real MP4 (rendered by the simulator), and the ranged reader under it.

S3 is an in-memory fake here, serving `Range` requests from bytes and counting them; the real server is in
tests/integration/archive/test_derive_s3.py. The simulator draws a yellow ball that moves left to right over
the video, so where the ball is in a derived image tells which frame it shows.
"""

from __future__ import annotations

import io
import math
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import av
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from PIL import Image

from app.archive import derive
from app.archive.derive import DerivationFailed, derive_image, spritesheet_from, thumbnail_from
from app.archive.storage import ArchiveStorage, RangedObjectReader, StorageError, looks_like
from app.core.config import S3Settings
from app.models.asset import Variant
from app.simulator import render
from app.simulator.render import RenderJob, render_assets
from tests.support.videos import frame_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KIB = 1024
ETAG = '"0123456789abcdef"'


@dataclass(frozen=True)
class Rendered:
    job: RenderJob
    mp4: bytes
    thumbnail: Image.Image  # the simulator's own, drawn from the same frames
    spritesheet: Image.Image


def rendered(directory: Path, job: RenderJob) -> Rendered:
    render_assets(job, directory, lambda: False)
    return Rendered(
        job=job,
        mp4=(directory / render.VIDEO_FILE).read_bytes(),
        thumbnail=Image.open(directory / render.THUMBNAIL_FILE).convert("RGB"),
        spritesheet=Image.open(directory / render.SPRITESHEET_FILE).convert("RGB"),
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """2 s at 12 fps: 24 frames, so the grid has all 16 tiles."""
    job = RenderJob(prompt="a ball crossing a field", width=320, height=180, seconds=2, fps=12)
    return rendered(tmp_path_factory.mktemp("video"), job)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """5 frames: fewer than 16 tiles, so the grid is 4 + 1."""
    job = RenderJob(prompt="short", width=96, height=64, seconds=1, fps=5)
    return rendered(tmp_path_factory.mktemp("short"), job)


@pytest.fixture(scope="module")
def larger_video(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """~45 KB of media: more than FFmpeg reads through when skipping ahead, so reaching `moov` takes a seek."""
    job = RenderJob(prompt="a larger ball", width=640, height=360, seconds=3, fps=24)
    return rendered(tmp_path_factory.mktemp("larger"), job)


@pytest.fixture(scope="module")
def short_gops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Rendered, bytes]:
    """The simulator's render of a 96-frame video, and the same frames encoded with a keyframe every 8."""
    job = RenderJob(prompt="many keyframes", width=640, height=360, seconds=4, fps=24)
    directory = tmp_path_factory.mktemp("gops")
    return rendered(directory, job), encode_with_short_gops(job, directory / "gops.mp4", gop=8)


def encode_with_short_gops(job: RenderJob, path: Path, *, gop: int) -> bytes:
    """The simulator's frames of `job`, encoded with a keyframe every `gop` frames (the simulator uses x264's
    default of 250, so its videos are one GOP and every frame needs all those before it)."""
    painter = render.FramePainter(job)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=job.fps)
        stream.width, stream.height, stream.pix_fmt = job.width, job.height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for index in range(job.frame_count):
            frame = frame_of(painter.frame(index))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def noise_mp4(*, frames: int, gop: int, size: tuple[int, int] = (160, 96)) -> bytes:
    """Frames of random noise, a keyframe every `gop`: every frame costs about the same bytes (no ball here)."""
    rng = random.Random(11)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for _ in range(frames):
            image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
            for packet in stream.encode(frame_of(image)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def top_level_boxes(mp4: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level box."""
    boxes, offset = [], 0
    while offset < len(mp4):
        size, kind = struct.unpack(">I4s", mp4[offset : offset + 8])
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def faststart_copy(mp4: bytes, directory: Path) -> bytes:
    """The same packets remuxed with `moov` moved to the front (what `-movflags faststart` writes)."""
    path = directory / "faststart.mp4"
    with (
        av.open(io.BytesIO(mp4), mode="r", format="mp4") as source,
        av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return path.read_bytes()


def ball_centre(image: Image.Image) -> tuple[float, float]:
    """Centre of the simulator's ball (fill (255, 200, 40)): the only saturated yellow in a frame."""
    rgb = image.convert("RGB")
    width, raw = rgb.width, rgb.tobytes()  # r, g, b bytes, row after row
    points = [
        (position % width, position // width)
        for position, (r, g, b) in enumerate(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
        if r > 200 and 150 < g < 240 and b < 110
    ]
    assert points, "no ball in the image"
    return sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)


def tiles_of(sheet: Image.Image, *, count: int, tile_size: tuple[int, int]) -> list[Image.Image]:
    width, height = tile_size
    columns = sheet.width // width
    return [
        sheet.crop(
            ((i % columns) * width, (i // columns) * height, (i % columns + 1) * width, (i // columns + 1) * height)
        )
        for i in range(count)
    ]


def tile_size(job: RenderJob) -> tuple[int, int]:
    return render.SPRITESHEET_TILE_WIDTH, round(job.height * render.SPRITESHEET_TILE_WIDTH / job.width)


@dataclass
class FakeS3:
    """Serves get_object/head_object from bytes, honouring Range, and records every request."""

    data: bytes
    etag: str = ETAG
    ignore_range: bool = False
    fail_on_get: int | None = None  # the n-th get_object (1-based) raises an S3 error
    gets: list[dict[str, Any]] = field(default_factory=list)

    def head_object(self, **params: Any) -> dict[str, Any]:
        return {"ContentLength": len(self.data), "ETag": self.etag, "ContentType": "video/mp4"}

    def get_object(self, **params: Any) -> dict[str, Any]:
        self.gets.append(params)
        if self.fail_on_get == len(self.gets):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "GetObject")
        if params.get("IfMatch") not in (None, self.etag):
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "changed"}}, "GetObject")
        body = self.data
        if not self.ignore_range:
            first, last = (int(n) for n in params["Range"].removeprefix("bytes=").split("-"))
            body = self.data[first : last + 1]
        return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentLength": len(body)}

    def ranges(self) -> list[tuple[int, int]]:
        return [
            cast("tuple[int, int]", tuple(int(n) for n in get["Range"].removeprefix("bytes=").split("-")))
            for get in self.gets
        ]


def reader_over(fake: FakeS3, **sizes: int) -> RangedObjectReader:
    return RangedObjectReader(
        cast("S3Client", fake), bucket="bucket", key="videos/v/video.mp4", size=len(fake.data), etag=fake.etag, **sizes
    )


def storage_over(fake: FakeS3) -> ArchiveStorage:
    return ArchiveStorage(S3Settings(), client=cast("S3Client", fake))


class TestThumbnail:
    def test_is_a_webp_of_the_video_size_showing_the_middle_frame(self, video: Rendered) -> None:
        data = thumbnail_from(io.BytesIO(video.mp4))

        assert looks_like(Variant.THUMBNAIL, data[:12])  # what upload_stream will check
        image = Image.open(io.BytesIO(data))
        assert image.format == "WEBP"
        assert image.size == (video.job.width, video.job.height)
        # The ball moves ~12 px a frame here: the same place means the simulator's frame (frame_count // 2).
        (x, y), (sim_x, sim_y) = ball_centre(image), ball_centre(video.thumbnail)
        assert abs(x - sim_x) < 3 and abs(y - sim_y) < 3


class TestSpritesheet:
    @pytest.mark.parametrize("name", ["video", "short_video"])
    def test_has_the_simulators_grid_and_frames(self, name: str, request: pytest.FixtureRequest) -> None:
        video: Rendered = request.getfixturevalue(name)

        data = spritesheet_from(io.BytesIO(video.mp4))

        assert looks_like(Variant.SPRITESHEET, data[:12])
        sheet = Image.open(io.BytesIO(data))
        assert sheet.format == "JPEG"
        assert sheet.size == video.spritesheet.size
        count = min(render.SPRITESHEET_TILES, video.job.frame_count)
        ours = tiles_of(sheet, count=count, tile_size=tile_size(video.job))
        theirs = tiles_of(video.spritesheet, count=count, tile_size=tile_size(video.job))
        centres = [ball_centre(tile) for tile in ours]
        simulated = [ball_centre(tile) for tile in theirs]
        # Same frames: each tile's ball sits nearest to the ball of the simulator's tile in the same place.
        nearest = [min(range(count), key=lambda j, c=c: math.dist(c, simulated[j])) for c in centres]  # type: ignore[misc]
        assert nearest == list(range(count))
        # Evenly spaced frames of a ball moving right: every tile shows another frame, in time order.
        xs = [x for x, _ in centres]
        assert xs == sorted(xs) and len({round(x) for x in xs}) == count

    def test_constants_mirror_the_simulators_shape(self) -> None:
        assert (derive.SPRITESHEET_COLUMNS, derive.SPRITESHEET_TILES, derive.SPRITESHEET_TILE_WIDTH) == (
            render.SPRITESHEET_COLUMNS,
            render.SPRITESHEET_TILES,
            render.SPRITESHEET_TILE_WIDTH,
        )

    @pytest.mark.parametrize("frames", [1, 5, 16, 24, 250])
    def test_picks_the_simulators_frames(self, frames: int) -> None:
        assert set(derive.spritesheet_indexes(frames)) == render._spritesheet_indexes(frames)


class TestMoovAtTheEnd:
    """An MP4 without faststart: the demuxer must seek to the end for the index, then back for the frames."""

    def test_the_rendered_mp4_keeps_moov_after_mdat(self, video: Rendered) -> None:
        kinds = [kind for kind, _, _ in top_level_boxes(video.mp4)]
        assert kinds.index(b"moov") > kinds.index(b"mdat") and kinds[-1] == b"moov"

    def test_decodes_through_ranged_reads_that_jump_to_moov(self, larger_video: Rendered) -> None:
        video = larger_video
        fake = FakeS3(video.mp4)
        (_, moov_offset, _) = next(box for box in top_level_boxes(video.mp4) if box[0] == b"moov")

        with reader_over(fake, min_fetch_bytes=4 * KIB, max_fetch_bytes=8 * KIB) as reader:
            data = spritesheet_from(reader)

        assert Image.open(io.BytesIO(data)).size == video.spritesheet.size
        ranges = fake.ranges()
        assert ranges[0][0] == 0  # the head first
        assert any(first >= moov_offset for first, _ in ranges)  # then a jump to the index at the end
        assert any(first < moov_offset for first, _ in ranges[1:])  # and back into the media
        assert all(last - first + 1 <= 8 * KIB for first, last in ranges)
        assert all(get["IfMatch"] == ETAG for get in fake.gets)
        assert reader.requests == len(fake.gets)
        assert reader.bytes_fetched == sum(last - first + 1 for first, last in ranges)

    def test_moov_in_front_gives_the_same_images(self, video: Rendered, tmp_path: Path) -> None:
        faststart = faststart_copy(video.mp4, tmp_path)
        assert [kind for kind, _, _ in top_level_boxes(faststart)].index(b"moov") == 1  # right after ftyp

        assert thumbnail_from(io.BytesIO(faststart)) == thumbnail_from(io.BytesIO(video.mp4))
        assert spritesheet_from(io.BytesIO(faststart)) == spritesheet_from(io.BytesIO(video.mp4))


class TestSeeking:
    """Videos with many keyframes: GOPs holding no wanted frame are skipped, and seeking still finds the frame."""

    def test_the_fixture_has_many_keyframes(self, short_gops: tuple[Rendered, bytes]) -> None:
        _, mp4 = short_gops
        with av.open(io.BytesIO(mp4), format="mp4") as container:
            keyframes = [entry for entry in container.streams.video[0].index_entries if entry.is_keyframe]
        assert len(keyframes) == 96 // 8

    def test_thumbnail_reads_only_the_gop_of_its_frame(self, short_gops: tuple[Rendered, bytes]) -> None:
        simulated, mp4 = short_gops
        fake = FakeS3(mp4)

        with reader_over(fake, min_fetch_bytes=4 * KIB, max_fetch_bytes=16 * KIB) as reader:
            data = thumbnail_from(reader)

        (x, y), (sim_x, sim_y) = ball_centre(Image.open(io.BytesIO(data))), ball_centre(simulated.thumbnail)
        assert abs(x - sim_x) < 3 and abs(y - sim_y) < 3
        print(f"thumbnail of a {len(mp4)} B MP4 in 8-frame GOPs: {reader.bytes_fetched} B in {reader.requests} GETs")  # noqa: T201
        assert reader.bytes_fetched < len(mp4) / 3

    def test_spritesheet_after_seeks_shows_the_simulators_frames(self, short_gops: tuple[Rendered, bytes]) -> None:
        simulated, mp4 = short_gops

        sheet = Image.open(io.BytesIO(spritesheet_from(io.BytesIO(mp4))))

        assert sheet.size == simulated.spritesheet.size
        size = tile_size(simulated.job)
        centres = [ball_centre(tile) for tile in tiles_of(sheet, count=16, tile_size=size)]
        expected = [ball_centre(tile) for tile in tiles_of(simulated.spritesheet, count=16, tile_size=size)]
        assert all(math.dist(ours, theirs) < 2 for ours, theirs in zip(centres, expected, strict=True))

    def test_spritesheet_skips_the_gops_between_its_frames(self) -> None:
        # 16 tiles over 96 frames in GOPs of 4: a third of the GOPs hold no tile, and a GOP is left at its tile.
        # Decoding straight through from the first tile would fetch the whole file.
        mp4 = noise_mp4(frames=96, gop=4)
        fake = FakeS3(mp4)

        with reader_over(fake, min_fetch_bytes=4 * KIB, max_fetch_bytes=16 * KIB) as reader:
            spritesheet_from(reader)

        print(f"spritesheet of a {len(mp4)} B MP4 in 4-frame GOPs: {reader.bytes_fetched} B fetched")  # noqa: T201
        assert reader.bytes_fetched < 0.85 * len(mp4)


class TestNotAnMp4:
    @pytest.mark.parametrize(
        "make",
        [
            lambda video: b"",
            lambda video: b"<!DOCTYPE html><html><body>Service Unavailable</body></html>",
            lambda video: random.Random(7).randbytes(64 * KIB),
            lambda video: video.mp4[:2000],  # cut before its moov
        ],
        ids=["empty", "html", "noise", "truncated"],
    )
    def test_raises_derivation_failed(self, make: Any, video: Rendered) -> None:
        with pytest.raises(DerivationFailed):
            thumbnail_from(io.BytesIO(make(video)))
        with pytest.raises(DerivationFailed):
            spritesheet_from(io.BytesIO(make(video)))

    def test_an_image_is_not_taken_for_a_video(self, tmp_path: Path) -> None:
        # A prober would decode a JPEG as a one-frame video; the archive's contract is MP4.
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 10, 10)).save(buffer, format="JPEG")
        with pytest.raises(DerivationFailed, match="not a readable MP4"):
            thumbnail_from(io.BytesIO(buffer.getvalue()))


class TestDeriveImage:
    async def test_runs_on_the_archived_object_and_closes_its_reader(self, video: Rendered) -> None:
        fake = FakeS3(video.mp4)

        thumbnail = await derive_image(storage_over(fake), video_key="videos/v/video.mp4", variant=Variant.THUMBNAIL)
        spritesheet = await derive_image(
            storage_over(fake), video_key="videos/v/video.mp4", variant=Variant.SPRITESHEET
        )

        assert thumbnail == thumbnail_from(io.BytesIO(video.mp4))
        assert spritesheet == spritesheet_from(io.BytesIO(video.mp4))
        assert fake.gets and all(get["Key"] == "videos/v/video.mp4" and "Range" in get for get in fake.gets)

    async def test_the_video_itself_is_not_derived(self, video: Rendered) -> None:
        fake = FakeS3(video.mp4)
        with pytest.raises(ValueError, match="not the video"):
            await derive_image(storage_over(fake), video_key="videos/v/video.mp4", variant=Variant.VIDEO)
        assert fake.gets == []

    @pytest.mark.parametrize("variant", [Variant.THUMBNAIL, Variant.SPRITESHEET])
    async def test_an_s3_failure_anywhere_is_a_storage_error_not_a_bad_file(
        self, variant: Variant, short_gops: tuple[Rendered, bytes], capfd: pytest.CaptureFixture[str]
    ) -> None:
        # The worker retries a StorageError and gives up on DerivationFailed: a network fault must not pass for
        # a broken MP4, though it surfaces inside FFmpeg's read callback (while opening, seeking or decoding):
        # PyAV keeps what the callback raised and re-raises it, whatever FFmpeg made of the failed read.
        _, mp4 = short_gops
        clean = FakeS3(mp4)
        await derive_image(storage_over(clean), video_key="videos/v/video.mp4", variant=variant)
        assert len(clean.gets) >= 3  # the head, the moov at the end, the media

        for failing in range(1, len(clean.gets) + 1):
            fake = FakeS3(mp4, fail_on_get=failing)
            with pytest.raises(StorageError, match="InternalError"):
                await derive_image(storage_over(fake), video_key="videos/v/video.mp4", variant=variant)
            assert len(fake.gets) == failing  # FFmpeg's retries of the failed read do not reach S3 again
        # Nor does PyAV drop (and print) one exception for another: there was only ever the one.
        assert "exception being dropped" not in capfd.readouterr().err

    async def test_an_object_replaced_mid_read_fails_instead_of_mixing_files(self, video: Rendered) -> None:
        fake = FakeS3(video.mp4)
        storage = storage_over(fake)
        reader = await storage.open_seekable("videos/v/video.mp4")
        fake.etag = '"another"'  # overwritten after our HEAD
        with reader, pytest.raises(StorageError) as raised:
            thumbnail_from(reader)
        assert raised.value.code == "PreconditionFailed"


class TestRangedObjectReader:
    @pytest.fixture
    def data(self) -> bytes:
        return random.Random(3).randbytes(300 * KIB + 17)

    def test_reads_and_seeks_like_a_file(self, data: bytes) -> None:
        rng = random.Random(5)
        expected = io.BytesIO(data)
        with reader_over(FakeS3(data), min_fetch_bytes=4 * KIB, max_fetch_bytes=32 * KIB) as reader:
            for _ in range(300):
                whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
                offset = {
                    io.SEEK_SET: rng.randrange(len(data) + 10),
                    io.SEEK_CUR: rng.randrange(-min(reader.tell(), 5000), 5000),
                    io.SEEK_END: -rng.randrange(len(data) + 1),
                }[whence]
                assert reader.seek(offset, whence) == expected.seek(offset, whence)
                size = rng.choice([1, 8, 4096, 40_000])
                # A raw read may come back short; read until the file-like answer is complete.
                chunks = b""
                while len(chunks) < size and (chunk := reader.read(size - len(chunks))):
                    chunks += chunk
                assert chunks == expected.read(size)
                assert reader.tell() == expected.tell()

    def test_read_ahead_is_bounded_and_grows_only_while_sequential(self, data: bytes) -> None:
        fake = FakeS3(data)
        with reader_over(fake, min_fetch_bytes=4 * KIB, max_fetch_bytes=32 * KIB) as reader:
            assert reader.read() == data  # sequential from 0 to the end
            sequential = [last - first + 1 for first, last in fake.ranges()]
            reader.seek(100 * KIB)
            reader.read(10)

        assert sequential[:4] == [4 * KIB, 8 * KIB, 16 * KIB, 32 * KIB]
        assert max(sequential) == 32 * KIB and sum(sequential) == len(data)
        first, last = fake.ranges()[-1]
        assert (first, last - first + 1) == (100 * KIB, 4 * KIB)  # a jump starts small again

    def test_a_read_inside_the_window_fetches_nothing(self, data: bytes) -> None:
        fake = FakeS3(data)
        with reader_over(fake, min_fetch_bytes=16 * KIB, max_fetch_bytes=16 * KIB) as reader:
            reader.read(10)
            reader.seek(8 * KIB)
            reader.read(10)
            reader.seek(0)
            reader.read(10)
        assert len(fake.gets) == 1

    def test_past_the_end_reads_nothing_and_fetches_nothing(self, data: bytes) -> None:
        fake = FakeS3(data)
        with reader_over(fake) as reader:
            reader.seek(len(data) + 5)
            assert reader.read(10) == b""
        assert fake.gets == []

    def test_a_server_ignoring_range_is_refused_before_its_body_is_read(self, data: bytes) -> None:
        fake = FakeS3(data, ignore_range=True)
        with reader_over(fake, max_fetch_bytes=64 * KIB) as reader, pytest.raises(StorageError, match="ignored Range"):
            reader.read(10)

    def test_after_a_failed_get_it_reads_as_ended_without_fetching(self, data: bytes) -> None:
        fake = FakeS3(data, fail_on_get=1)
        with reader_over(fake) as reader:
            with pytest.raises(StorageError, match="InternalError"):
                reader.read(10)
            assert reader.read(10) == b""
            reader.seek(1000)
            assert reader.read(10) == b""
        assert len(fake.gets) == 1

    def test_closed_reader_refuses_reads(self, data: bytes) -> None:
        reader = reader_over(FakeS3(data))
        reader.close()
        with pytest.raises(ValueError):
            reader.read(1)
