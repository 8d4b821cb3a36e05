"""Video frames in and out, one frame at a time, for ``mgml_tf.predict`` (docs/CLI.md, "mgml_tf.predict").

Through PyAV (``pip install 'mgml_tf[video]'``), the Python bindings of FFmpeg's libraries, chosen because its
wheels carry FFmpeg inside (no ffmpeg program to install, nothing piped through a subprocess as imageio's
ffmpeg plugin does), it decodes a stream frame by frame with the stream's exact rational frame rate, and it
raises a typed error (``av.error.FFmpegError``) for a file it cannot read, where OpenCV's ``VideoCapture``
only returns no frame and its writer's codecs depend on how OpenCV was built.

``VideoReader`` decodes the first frame when it opens the file, so a file that is not a video, or whose
video cannot be decoded, is refused before anything is written; later frames are decoded as they are read,
so a video of any length takes the memory of a few frames. ``VideoWriter`` encodes H.264 in MP4 (MPEG-4 Part
2 where the FFmpeg build has no H.264 encoder) at a constant frame rate.
"""

import fractions
import os

import numpy as np

from mgml_tf.errors import RunError, UsageError, one_line

#: File name extensions ``mgml_tf.predict`` reads as videos (lower case).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")


def _av():
    try:
        import av
    except ImportError:
        raise UsageError(
            "reading and writing videos needs PyAV: pip install 'mgml_tf[video]' (or pip install av)"
        ) from None
    return av


def _reason(error):
    """FFmpeg's message without the errno and the file name PyAV appends."""
    text = getattr(error, "strerror", None) or str(error)
    return one_line(text)[:160]


class VideoReader:
    """The frames of a video file as uint8 RGB ``[H, W, 3]`` arrays, decoded one at a time.

    Opening reads the container and decodes the first frame; a file that cannot be opened, has no video
    stream, no frame rate or no decodable frame raises ``RunError`` naming it. Attributes: ``rate`` (frames
    per second, a ``Fraction``), ``width``, ``height``, ``num_frames`` (from the container; None when it
    does not say)."""

    def __init__(self, path):
        av = _av()
        self.path = path
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, OSError) as e:
            raise RunError(f"cannot read video {path}: {_reason(e)}; is it a video file?") from None
        try:
            if not self._container.streams.video:
                raise RunError(f"cannot read video {path}: it holds no video stream")
            stream = self._container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise RunError(f"cannot read video {path}: its video stream has no frame rate")
            self.rate = fractions.Fraction(rate)
            self._frames = self._container.decode(stream)
            try:
                self._first = self._next()
            except StopIteration:
                raise RunError(f"cannot read video {path}: its video stream holds no frame") from None
            self.height, self.width = self._first.shape[:2]
            self.num_frames = int(stream.frames) or None
        except BaseException:
            self._container.close()
            raise

    def _next(self):
        av = _av()
        try:
            frame = next(self._frames)
        except av.error.FFmpegError as e:
            raise RunError(f"cannot read video {self.path}: {_reason(e)} (the file is damaged)") from None
        return frame.to_ndarray(format="rgb24")

    def __iter__(self):
        """Every frame once, the first (decoded at opening) included."""
        first, self._first = self._first, None
        if first is None:
            return
        yield first
        while True:
            try:
                yield self._next()
            except StopIteration:
                return

    def close(self):
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoWriter:
    """Writes uint8 RGB frames of one size to an MP4 file at ``rate`` frames per second.

    H.264 (libx264, quality ``crf`` 18: colour masks stay crisp) in 4:2:0 chroma when the width and height
    are even, which every player reads, else in 4:4:4, which H.264 allows at odd sizes; MPEG-4 Part 2 (even
    sizes only) where FFmpeg has no libx264."""

    def __init__(self, path, rate, width, height):
        av = _av()
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        even = width % 2 == 0 and height % 2 == 0
        if not even and codec != "libx264":
            raise RunError(
                f"cannot write {path}: {width}x{height} frames need H.264 (libx264), which this FFmpeg lacks"
            )
        self.path = path
        self._container = av.open(path, mode="w")
        try:
            options = {"crf": "18"} if codec == "libx264" else {}
            self._stream = self._container.add_stream(codec, rate=fractions.Fraction(rate), options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p" if even else "yuv444p"
        except BaseException:
            self._container.close()
            raise
        self._av = av

    def write(self, frame):
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, np.uint8), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self):
        """Flushes the encoder and finishes the file."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()


def is_video(path):
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS
