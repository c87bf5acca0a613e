"""The fast path of frame sampling: decode only the frames the sample needs, with PyAV.

:func:`fakescope.client.video.sample_frames` tries this first and falls back to the OpenCV
scan (:mod:`fakescope.client.opencv_sampler`, which decodes every frame and explains every
failure) whenever this returns ``None``.
The picks follow the same rule — one frame per equal segment of the stream, at the segment
centre — with a tolerance that lets the decoder skip work:

1. **Index.** Demux the video stream without decoding (packet headers only, far cheaper than
   decoding) to learn the real frame count ``M``, every presentation timestamp and which frames
   are keyframes. The file is opened once: the decoding below seeks in the same container.
   The open itself decodes nothing (:data:`PROBE_OPTIONS`), where FFmpeg's probe of the stream
   would decode its first frames.
2. **Keyframes** when every one of the ``k`` segments holds a keyframe: seek to the keyframe
   nearest each segment's centre and decode just that packet (``k`` decodes, whatever the
   length). Long videos take this path.
3. **Reference frames** otherwise: one pass with the decoder told to skip non-reference
   frames (``skip_frame=NONREF``; typically B-frames, about 40 % of an x264 stream), taking
   the decoded frame nearest each segment centre (at most a frame or two away). Videos with
   fewer than ``4 k`` frames skip nothing. Phone videos without B-frames decode fully.
   The pass also jumps over the packets no pick needs: once every target before the next
   *IDR* keyframe has its frame, it feeds the decoder nothing until the last IDR keyframe at or
   before the next target. An IDR frame (H.264's and HEVC's instantaneous decoder refresh)
   starts a closed group of pictures: no frame after it in decoding order refers to a frame
   before it, so the frames decoded after the jump are those of the whole pass. Which
   keyframes are IDR is read while indexing (the NAL unit type of each keyframe packet of an
   H.264 or HEVC stream of length-prefixed NAL units, as MP4, MOV and Matroska store them);
   open keyframes (an H.264 I-frame without IDR, an HEVC CRA frame), other codecs and other
   layouts do not jump.

Slice threads, never frame threads: under load (several videos at once on a few cores, the
case the product limit is about) frame threads cost more CPU than they save wall time. Slice
threads decode the slices of one frame in parallel for no extra CPU; a stream with one slice
per frame decodes as with one thread. What each mode costs:
``python -m fakescope.benchmarks.decode_threads`` (``benchmarks/results/decode_threads.md``).

Anything unexpected — no timestamps, duplicate timestamps, a rotation that is not a multiple
of 90°, a seek that lands elsewhere, a decode error, too few frames — returns ``None`` so that
the OpenCV path decides (and names the problem). Nothing here raises for a bad file.
"""

from __future__ import annotations

import bisect
import logging
import os
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from fakescope.client.frames import (
    FrameAllocator,
    SampledFrames,
    ffmpeg_file_name,
    fit_size,
    frames_array,
    new_frames,
)

if TYPE_CHECKING:
    import av.container
    import av.video.frame
    import av.video.reformatter

logger = logging.getLogger(__name__)

#: Skip non-reference frames only when the stream has at least this many frames per pick.
NONREF_MIN_FRAMES_PER_PICK: Final = 4
#: PyAV ``thread_type`` of the decoder (see the module docstring); the thread count is FFmpeg's
#: automatic one (the cores).
DECODE_THREAD_TYPE: Final = "SLICE"
#: Options of the file's open: FFmpeg's probe of the streams (``avformat_find_stream_info``)
#: decodes no frame. By default it decodes an H.264 stream's first frames (to guess the pixel
#: format and the reordering depth), for nothing this path reads: the frame size, rotation,
#: timestamps and rate come from the container and the codec's headers, and the decoder finds
#: the rest in the stream as it decodes. The same frames come out either way; what it saves:
#: ``python -m fakescope.benchmarks.decode_probe``, which checks the frames on every video it
#: times (the tests check them on every container they write).
PROBE_OPTIONS: Final = {"skip_frame": "all"}


@dataclass(frozen=True)
class StreamIndex:
    """What demuxing (no decoding) says about a video stream.

    Attributes:
        pts: presentation timestamps of every frame, sorted (presentation order).
        keyframes: positions in ``pts`` of the keyframes, sorted.
        time_base: seconds per ``pts`` unit.
        reported_frames: the container's frame count (0 when it has none).
        rate: the container's average frame rate, if any.
        idr_keyframes: positions in ``pts`` of the keyframes known to be IDR frames (see the
            module docstring), sorted; empty when the stream does not say.
        first_packet_pts: the ``pts`` of the stream's first packet in decoding order (where a
            pass over the whole stream starts).

    """

    pts: array[int]
    keyframes: list[int]
    time_base: Fraction
    reported_frames: int
    rate: Fraction | None
    idr_keyframes: list[int] = field(default_factory=list)
    first_packet_pts: int | None = None

    @property
    def total(self) -> int:
        """Frames in the stream."""
        return len(self.pts)


