"""The client's shared-memory regions lent to a decoder (no server: lending makes no call)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fakescope.client.shared_memory import MAX_REGIONS, REGION_PREFIX, SHM_DIR, FrameRegions
from fakescope.client.triton import DetectorClient

SHAPE = (2, 4, 6, 3)
#: The load generator's case: gevent has patched ``threading``, and two native threads (its
#: decoding pool) make, lend and remove regions at once. Prints ``done``, or ``hung`` when a
#: thread still waits after the time given.
_REGIONS_FROM_NATIVE_THREADS = """
from gevent import monkey
monkey.patch_all()
import os, sys
import gevent, gevent.threadpool
from fakescope.client.shared_memory import FrameRegions

def no_server(*args):
    raise AssertionError(args)

def make_and_remove(rounds):
    for _ in range(rounds):
        regions = FrameRegions(no_server, no_server)
        frames = regions.lend((1, 8, 8, 3))
        del frames
        regions.close()

pool = gevent.threadpool.ThreadPool(2)
workers = [pool.spawn(make_and_remove, int(sys.argv[1])) for _ in range(2)]
gevent.joinall(workers, timeout=float(sys.argv[2]))
print("done" if all(w.successful() for w in workers) else "hung", flush=True)
os._exit(0)  # a thread that waits for ever would keep the process
"""


def _made_here() -> set[str]:
    return {p.name for p in SHM_DIR.glob(f"{REGION_PREFIX}{os.getpid()}_*")}


def _no_server_call(*args: object) -> None:
    raise AssertionError(f"lending a region called the server: {args}")


@pytest.fixture
def regions() -> Iterator[FrameRegions]:
    before = _made_here()
    held = FrameRegions(register=_no_server_call, unregister=_no_server_call)
    yield held
    held.close()
    assert _made_here() == before  # nothing left in /dev/shm


def test_frame_regions_lend_the_same_region_again_when_its_frames_were_dropped(
    regions: FrameRegions,
) -> None:
    before = _made_here()
    first = regions.lend(SHAPE)
    assert first is not None
    made = _made_here() - before
    del first
    again = regions.lend(SHAPE)
    assert again is not None
    assert _made_here() - before == made  # one region, lent twice


def test_frame_regions_lend_another_region_when_a_view_of_the_frames_lives_on(
    regions: FrameRegions,
) -> None:
    before = _made_here()
    first = regions.lend(SHAPE)
    assert first is not None
    first[...] = 1
    one_frame = first[1]
    del first
    second = regions.lend(SHAPE)
    assert second is not None
    second[...] = 2
    assert len(_made_here() - before) == 2
    assert (one_frame == 1).all()  # not written over


def test_frame_regions_lend_nothing_when_every_region_holds_frames(regions: FrameRegions) -> None:
    held = [regions.lend(SHAPE) for _ in range(MAX_REGIONS)]
    assert all(array is not None for array in held)
    assert regions.lend(SHAPE) is None


def test_frame_regions_keep_lent_frames_usable_when_closed(regions: FrameRegions) -> None:
    before = _made_here()
    frames = regions.lend(SHAPE)
    assert frames is not None
    frames[...] = 7
    regions.close()
    assert _made_here() == before  # the names are gone from /dev/shm ...
    frames += 1  # ... the memory is not: it goes when the frames do
    assert (frames == 8).all()


def test_frame_regions_lend_a_larger_region_when_frames_outgrow_the_free_one(
    regions: FrameRegions,
) -> None:
    small = regions.lend(SHAPE)
    assert small is not None
    del small
    large = regions.lend((4, 8, 12, 3))
    assert large is not None
    large[...] = 3
    assert large.shape == (4, 8, 12, 3)
    assert (large == 3).all()


def test_frame_regions_lend_nothing_when_the_frames_take_no_bytes(regions: FrameRegions) -> None:
    before = _made_here()
    assert regions.lend((0, 4, 6, 3)) is None
    assert _made_here() == before


def test_detector_client_lends_process_memory_when_closed() -> None:
    before = _made_here()
    client = DetectorClient("127.0.0.1:1", "grpc", shared_memory=True)  # no call is made
    lent = client.frames_buffer(SHAPE)
    assert len(_made_here() - before) == 1  # a region, while the client is open
    client.close()
    lent[...] = 5  # still usable
    after_close = client.frames_buffer(SHAPE)
    after_close[...] = 6
    assert _made_here() == before  # nothing left in /dev/shm, nothing new made
    assert (lent == 5).all()


def test_frame_regions_are_made_by_two_native_threads_at_once_when_gevent_patched_threading():
    # 2 x 2,000 regions: with gevent's locks one thread waited for ever in about 1 run in 5 of
    # 2 x 200 (on the resource tracker's lock); the load generator hung so in CI
    result = subprocess.run(
        [sys.executable, "-c", _REGIONS_FROM_NATIVE_THREADS, "2000", "60"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout.strip() == "done", result.stderr[-3000:]


#: Lends a region for more frames than the /dev/shm given in argv[1] holds, and writes them.
_LEND_ON_A_FULL_SHM = """
import pathlib, sys
import fakescope.client.shared_memory as shared_memory
shared_memory.SHM_DIR = pathlib.Path(sys.argv[1])

def no_server(*args):
    raise AssertionError(args)

regions = shared_memory.FrameRegions(no_server, no_server)
frames = regions.lend((16, 360, 640, 3))  # 11 MB
if frames is not None:
    frames[:] = 1  # where the decoder writes its frames
print("lent" if frames is not None else "process memory", flush=True)
"""


@pytest.fixture
def small_shm(tmp_path) -> Iterator[str]:
    """A 4 MB tmpfs, as a container's /dev/shm that is nearly full (needs mount rights)."""
    folder = tmp_path / "shm"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_frame_regions_lend_nothing_when_dev_shm_has_no_room_for_the_frames(small_shm) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LEND_ON_A_FULL_SHM, small_shm], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "process memory"), done.stderr
    assert os.listdir(small_shm) == []  # the refused region is not left behind
