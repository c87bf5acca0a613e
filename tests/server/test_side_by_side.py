"""The side-by-side harness on two real servers: both answer, the figures are recorded."""

from __future__ import annotations

import pytest

from fakescope.benchmarks.side_by_side import Contender, measure, running_side_by_side
from fakescope.serving.detector_nets import BLS, IN_PROCESS
from fakescope.serving.embedded import ServerAddress, ServerStartError
from tests.support.media import make_face_video
from tests.support.servers import REPOSITORY, free_ports


def test_side_by_side_measures_every_server_when_both_find_the_same_faces(tmp_path):
    video = make_face_video(tmp_path / "face.mp4", size=(320, 180), seconds=1.0)
    ports = free_ports(6)
    addresses = [ServerAddress("127.0.0.1", *ports[:3]), ServerAddress("127.0.0.1", *ports[3:])]
    # the two placements of the detector's nets find the same faces (a real-server test says so)
    contenders = {p: Contender(REPOSITORY, detector_nets=p) for p in (IN_PROCESS, BLS)}
    with running_side_by_side(contenders, addresses, "test-side-by-side") as servers:
        assert {s.address for s in servers.values()} == set(addresses)
        rows = measure([video], servers, runs=2)
    assert not any(s.process for s in servers.values())  # stopped on leaving the block
    (row,) = rows
    assert row["video"] == "face.mp4"
    assert row["size"] == [320, 180]
    assert row["faces"] > 0
    for name in (IN_PROCESS, BLS):
        assert row[name]["wall_s"] > 0
        assert row[name]["server_cpu_s"] > 0  # read from the server's processes: it worked
        assert row[name]["faulted_mib"] >= 0  # 0 where its memory is reused, as it may be


def test_side_by_side_serves_the_working_dirs_package_when_a_contender_names_one(tmp_path):
    # repository_ab --code serves an earlier commit's package from that commit's tree: a tree
    # whose fakescope cannot be imported makes the python models fail to load, so the server's
    # stubs took fakescope from the working directory, not from this checkout
    tree = tmp_path / "earlier"
    (tree / "fakescope").mkdir(parents=True)
    (tree / "fakescope" / "__init__.py").write_text(
        'raise ImportError("fakescope of the earlier tree")\n'
    )
    contender = Contender(REPOSITORY, working_dir=tree)
    address = ServerAddress("127.0.0.1", *free_ports(3))
    with (
        pytest.raises(ServerStartError, match="fakescope of the earlier tree"),
        running_side_by_side({"earlier": contender}, [address], "test-side-by-side-tree"),
    ):
        pass