def keyframe_picks(index: StreamIndex, targets: list[int]) -> list[int] | None:
    """Keyframe positions, one per segment around each target, or ``None`` if one has none.

    Segment ``j`` is ``[j M/k, (j+1) M/k)``; the pick is the keyframe in it nearest the target.
    """
    total, k = index.total, len(targets)
    picks = []
    for j, target in enumerate(targets):
        lo, hi = j * total / k, (j + 1) * total / k
        first = bisect.bisect_left(index.keyframes, lo)
        best = None
        for position in index.keyframes[first:]:
            if position >= hi:
                break
            if best is None or abs(position - target) < abs(best - target):
                best = position
        if best is None:
            return None
        picks.append(best)
    return picks


def read_stream_index(path: str | os.PathLike[str]) -> StreamIndex | None:
    """Demux (no decoding) the first video stream of ``path`` (:func:`index_stream`).

    Returns ``None`` when there is no video stream, or when timestamps are missing or repeated
    (the frames could not be told apart). Raises PyAV's errors for unreadable files.
    """
    with _open(path, DECODE_THREAD_TYPE) as container:
        return index_stream(container)


def index_stream(container: av.container.InputContainer) -> StreamIndex | None:
    """Demux (no decoding) the first video stream of an open ``container`` to its end.

    Returns ``None`` as :func:`read_stream_index` does. The container is left at the end of
    the stream (:func:`_for_decoding` rewinds it).
    """
    if not container.streams.video:
        return None
    stream = container.streams.video[0]
    if stream.time_base is None:
        return None
    pts: array[int] = array("q")
    keys: array[int] = array("q")
    idr: array[int] = array("q")
    codec_name = stream.codec_context.name
    nal_length = nal_length_size(codec_name, stream.codec_context.extradata)
    first_packet_pts: int | None = None
    keyframe_seen = False
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream flush packet
            continue
        if packet.pts is None:
            return None
        if first_packet_pts is None:
            first_packet_pts = packet.pts
        keyframe_seen = keyframe_seen or packet.is_keyframe
        # Frames the decoder never outputs are no frames of the video: an edit list's pre-roll
        # (a trimmed MP4 or MOV marks it discarded), and in a stream cut mid-way through a
        # group of pictures, the frames before its first keyframe (they lack references).
        if packet.is_discard or not keyframe_seen:
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
            if nal_length and starts_with_idr(bytes(packet), codec_name, nal_length):
                idr.append(packet.pts)
    ordered = np.sort(np.frombuffer(pts, dtype=np.int64))
    if len(ordered) > 1 and not bool(np.all(np.diff(ordered) > 0)):
        return None  # duplicate timestamps: frames cannot be told apart by pts
    key_positions = np.searchsorted(ordered, np.frombuffer(keys, dtype=np.int64))
    idr_positions = np.searchsorted(ordered, np.frombuffer(idr, dtype=np.int64))
    rate = stream.average_rate
    return StreamIndex(
        pts=array("q", ordered.tobytes()),
        keyframes=sorted(int(p) for p in key_positions),
        time_base=Fraction(stream.time_base),
        reported_frames=int(stream.frames or 0),
        rate=Fraction(rate) if rate else None,
        idr_keyframes=sorted(int(p) for p in idr_positions),
        first_packet_pts=first_packet_pts,
    )


@dataclass(frozen=True)
class _NalTypes:
    """Where a codec keeps a NAL unit's type, which types are coded slices, which are IDR."""

    shift: int  #: the type is ``(first byte >> shift) & mask``
    mask: int
    slices: range  #: coded slice (VCL) types
    idr: frozenset[int]
    length_byte: int  #: the configuration record's byte holding the length size minus one


_NAL_TYPES: Final = {
    # AVCDecoderConfigurationRecord; slices 1-5, 5 = IDR
    "h264": _NalTypes(0, 0x1F, range(1, 6), frozenset({5}), 4),
    # HEVCDecoderConfigurationRecord; slices 0-31, 19 and 20 = IDR (21, CRA, is open)
    "hevc": _NalTypes(1, 0x3F, range(32), frozenset({19, 20}), 21),
}


