"""Signed videos for the tests and the cost benchmark: a test CA, C2PA manifests, edits.

Not a test module (the tests import it through ``tests/support/c2pa_media.py``).
:func:`make_test_ca` makes a root CA and a C2PA signing certificate with ``cryptography`` (EC
P-256) at run time: a leaf that is not self-signed, with KeyUsage ``digitalSignature``, EKU
``emailProtection`` and subject/authority key identifiers — without the key identifiers the
C2PA library refuses the certificate ("the certificate is invalid"). :func:`sign_video` embeds
a manifest with ``c2pa.Builder``; the helpers below make the other cases: bytes changed after
signing, a re-encode, a damaged manifest box, a file padded to hash for longer.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fakescope.client.c2pa_container import C2PA_UUID

__all__ = [
    "AI_GENERATED",
    "DIGITAL_CAPTURE",
    "IPTC",
    "SigningIdentity",
    "append_media_padding",
    "change_media_bytes",
    "corrupt_manifest",
    "make_test_ca",
    "manifest",
    "reencode",
    "sign_video",
]

IPTC: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED: Final = IPTC + "trainedAlgorithmicMedia"
DIGITAL_CAPTURE: Final = IPTC + "digitalCapture"


@dataclass(frozen=True)
class SigningIdentity:
    """A signing certificate chain (leaf + CA, PEM), its key, and the CA's certificate."""

    chain_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    common_name: str
    organisation: str


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_test_ca(
    *,
    organisation: str = "FakeScope Test Studio",
    common_name: str = "FakeScope Test Signer",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> SigningIdentity:
    """Make a root CA and a C2PA signing certificate it issued (validity: a day ago … +30 d)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organisation} Root CA", organisation)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organisation))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningIdentity(_pem(leaf) + _pem(ca), key_pem, _pem(ca), common_name, organisation)


def manifest(
    source_type: str,
    *,
    generator: str = "FakeScope Test Generator",
    version: str = "1.0",
    agent: str = "Test Video Model",
    extra_assertions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return a manifest whose ``c2pa.created`` action declares ``source_type`` (IPTC URI)."""
    return {
        "claim_generator_info": [{"name": generator, "version": version}],
        "title": "video.mp4",
        "format": "video/mp4",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": source_type,
                            "softwareAgent": {"name": agent},
                        }
                    ]
                },
            },
            *(extra_assertions or []),
        ],
    }


def sign_video(
    src: Path,
    dst: Path,
    signer: SigningIdentity,
    manifest_json: dict[str, Any],
    *,
    mime_type: str = "video/mp4",
) -> Path:
    """Embed ``manifest_json`` signed by ``signer`` (ES256, no timestamp) in a copy of ``src``."""
    info = c2pa.C2paSignerInfo(
        alg=b"es256", sign_cert=signer.chain_pem, private_key=signer.key_pem, ta_url=None
    )
    with (
        c2pa.Builder(json.dumps(manifest_json)) as builder,
        c2pa.Signer.from_info(info) as c2pa_signer,
        open(src, "rb") as source,
        open(dst, "w+b") as target,
    ):
        builder.sign(c2pa_signer, mime_type, source, target)
    return dst


def change_media_bytes(src: Path, dst: Path, count: int = 64) -> Path:
    """Copy ``src`` with ``count`` bytes inverted inside its ``mdat`` (the pictures)."""
    data = bytearray(src.read_bytes())
    mdat = data.find(b"mdat")
    if mdat < 0:
        raise ValueError(f"{src}: no mdat box")
    start = mdat + 4 + (len(data) - mdat) // 2
    for i in range(start, start + count):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def corrupt_manifest(src: Path, dst: Path) -> Path:
    """Copy ``src`` with the inside of its C2PA ``uuid`` box overwritten (a damaged manifest)."""
    data = bytearray(src.read_bytes())
    at = data.find(C2PA_UUID)
    if at < 0:
        raise ValueError(f"{src}: no C2PA manifest box")
    for i in range(at + 40, at + 200):
        data[i] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def reencode(src: Path, dst: Path) -> Path:
    """Decode ``src`` and encode its pictures again with H.264 (what an editor or host does)."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as target:
        video = source.streams.video[0]
        stream = target.add_stream("libx264", rate=video.average_rate or 10)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for frame in source.decode(video):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return dst


def append_media_padding(src: Path, dst: Path, mib: int) -> Path:
    """Copy ``src`` and append an ``mdat`` box of ``mib`` MiB of zeros (a sparse file).

    The signature no longer matches, but the C2PA reader still hashes every byte: a cheap way
    to make a big file whose reading takes measurably long.
    """
    payload = mib * 1024 * 1024
    with open(dst, "wb") as out:
        out.write(src.read_bytes())
        out.write((payload + 8).to_bytes(4, "big") + b"mdat")
        out.truncate(out.tell() + payload)  # zeros without writing them
    return dst
