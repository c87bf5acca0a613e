"""Regenerate the bundled sample videos (run from the repository root with the dev extra).

    python -m samples.make_samples

The faces come from scikit-image's bundled public-domain photos, so the samples can be rebuilt
on any machine; the output is H.264 in MP4, as users upload it.
"""

from __future__ import annotations

from pathlib import Path

from fakescope.benchmarks.media import make_face_video, make_no_face_video

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write the sample videos next to this script."""
    make_face_video(
        HERE / "astronaut_face_720p.mp4", seconds=6, fps=25, size=(1280, 720), codec="libx264"
    )
    make_no_face_video(
        HERE / "coffee_no_face_360p.mp4", seconds=4, fps=25, size=(640, 360), codec="libx264"
    )


if __name__ == "__main__":
    main()