def nal_length_size(codec_name: str, extradata: bytes | None) -> int | None:
    """Bytes of each NAL unit's length prefix of an H.264 or HEVC stream, else ``None``.

    ``extradata`` is the stream's decoder configuration record (version byte 1, the length
    size minus one in the low two bits of one of its bytes) when packets are length-prefixed
    NAL units, as in MP4; Annex B streams (start codes) and other codecs give ``None``.
    """
    types = _NAL_TYPES.get(codec_name)
    if types is None or not extradata or len(extradata) <= types.length_byte + 2:
        return None
    if extradata[0] != 1:
        return None
    return (extradata[types.length_byte] & 0b11) + 1


def starts_with_idr(packet: bytes, codec_name: str, nal_length: int) -> bool:
    """Whether the first coded slice of a length-prefixed H.264 / HEVC packet is an IDR one.

    Walks the packet's NAL units (SEI and parameter sets may come first); a malformed length
    ends the walk with ``False``, so a damaged packet never allows a jump.
    """
    types = _NAL_TYPES.get(codec_name)
    if types is None:
        return False
    offset = 0
    while offset + nal_length < len(packet):
        size = int.from_bytes(packet[offset : offset + nal_length], "big")
        offset += nal_length
        if size <= 0 or offset + size > len(packet):
            return False
        nal_type = (packet[offset] >> types.shift) & types.mask
        if nal_type in types.slices:
            return nal_type in types.idr
        offset += size
    return False


def sample_with_pyav(
    path: str | os.PathLike[str],
    targets_for: Callable[[int], list[int]],
    max_side: int | None,
    *,
    thread_type: str = DECODE_THREAD_TYPE,
    jump_to_idr: bool = True,
    reopen: bool = False,
    probe_decodes: bool = False,
    allocate: FrameAllocator = new_frames,
) -> SampledFrames | None:
    """Sample ``path`` decoding as little as possible; ``None`` when the OpenCV path must.

    Args:
        path: the video file (already checked to exist and not to be a playlist).
        targets_for: maps the real frame count to the ideal picks
            (:func:`fakescope.client.frames.even_frame_indices` with ``num_frames`` bound).
        max_side: the long-side limit of the returned frames (``None``: full size).
        thread_type: the decoder's PyAV ``thread_type`` (``"NONE"``, ``"SLICE"``, ``"FRAME"``,
            ``"AUTO"``); the default is the served client's, others are for measurements.
        jump_to_idr: let the reference-frame pass jump over packets no pick needs (see the
            module docstring); ``False`` is for measurements.
        reopen: open the file a second time to decode instead of seeking in the one that was
            indexed (the way before); ``True`` is for measurements.
        probe_decodes: open the file with FFmpeg's default probe, which decodes the first
            frames (:data:`PROBE_OPTIONS`; the way before); ``True`` is for measurements.
        allocate: makes the array the frames are decoded into (:data:`FrameAllocator`).

    """
    try:
        import av
    except ImportError:  # the client works without PyAV, only slower
        return None
    try:
        with _open(path, thread_type, probe_decodes=probe_decodes) as container:
            index = index_stream(container)
            if index is None or index.total == 0:
                return None
            targets = targets_for(index.total)
            sink = _FrameSink(len(targets), max_side, allocate)
            picks = keyframe_picks(index, targets) if len(targets) < index.total else None
            with _for_decoding(
                container,
                index,
                path,
                thread_type,
                rewind=picks is None,
                reopen=reopen,
                probe_decodes=probe_decodes,
            ) as decoding:
                if picks is not None:
                    _decode_keyframes(decoding, index, picks, sink)
                else:
                    skip = index.total >= NONREF_MIN_FRAMES_PER_PICK * len(targets)
                    jumps = index.idr_keyframes if jump_to_idr else []
                    _decode_nearest(decoding, index, targets, sink, skip_nonref=skip, jumps=jumps)
        return sink.sampled(index)
    except (av.FFmpegError, OSError, _UnexpectedStreamError) as exc:
        logger.info("%s: PyAV fast path gave up (%s); scanning with OpenCV", path, exc)
    except Exception:  # an optimisation only: the OpenCV scan is the authority on any file
        logger.warning("%s: PyAV fast path failed; scanning with OpenCV", path, exc_info=True)
    return None


# --- internals -------------------------------------------------------------------------------


class _UnexpectedStreamError(Exception):
    """The stream is not what the fast path expects (the OpenCV scan takes over)."""


