"""Reading Content Credentials (C2PA) from real videos signed here by a test CA.

Every video is made by the test (``tests/support/media.py``) and signed with the official
bindings' ``Builder`` (``tests/support/c2pa_media.py``); nothing about the C2PA library is
mocked. Cases: a declared AI-generated video, a camera-style capture, a re-encode after
signing, bytes changed after signing, an unsigned video, an expired certificate, a damaged, a
huge and a remote-only manifest, a manifest in a non-video file, trust lists.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path

import c2pa
import cv2
import numpy as np
import pytest

from fakescope.client import cli
from fakescope.client.c2pa_container import C2PA_UUID, MAX_TOP_LEVEL_ENTRIES, locate_manifest
from fakescope.client.content_credentials import (
    DEFAULT_MAX_MANIFEST_BYTES,
    STATUS_SUMMARIES,
    TrustAnchorsError,
    load_trust_anchors,
    read_content_credentials,
    read_with_trust_file,
)
from tests.support.c2pa_media import (
    AI_GENERATED,
    DIGITAL_CAPTURE,
    SigningIdentity,
    append_media_padding,
    change_media_bytes,
    corrupt_manifest,
    make_test_ca,
    manifest,
    reencode,
    sign_video,
)
from tests.support.media import face_frames, make_face_video, write_video

UNTRUSTED = "signingCredential.untrusted"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("c2pa")


@pytest.fixture(scope="module")
def signer() -> SigningIdentity:
    return make_test_ca()


@pytest.fixture(scope="module")
def trust_file(folder: Path, signer: SigningIdentity) -> Path:
    path = folder / "trusted-roots.pem"
    path.write_bytes(signer.ca_pem)
    return path


@pytest.fixture(scope="module")
def unsigned(folder: Path) -> Path:
    return make_face_video(folder / "unsigned.mp4", size=(320, 180), seconds=1.0)


@pytest.fixture(scope="module")
def ai_video(folder: Path, unsigned: Path, signer: SigningIdentity) -> Path:
    return sign_video(unsigned, folder / "generated.mp4", signer, manifest(AI_GENERATED))


@pytest.fixture(scope="module")
def camera_video(folder: Path, unsigned: Path, signer: SigningIdentity) -> Path:
    made = manifest(DIGITAL_CAPTURE, generator="Test Camera", version="2.1", agent="Firmware")
    return sign_video(unsigned, folder / "camera.mp4", signer, made)


# --- signed, validating --------------------------------------------------------------------------


def test_read_reports_declared_ai_generation_untrusted_when_no_trust_list(
    ai_video: Path, signer: SigningIdentity
):
    cc = read_content_credentials(ai_video)
    assert cc.status == "valid_untrusted"
    assert cc.summary == "signed, signer not on your trust list"
    assert (cc.manifest_present, cc.validation_state) == (True, "Valid")
    assert cc.failure_codes == (UNTRUSTED,)
    assert cc.digital_source_types == ("trainedAlgorithmicMedia",)
    assert cc.declares_ai_generated
    assert cc.signer is not None
    assert (cc.signer.common_name, cc.signer.organisation) == (
        signer.common_name,
        signer.organisation,
    )
    assert cc.signer.certificate_issuer == f"{signer.organisation} Root CA ({signer.organisation})"
    assert cc.signer.valid_until is not None
    assert cc.signer.algorithm == "es256"
    assert cc.claim_generator == "FakeScope Test Generator 1.0"
    assert [(a.action, a.digital_source_type, a.software_agent) for a in cc.actions] == [
        ("c2pa.created", "trainedAlgorithmicMedia", "Test Video Model")
    ]
    assert cc.trust_list_configured is False


def test_read_reports_camera_capture_not_ai_when_signed_by_a_camera(camera_video: Path):
    cc = read_content_credentials(camera_video)
    assert cc.status == "valid_untrusted"
    assert cc.digital_source_types == ("digitalCapture",)
    assert not cc.declares_ai_generated
    assert cc.claim_generator == "Test Camera 2.1"
    assert cc.actions[0].software_agent == "Firmware"


def test_read_reports_trusted_when_signer_chains_to_a_configured_root(
    ai_video: Path, trust_file: Path
):
    cc = read_content_credentials(ai_video, load_trust_anchors(trust_file))
    assert cc.status == "valid_trusted"
    assert cc.validation_state == "Trusted"
    assert cc.failure_codes == ()
    assert cc.trust_list_configured and cc.declares_ai_generated


def test_read_reports_untrusted_when_trust_list_holds_another_root(ai_video: Path, folder: Path):
    other = folder / "other-roots.pem"
    other.write_bytes(make_test_ca(organisation="Someone Else").ca_pem)
    cc = read_content_credentials(ai_video, load_trust_anchors(other))
    assert cc.status == "valid_untrusted"
    assert cc.failure_codes == (UNTRUSTED,)
    assert cc.trust_list_configured


def test_read_finds_the_manifest_when_signed_video_is_avi(folder: Path, signer: SigningIdentity):
    avi = make_face_video(folder / "clip.avi", codec="MJPG", size=(160, 120), seconds=0.5)
    made = dict(manifest(AI_GENERATED), format="video/x-msvideo")
    signed = sign_video(avi, folder / "signed.avi", signer, made, mime_type="video/x-msvideo")
    cc = read_content_credentials(signed)
    assert (cc.status, cc.digital_source_types) == ("valid_untrusted", ("trainedAlgorithmicMedia",))


# --- no manifest ---------------------------------------------------------------------------------


def test_read_reports_absent_when_video_is_unsigned(unsigned: Path):
    cc = read_content_credentials(unsigned)
    assert (cc.status, cc.manifest_present) == ("absent", False)
    assert (cc.signer, cc.digital_source_types, cc.failure_codes) == (None, (), ())
    assert cc.summary == STATUS_SUMMARIES["absent"] == "no Content Credentials"


def test_read_reports_absent_when_signed_video_was_reencoded(ai_video: Path, folder: Path):
    copy = reencode(ai_video, folder / "reencoded.mp4")
    assert read_content_credentials(copy).status == "absent"


# --- a manifest that does not validate -----------------------------------------------------------


def test_read_reports_invalid_with_hash_mismatch_when_bytes_changed_after_signing(
    ai_video: Path, folder: Path
):
    cc = read_content_credentials(change_media_bytes(ai_video, folder / "tampered.mp4"))
    assert (cc.status, cc.validation_state) == ("invalid", "Invalid")
    assert "assertion.bmffHash.mismatch" in cc.failure_codes
    # what it claims is still shown, as an unverified claim
    assert cc.digital_source_types == ("trainedAlgorithmicMedia",)


def test_read_reports_invalid_expired_when_certificate_expired_after_signing(
    unsigned: Path, folder: Path
):
    # The SDK refuses to sign with an expired certificate; one that expires right after
    # signing is what an old signed video looks like (no trusted timestamp to prove when).
    expiry = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=2)
    short_lived = make_test_ca(not_after=expiry)
    signed = sign_video(unsigned, folder / "expired.mp4", short_lived, manifest(AI_GENERATED))
    time.sleep(max(0.0, (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.1)
    cc = read_content_credentials(signed)
    assert cc.status == "invalid"
    assert "signingCredential.expired" in cc.failure_codes
    assert cc.signer is not None and cc.signer.valid_until == expiry.isoformat()


# --- bad or hostile manifests --------------------------------------------------------------------


def test_read_reports_unreadable_corrupt_when_manifest_box_is_damaged(ai_video: Path, folder: Path):
    cc = read_content_credentials(corrupt_manifest(ai_video, folder / "damaged.mp4"))
    assert (cc.status, cc.reason, cc.manifest_present) == ("unreadable", "corrupt", True)
    assert cc.message


def test_read_refuses_before_parsing_when_manifest_exceeds_the_cap(
    unsigned: Path, folder: Path, signer: SigningIdentity
):
    padding = {"label": "org.fakescope.padding", "data": {"pad": "x" * 300_000}}
    made = manifest(AI_GENERATED, extra_assertions=[padding])
    big = sign_video(unsigned, folder / "big-manifest.mp4", signer, made)
    refused = read_content_credentials(big, max_manifest_bytes=64 * 1024)
    assert (refused.status, refused.reason) == ("unreadable", "too_large")
    assert refused.signer is None  # nothing was parsed
    # the same file under the default cap validates: the cap, not the file, refused it
    assert DEFAULT_MAX_MANIFEST_BYTES > 300_000
    assert read_content_credentials(big).status == "valid_untrusted"


def test_read_caps_what_it_reports_when_manifest_holds_long_texts_and_many_actions(
    unsigned: Path, folder: Path, signer: SigningIdentity
):
    made = manifest(AI_GENERATED, generator="G" * 500, agent="A\n" * 300)
    made["assertions"][0]["data"]["actions"] += [{"action": "c2pa.edited"}] * 60
    cc = read_content_credentials(sign_video(unsigned, folder / "noisy.mp4", signer, made))
    assert cc.status == "valid_untrusted"
    assert cc.claim_generator is not None and len(cc.claim_generator) <= 200
    assert len(cc.actions) == 32
    agent = cc.actions[0].software_agent
    assert agent is not None and "\n" not in agent and len(agent) <= 200


def test_read_reports_timeout_when_reading_outlasts_the_deadline(ai_video: Path, folder: Path):
    # 64 MiB more to hash: ~0.2 s here, far past a 20 ms deadline
    big = append_media_padding(ai_video, folder / "padded.mp4", 64)
    cc = read_content_credentials(big, timeout_s=0.02)
    assert (cc.status, cc.reason) == ("error", "timeout")  # answered without the hash's result
    finished = read_content_credentials(big)  # given time, it is read (and fails the hash)
    assert finished.status == "invalid"


def test_read_never_fetches_when_only_a_remote_manifest_link_is_embedded(
    unsigned: Path, folder: Path, signer: SigningIdentity
):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    info = c2pa.C2paSignerInfo(
        alg=b"es256", sign_cert=signer.chain_pem, private_key=signer.key_pem, ta_url=None
    )
    remote = folder / "remote.mp4"
    with (
        c2pa.Builder(json.dumps(manifest(AI_GENERATED))) as builder,
        c2pa.Signer.from_info(info) as c2pa_signer,
        open(unsigned, "rb") as source,
        open(remote, "w+b") as target,
    ):
        builder.set_remote_url(f"http://127.0.0.1:{port}/manifest.c2pa")
        builder.set_no_embed()
        builder.sign(c2pa_signer, "video/mp4", source, target)
    try:
        cc = read_content_credentials(remote)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    assert (cc.status, cc.reason) == ("unreadable", "remote_manifest")
    assert f"127.0.0.1:{port}" in (cc.message or "")


def test_read_reports_unsupported_when_manifest_is_in_an_image_named_mp4(
    folder: Path, signer: SigningIdentity
):
    image = folder / "still.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    made = dict(manifest(AI_GENERATED), format="image/png")
    disguised = sign_video(image, folder / "still.mp4", signer, made, mime_type="image/png")
    cc = read_content_credentials(disguised)
    assert cc.status == "unsupported"
    assert "PNG image" in (cc.message or "")


def test_read_reports_unsupported_when_container_has_no_c2pa_binding(folder: Path):
    webm = write_video(
        folder / "clip.webm", face_frames(seconds=0.4, fps=5, size=(96, 64)), fps=5, codec="vp9"
    )
    cc = read_content_credentials(webm)
    assert (cc.status, cc.message) == ("unsupported", "a Matroska/WebM video")


def test_read_reports_error_not_raises_when_path_is_missing_or_a_folder(folder: Path):
    missing = read_content_credentials(folder / "nope.mp4")
    assert (missing.status, missing.reason) == ("error", "io")
    assert read_content_credentials(folder).message == "not a regular file"


def test_to_dict_is_strict_json_with_every_field_when_credentials_read(ai_video: Path):
    as_dict = read_content_credentials(ai_video).to_dict()
    text = json.dumps(as_dict, allow_nan=False)
    assert json.loads(text) == as_dict
    assert as_dict["status"] == "valid_untrusted" and as_dict["declares_ai_generated"] is True
    assert as_dict["signer"]["common_name"] == "FakeScope Test Signer"
    assert as_dict["actions"][0]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert isinstance(as_dict["read_seconds"], float)


# --- trust lists ---------------------------------------------------------------------------------


def test_load_trust_anchors_returns_the_certificates_when_file_holds_several(
    folder: Path, signer: SigningIdentity
):
    path = folder / "two-roots.pem"
    path.write_bytes(b"# comment\n" + signer.ca_pem + make_test_ca().ca_pem)
    assert load_trust_anchors(path).count("BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "no certificate"),
        (b"just text\n", "no certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be parsed"),
        (b"\xff\xfe binary", "not a PEM file"),
    ],
)
def test_load_trust_anchors_raises_a_clear_error_when_file_is_unusable(
    folder: Path, content: bytes | None, message: str
):
    path = folder / f"bad-{abs(hash((content, message)))}.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrustAnchorsError, match=message) as info:
        load_trust_anchors(path)
    assert str(path) in str(info.value)


def test_load_trust_anchors_refuses_when_file_holds_a_private_key(
    folder: Path, signer: SigningIdentity
):
    path = folder / "with-key.pem"
    path.write_bytes(signer.ca_pem + signer.key_pem)
    with pytest.raises(TrustAnchorsError, match="private key"):
        load_trust_anchors(path)


def test_analyze_parser_exits_2_when_trust_anchors_file_has_no_certificate(
    folder: Path, capsys: pytest.CaptureFixture[str]
):
    empty = folder / "empty-roots.pem"
    empty.write_text("")
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["video.mp4", "--trust-anchors", str(empty)])
    assert info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--trust-anchors" in err and "no certificate" in err


def test_read_reports_trust_list_error_not_a_bad_manifest_when_anchors_are_garbage(
    ai_video: Path,
):
    cc = read_content_credentials(ai_video, "-----BEGIN CERTIFICATE-----\ngarbage\n")
    assert (cc.status, cc.reason) == ("error", "trust_list")


def test_read_with_trust_file_reports_error_when_trust_file_became_unusable(
    ai_video: Path, folder: Path, signer: SigningIdentity
):
    path = folder / "rotating.pem"
    path.write_bytes(signer.ca_pem)
    assert read_with_trust_file(ai_video, path).status == "valid_trusted"
    path.write_text("emptied by mistake\n")
    cc = read_with_trust_file(ai_video, path)
    assert (cc.status, cc.reason, cc.trust_list_configured) == ("error", "trust_list", True)


def _top_level_boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset, size, type)`` of an MP4's top-level boxes (32-bit sizes)."""
    boxes, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append((offset, size, data[offset + 4 : offset + 8]))
        offset += size
    return boxes


