"""``fakescope analyze --jobs``: several videos at once against the session's real Triton.

Each job has its own client and, on loopback, its own shared-memory region: the verdicts must
be those one job gives, in the order given, and no region may outlive the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fakescope.client import cli
from fakescope.serving.embedded import EmbeddedTriton
from tests.support.media import make_face_video, make_no_face_video
from tests.support.servers import client_regions


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("cli-jobs")
    # 4 s and more: 2 s budgets, room for each to wait for the others at the server (a 1 s
    # video's 0.5 s may not leave it, and the server then refuses it: the product limit)
    face = make_face_video(root / "face.mp4", size=(320, 180), seconds=4.0, fps=4)
    empty = make_no_face_video(root / "coffee.mp4", size=(320, 180), seconds=4.0, fps=4)
    small = make_face_video(root / "small.mp4", size=(240, 160), seconds=6.0, fps=4)
    return [face, empty, small, face]


def _verdicts(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], videos: list[Path], jobs: int
) -> list[dict[str, Any]]:
    capsys.readouterr()
    argv = [*map(str, videos), "--url", triton.address.grpc_url, "--frames", "4", "--json"]
    code = cli.main([*argv, "--jobs", str(jobs)])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    return [json.loads(line) for line in out.splitlines()]


def test_analyze_cli_gives_the_one_job_verdicts_in_order_when_jobs_share_the_server(
    triton: EmbeddedTriton, capsys: pytest.CaptureFixture[str], videos: list[Path]
) -> None:
    alone = _verdicts(triton, capsys, videos, jobs=1)
    together = _verdicts(triton, capsys, videos, jobs=3)
    assert [v["video"] for v in together] == [str(v) for v in videos]
    assert [v["label"] for v in together] == [v["label"] for v in alone]
    assert [v["label"] for v in together][1] == "NO_FACE"
    for one, other in zip(alone, together, strict=True):
        assert other["faces"] == one["faces"]
        if one["fake_probability"] is None:
            assert other["fake_probability"] is None
        else:
            assert other["fake_probability"] == pytest.approx(one["fake_probability"], abs=1e-5)
    assert client_regions(triton) == []  # every job's region went with its client