class _FrameSink:
    """Converts each chosen frame at once into one preallocated RGB buffer (upright, scaled).

    Holding decoded frames instead would cost a full-resolution YUV frame per pick (800 MB for
    16 frames of 8K); this keeps only the output, as the OpenCV path's collector does.
    """

    def __init__(self, capacity: int, max_side: int | None, allocate: FrameAllocator) -> None:
        self._capacity = capacity
        self._max_side = max_side
        self._allocate = allocate
        self._buffer: NDArray[np.uint8] | None = None
        self._reformatter: av.video.reformatter.VideoReformatter | None = None
        self.positions: list[int] = []
        self._turns = 0
        self._stored = (0, 0)  # size to scale to before rotating
        self._interpolation = "BILINEAR"
        self.source_size = (0, 0)

    def add(self, position: int, frame: av.video.frame.VideoFrame) -> None:
        if self._buffer is None:
            self._start(frame)
        assert self._buffer is not None and self._reformatter is not None
        if len(self.positions) == self._capacity:
            raise _UnexpectedStreamError("more frames than picks")
        rgb = self._reformatter.reformat(
            frame,
            width=self._stored[0],
            height=self._stored[1],
            format="rgb24",
            interpolation=self._interpolation,
        ).to_ndarray()
        slot = self._buffer[len(self.positions)]
        slot[...] = np.rot90(rgb, k=self._turns) if self._turns else rgb
        self.positions.append(position)

    def _start(self, frame: av.video.frame.VideoFrame) -> None:
        from av.video.reformatter import VideoReformatter

        if frame.rotation % 90:
            raise _UnexpectedStreamError(
                f"display rotation {frame.rotation} is not a multiple of 90 degrees"
            )
        self._turns = (frame.rotation % 360) // 90
        upright = (frame.height, frame.width) if self._turns % 2 else (frame.width, frame.height)
        width, height = fit_size(*upright, self._max_side)
        self._stored = (height, width) if self._turns % 2 else (width, height)
        shrink = self._stored[0] * self._stored[1] < frame.width * frame.height
        self._interpolation = "AREA" if shrink else "BILINEAR"
        self.source_size = upright
        self._buffer = frames_array(self._allocate, (self._capacity, height, width, 3))
        self._reformatter = VideoReformatter()  # one scaler context for all the frames

    def sampled(self, index: StreamIndex) -> SampledFrames:
        if self._buffer is None or len(self.positions) != self._capacity:
            raise _UnexpectedStreamError("the decoded frames do not match the stream's index")
        origin = index.pts[0]
        seconds = [float((index.pts[p] - origin) * index.time_base) for p in self.positions]
        span = float((index.pts[-1] - origin) * index.time_base)
        if index.rate:
            fps = float(index.rate)
        elif span > 0:
            fps = (index.total - 1) / span
        else:
            raise _UnexpectedStreamError("no frame rate")
        return SampledFrames(
            frames=self._buffer,
            timestamps=np.asarray(seconds, dtype=np.float32),
            duration_seconds=span + 1.0 / fps,
            source_size=self.source_size,
            fps=fps,
            frame_indices=np.asarray(self.positions, dtype=np.int64),
            total_frames=index.total,
            reported_frames=float(index.reported_frames),
            rotation=(-self._turns * 90) % 360,  # clockwise, as OpenCV reports it
        )


def _decode_keyframes(
    container: av.container.InputContainer,
    index: StreamIndex,
    picks: list[int],
    sink: _FrameSink,
) -> None:
    stream = container.streams.video[0]
    codec = stream.codec_context
    for position in picks:
        wanted = index.pts[position]
        container.seek(wanted, stream=stream, backward=True, any_frame=False)
        packet = next((p for p in container.demux(stream) if p.size), None)
        if packet is None or packet.pts != wanted or not packet.is_keyframe:
            raise _UnexpectedStreamError("a seek landed elsewhere")
        # one packet in, then drain: the decoder gives the frame without waiting for the
        # frames that would follow it (a keyframe needs no other)
        frames = [*codec.decode(packet), *codec.decode(None)]
        codec.flush_buffers()
        frame = next((f for f in frames if f.pts == wanted), None)
        if frame is None:
            raise _UnexpectedStreamError("a keyframe did not decode")
        sink.add(position, frame)


def _open(
    path: str | os.PathLike[str], thread_type: str, *, probe_decodes: bool = False
) -> av.container.InputContainer:
    """Open ``path`` for reading, its first video stream (if any) decoding with ``thread_type``.

    The open's probe decodes nothing (:data:`PROBE_OPTIONS`) unless ``probe_decodes``.
    """
    import av

    options = {} if probe_decodes else dict(PROBE_OPTIONS)
    container = av.open(ffmpeg_file_name(path), metadata_errors="ignore", options=options)
    if container.streams.video:
        container.streams.video[0].thread_type = thread_type
    return container