def test_read_refuses_without_the_reader_when_the_file_has_more_top_level_boxes_than_walked(
    ai_video: Path, folder: Path
):
    data = ai_video.read_bytes()
    (ftyp_end, *_), *_ = [(o + s, s, t) for o, s, t in _top_level_boxes(data) if t == b"ftyp"]
    filler = b"\x00\x00\x00\x08free" * (MAX_TOP_LEVEL_ENTRIES + 1)  # 80 KB of empty boxes
    crowded = folder / "crowded.mp4"
    crowded.write_bytes(data[:ftyp_end] + filler + data[ftyp_end:])
    cc = read_content_credentials(crowded)
    # refused by the walk, before the native read (whose time grows with the boxes' square)
    assert (cc.status, cc.reason) == ("unreadable", "too_large")
    assert f"more than {MAX_TOP_LEVEL_ENTRIES} top-level boxes" in (cc.message or "")


def test_locate_manifest_counts_a_c2pa_box_when_its_size_is_64_bit(ai_video: Path, folder: Path):
    data = ai_video.read_bytes()
    (offset, size, _), *_ = [
        b
        for b in _top_level_boxes(data)
        if b[2] == b"uuid" and data[b[0] + 8 : b[0] + 24] == C2PA_UUID
    ]
    large = (1).to_bytes(4, "big") + b"uuid" + (size + 8).to_bytes(8, "big")
    rewritten = folder / "largesize.mp4"
    rewritten.write_bytes(
        data[:offset] + large + data[offset + 8 : offset + size] + data[offset + size :]
    )
    assert locate_manifest(rewritten).manifest_bytes == size + 8
    refused = read_content_credentials(rewritten, max_manifest_bytes=size // 2)
    assert (refused.status, refused.reason) == ("unreadable", "too_large")