@contextmanager
def _for_decoding(
    container: av.container.InputContainer,
    index: StreamIndex,
    path: str | os.PathLike[str],
    thread_type: str,
    *,
    rewind: bool,
    reopen: bool,
    probe_decodes: bool,
) -> Iterator[av.container.InputContainer]:
    """Yield the container to decode from, after :func:`index_stream` read ``container``.

    ``container`` itself unless ``reopen``; with ``rewind``, its next packet is the stream's
    first: it is sought back there where that lands on it (MP4, MOV, Matroska, WebM, AVI,
    MPEG-PS), and the file is opened again where it does not (MPEG-TS seeks by timestamp to a
    later packet), at the cost of a second open.
    """
    if not reopen and rewind:
        stream = container.streams.video[0]
        first = index.first_packet_pts
        if first is None:
            raise _UnexpectedStreamError("the stream has no packet")
        container.seek(first, stream=stream, backward=True, any_frame=False)
        landed = next((p for p in container.demux(stream) if p.size), None)
        reopen = landed is None or landed.pts != first
        if not reopen:
            container.seek(first, stream=stream, backward=True, any_frame=False)  # unread it
    if not reopen:
        yield container
        return
    with _open(path, thread_type, probe_decodes=probe_decodes) as again:
        yield again


def _decode_nearest(
    container: av.container.InputContainer,
    index: StreamIndex,
    targets: list[int],
    sink: _FrameSink,
    *,
    skip_nonref: bool,
    jumps: list[int],
) -> None:
    """One decoding pass; for each target, the decoded frame nearest to it (each used once).

    The pass starts at the container's next packet, the stream's first (:func:`_for_decoding`).
    ``jumps``: IDR keyframe positions the pass may jump to (the module docstring says when).
    Holds at most one decoded frame besides the output: the last one before the next target.
    """
    previous: tuple[int, av.video.frame.VideoFrame] | None = None
    pts_sorted = index.pts  # bisect on it: a NumPy call per frame costs more than the search
    jump_pts = {pts_sorted[k]: k for k in jumps}
    fed_jump = -1  # the last jump keyframe fed to the decoder
    skip_to: int | None = None  # while jumping: the pts of the keyframe to resume at
    j = fed = 0
    stream = container.streams.video[0]
    codec = stream.codec_context
    if skip_nonref:
        codec.skip_frame = "NONREF"
    for packet in container.demux(stream):
        if packet.size:
            if fed == 0 and packet.pts != index.first_packet_pts:
                raise _UnexpectedStreamError("the rewind landed elsewhere")
            if skip_to is not None and packet.pts != skip_to:
                continue
            skip_to = None
            fed_jump = max(fed_jump, jump_pts.get(int(packet.pts or 0), -1))
            fed += 1
        for frame in codec.decode(packet if packet.size else None):
            if frame.pts is None:
                raise _UnexpectedStreamError("a decoded frame has no timestamp")
            position = bisect.bisect_left(pts_sorted, frame.pts)
            if position >= len(pts_sorted) or pts_sorted[position] != frame.pts:
                raise _UnexpectedStreamError("a decoded frame is not in the index")
            if sink.positions and position <= sink.positions[-1]:
                raise _UnexpectedStreamError("frames out of presentation order")
            current: tuple[int, av.video.frame.VideoFrame] | None = (position, frame)
            while j < len(targets) and current is not None and position >= targets[j]:
                target = targets[j]
                if previous is not None and target - previous[0] < position - target:
                    sink.add(*previous)
                else:
                    sink.add(*current)
                    current = None
                previous = None
                j += 1
            previous = current
            if j == len(targets):
                break
            if skip_to is None:
                resume = _jump_target(jumps, targets[j], max(position, fed_jump))
                skip_to = None if resume is None else pts_sorted[resume]
        if j == len(targets):
            break
    if j < len(targets) and previous is not None:
        sink.add(*previous)
    logger.debug("%s: fed the decoder %d of %d packets", container.name, fed, index.total)


def _jump_target(jumps: list[int], target: int, reached: int) -> int | None:
    """Return the last jump keyframe at or before ``target`` if it lies beyond ``reached``.

    No frame before that keyframe can be the nearest decoded frame to ``target`` (the keyframe
    itself is decoded and no farther from it), nor is one needed to decode the frames after it.
    """
    k = bisect.bisect_right(jumps, target) - 1
    if k < 0 or jumps[k] <= reached:
        return None
    return jumps[k]
