"""Content Credentials (C2PA): what a video's signed manifest says, read beside the verdict.

:func:`read_content_credentials` reads the embedded C2PA manifest store of a video with the
official bindings (``c2pa-python``) and reports it as a :class:`ContentCredentials`: whether a
manifest is present, its validation state and failure codes, the signer, the claim generator,
the declared digital source type and the recorded actions. It is evidence *beside* the
classifier's score, never blended into it: the CLI's ``--json`` and the web service carry it as
the ``content_credentials`` object next to the verdict's fields.

Statuses (stable, machine-readable; :data:`STATUS_SUMMARIES` has the words):

* ``absent`` — a container C2PA can be embedded in (MP4/MOV, AVI) without a manifest. Normal:
  most videos are unsigned, and re-encoding or re-uploading drops a manifest.
* ``unsupported`` — C2PA has no binding for this file as a video (WebM, MPEG-TS, an image, …);
  nothing is read.
* ``valid_trusted`` — signature and hashes validate, and the signer chains to a root in *your*
  trust list (the PEM file given as ``trust_anchors_pem``).
* ``valid_untrusted`` — signature and hashes validate, but the signer is not on your trust list
  (always so when no trust list is configured): "signed, signer not on your trust list".
* ``invalid`` — a manifest is present but does not validate (``failure_codes`` say why:
  ``assertion.bmffHash.mismatch`` after the video's bytes changed, ``signingCredential.expired``,
  …). What it claims cannot be relied on.
* ``unreadable`` — a manifest is present but cannot be read (``reason``: ``corrupt``,
  ``too_large``, ``remote_manifest``).
* ``error`` — the check itself failed (``reason``: ``timeout``, ``io``, ``trust_list``,
  ``internal``); the job is not affected.

Nothing here raises for a bad or hostile video: every failure is a status. Work is bounded: a
manifest store over ``max_manifest_bytes`` is refused before the native library loads it (see
:mod:`fakescope.client.c2pa_container`), compressed manifests may not inflate past the same cap,
and the native read runs under a wall-clock deadline. The reader never goes online: remote
manifests and OCSP are not fetched (a video must not make a server contact a URL it names).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeVar

import c2pa
from cryptography import x509

from fakescope.client.c2pa_container import TOO_MANY_ENTRIES, locate_manifest

__all__ = [
    "AI_SOURCE_TYPES",
    "DEFAULT_MAX_MANIFEST_BYTES",
    "DEFAULT_TIMEOUT_S",
    "JSON_FIELD",
    "STATUS_SUMMARIES",
    "ContentCredentials",
    "CredentialsStatus",
    "RecordedAction",
    "SignerInfo",
    "TrustAnchorsError",
    "load_trust_anchors",
    "read_content_credentials",
    "read_with_trust_file",
]

logger = logging.getLogger(__name__)

#: The key of the Content Credentials object beside a verdict's fields (CLI JSON, web, webhook).
JSON_FIELD: Final = "content_credentials"

#: Manifest stores larger than this are not read. Real ones are kilobytes to a few megabytes
#: (claims, certificate chains, JPEG thumbnails of the asset and its ingredients); the cap keeps
#: a hostile file from making the reader allocate and parse hundreds of megabytes.
DEFAULT_MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
#: Wall-clock limit of one native read. Reading costs milliseconds (the file's bytes are hashed
#: once; see benchmarks/results/content_credentials_cost.json); this is a backstop so that a
#: pathological file cannot hold an analysis job.
DEFAULT_TIMEOUT_S: Final = 5.0
#: A trust-anchor file larger than this is refused (trust lists are kilobytes).
MAX_TRUST_ANCHORS_BYTES: Final = 4 * 1024 * 1024

CredentialsStatus = Literal[
    "absent",
    "unsupported",
    "valid_trusted",
    "valid_untrusted",
    "invalid",
    "unreadable",
    "error",
]

#: One line per status, for people (the CLI's line, the page's panel heading).
STATUS_SUMMARIES: Final[dict[str, str]] = {
    "absent": "no Content Credentials",
    "unsupported": "not checked: C2PA cannot be embedded in this kind of file",
    "valid_trusted": "signed by a signer on your trust list",
    "valid_untrusted": "signed, signer not on your trust list",
    "invalid": "Content Credentials present but they do not validate",
    "unreadable": "Content Credentials present but unreadable",
    "error": "Content Credentials could not be checked",
}

#: IPTC digital source types that declare media made by a trained model (generative AI).
AI_SOURCE_TYPES: Final = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
)
_IPTC_SOURCE_TYPE_PREFIXES: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/",
    "https://cv.iptc.org/newscodes/digitalsourcetype/",
)

#: Hostile manifests can hold anything: what is reported is capped.
_MAX_ITEMS: Final = 32
_MAX_TEXT: Final = 200

_UNTRUSTED: Final = "signingCredential.untrusted"
_PEM_CERTIFICATE: Final = re.compile(
    r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)
_PEM_PRIVATE_KEY: Final = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


class TrustAnchorsError(ValueError):
    """The trust-anchor file is missing, unreadable, holds no certificate or a bad one."""


class _TrustListRefusedError(Exception):
    """The C2PA library refused the trust anchors it was given (not the video's fault)."""


@dataclass(frozen=True)
class SignerInfo:
    """Who signed the manifest, as its signing certificate states (unverified unless trusted).

    Attributes:
        common_name: the signing certificate's common name.
        organisation: the organisation in the signing certificate (C2PA's ``issuer`` field).
        certificate_issuer: who issued the signing certificate (its issuer's CN and O).
        valid_until: the end of the signing certificate's validity (RFC 3339).
        algorithm: the signature algorithm (``es256``, ``ps256``, …).
        time: the trusted timestamp of the signature, when it has one (RFC 3339).

    """

    common_name: str | None
    organisation: str | None
    certificate_issuer: str | None = None
    valid_until: str | None = None
    algorithm: str | None = None
    time: str | None = None


@dataclass(frozen=True)
class RecordedAction:
    """One action of the active manifest's ``c2pa.actions`` assertion."""

    action: str
    digital_source_type: str | None = None
    software_agent: str | None = None
    when: str | None = None


@dataclass(frozen=True)
class ContentCredentials:
    """What the C2PA manifest of one video says, and whether it validates (see module doc).

    ``failure_codes`` lists every C2PA failure code reported (``signingCredential.untrusted``
    included); ``digital_source_types`` are the IPTC names (``trainedAlgorithmicMedia``, …) of
    the active manifest's actions, or the declared value when it is not an IPTC term.
    """

    status: CredentialsStatus
    manifest_present: bool | None
    trust_list_configured: bool
    validation_state: str | None = None
    failure_codes: tuple[str, ...] = ()
    signer: SignerInfo | None = None
    claim_generator: str | None = None
    digital_source_types: tuple[str, ...] = ()
    actions: tuple[RecordedAction, ...] = ()
    reason: str | None = None
    message: str | None = None
    read_seconds: float | None = None

    @property
    def summary(self) -> str:
        """The status in words ("signed, signer not on your trust list", …)."""
        return STATUS_SUMMARIES[self.status]

    @property
    def declares_ai_generated(self) -> bool:
        """The manifest *declares* (it does not prove) media made by a trained model.

        Only a claim to rely on when ``status`` is ``valid_trusted`` or ``valid_untrusted``.
        """
        return bool(AI_SOURCE_TYPES.intersection(self.digital_source_types))

    def one_line(self) -> str:
        """Return the credentials in one line, for the CLI's text output."""
        parts = [self.summary]
        failures = [c for c in self.failure_codes if c != _UNTRUSTED]
        if self.status == "invalid" and failures:
            parts.append(", ".join(failures))
        if self.message:
            parts.append(self.message)
        if self.digital_source_types:
            declared = ", ".join(self.digital_source_types)
            ai = "AI-generated media " if self.declares_ai_generated else ""
            parts.append(f"declares {ai}({declared})")
        if self.signer is not None:
            who = self.signer.common_name or "?"
            org = self.signer.organisation
            parts.append(f"signer {who}" + (f" ({org})" if org else ""))
        if self.claim_generator:
            parts.append(f"made with {self.claim_generator}")
        return "; ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (the ``content_credentials`` object; JSON-safe, no NaN)."""
        return {
            "status": self.status,
            "summary": self.summary,
            "manifest_present": self.manifest_present,
            "validation_state": self.validation_state,
            "failure_codes": list(self.failure_codes),
            "signer": None if self.signer is None else dataclasses.asdict(self.signer),
            "claim_generator": self.claim_generator,
            "digital_source_types": list(self.digital_source_types),
            "declares_ai_generated": self.declares_ai_generated,
            "actions": [
                {
                    "action": a.action,
                    "digital_source_type": a.digital_source_type,
                    "software_agent": a.software_agent,
                    "when": a.when,
                }
                for a in self.actions
            ],
            "trust_list_configured": self.trust_list_configured,
            "reason": self.reason,
            "message": self.message,
            "read_seconds": None if self.read_seconds is None else round(self.read_seconds, 4),
        }


def load_trust_anchors(path: str | os.PathLike[str]) -> str:
    """Read a PEM file of trusted root certificates; return its certificates as PEM text.

    Raises:
        TrustAnchorsError: the file is missing or unreadable, larger than
            :data:`MAX_TRUST_ANCHORS_BYTES`, holds a private key, holds no ``CERTIFICATE``
            block, or a certificate the C2PA library cannot parse. The message names the path.

    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_TRUST_ANCHORS_BYTES:
            raise TrustAnchorsError(
                f"{p}: {size} bytes; a trust list is at most {MAX_TRUST_ANCHORS_BYTES} bytes"
            )
        text = p.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise TrustAnchorsError(f"{p}: not a PEM file (not ASCII text)") from None
    except OSError as exc:
        raise TrustAnchorsError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if _PEM_PRIVATE_KEY.search(text):
        raise TrustAnchorsError(
            f"{p}: holds a private key; a trust list holds certificates only (remove the key)"
        )
    certificates = _PEM_CERTIFICATE.findall(text)
    if not certificates:
        raise TrustAnchorsError(f"{p}: no certificate (no PEM 'BEGIN CERTIFICATE' block)")
    pem = "\n".join(certificates) + "\n"
    try:
        # The SDK accepts any base64 between PEM markers and would just never match it.
        x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError as exc:
        raise TrustAnchorsError(f"{p}: a certificate cannot be parsed: {exc}") from None
    try:
        c2pa.Context.from_dict(_reader_settings(pem)).close()
    except c2pa.C2paError as exc:
        raise TrustAnchorsError(f"{p}: a certificate cannot be used: {exc}") from None
    return pem


def read_content_credentials(
    path: str | os.PathLike[str],
    trust_anchors_pem: str | None = None,
    *,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ContentCredentials:
    """Read and validate the C2PA manifest embedded in the video at ``path``.

    Args:
        path: a local file.
        trust_anchors_pem: trusted root certificates (PEM text, e.g. from
            :func:`load_trust_anchors`); ``None``: no trust list, so no signer is trusted.
        max_manifest_bytes: a larger manifest store is refused (``unreadable``/``too_large``)
            before the native library reads it.
        timeout_s: the native read is abandoned after this long (``error``/``timeout``).

    Never raises for a bad input: every outcome is a status (see the module docstring).

    """
    start = time.perf_counter()
    result = _read(path, trust_anchors_pem, max_manifest_bytes, timeout_s)
    if result.status == "error":
        # Reported in the result; logged for the operator, below warning level so that the
        # CLI's stderr stays one line per failed *video*.
        logger.info("%s: content credentials not checked: %s", path, result.message)
    return dataclasses.replace(result, read_seconds=time.perf_counter() - start)


def read_with_trust_file(
    path: str | os.PathLike[str],
    trust_anchors_path: str | os.PathLike[str] | None,
    **limits: Any,
) -> ContentCredentials:
    """Like :func:`read_content_credentials`, with the trust list read from its PEM file.

    For a long-running service: the file is read on every call (a replaced trust list takes
    effect without a restart; reading a few kilobytes costs microseconds), and a file that has
    become unusable is reported as ``error``/``trust_list`` instead of raised. ``limits`` are
    ``max_manifest_bytes``/``timeout_s``.
    """
    if trust_anchors_path is None:
        return read_content_credentials(path, None, **limits)
    try:
        anchors = load_trust_anchors(trust_anchors_path)
    except TrustAnchorsError as exc:
        logger.error("content credentials not checked: trust list unusable: %s", exc)
        return ContentCredentials(
            "error", None, True, reason="trust_list", message=f"trust list unusable: {exc}"
        )
    return read_content_credentials(path, anchors, **limits)


# --- internals -------------------------------------------------------------------------------


def _read(
    path: str | os.PathLike[str],
    anchors: str | None,
    max_manifest_bytes: int,
    timeout_s: float,
) -> ContentCredentials:
    anchored = anchors is not None

    def outcome(
        status: CredentialsStatus, present: bool | None, **facts: Any
    ) -> ContentCredentials:
        return ContentCredentials(status, present, anchored, **facts)

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            # A FIFO or device would block or never end; uploads and videos are plain files.
            return outcome("error", None, reason="io", message="not a regular file")
        location = locate_manifest(path)
    except OSError as exc:
        return outcome("error", None, reason="io", message=f"cannot read the file: {exc.strerror}")
    if location.container is None:
        return outcome("unsupported", False, message=location.what)
    if location.incomplete is not None:
        # not handed to the C2PA reader: what was not walked could hold a manifest of any size,
        # and the reader's time grows with the boxes' number past its deadline
        return outcome(
            "unreadable",
            True if location.manifest_bytes else None,
            reason="too_large" if location.incomplete == TOO_MANY_ENTRIES else "corrupt",
            message=f"{location.what} whose structure cannot be checked: {location.incomplete}",
        )
    if location.manifest_bytes > max_manifest_bytes:
        return outcome(
            "unreadable",
            True,
            reason="too_large",
            message=f"the manifest store declares {location.manifest_bytes} bytes; at most "
            f"{max_manifest_bytes} are read",
        )
    try:
        native = _with_deadline(
            lambda: _native_read(path, location.mime_type, anchors, max_manifest_bytes), timeout_s
        )
    except TimeoutError:
        return outcome(
            "error",
            None,
            reason="timeout",
            message=f"reading the manifest took longer than {timeout_s:g} s; abandoned",
        )
    except _TrustListRefusedError as exc:
        return outcome("error", None, reason="trust_list", message=f"trust list refused: {exc}")
    except c2pa.C2paError as exc:
        return _from_c2pa_error(exc, anchored)
    except OSError as exc:
        return outcome("error", None, reason="io", message=f"cannot read the file: {exc.strerror}")
    except Exception as exc:  # a bug in the bindings must not fail the analysis job
        logger.exception("%s: unexpected failure reading content credentials", path)
        return outcome("error", None, reason="internal", message=type(exc).__name__)
    return _from_report(native, anchored)


def _reader_settings(anchors: str | None, max_manifest_bytes: int | None = None) -> dict[str, Any]:
    """SDK settings of every read: offline, your trust list only, bounded manifests."""
    settings: dict[str, Any] = {
        # A video must not make a server fetch the URL it names (SSRF), and the reader works
        # air-gapped: remote manifests and OCSP responses are never fetched.
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
    }
    if anchors is not None:
        # trust_anchors *replaces* the SDK's anchors: only the configured roots are trusted.
        settings["trust"] = {"trust_anchors": anchors}
    if max_manifest_bytes is not None:
        # Compressed manifests (C2PA 2.x brob boxes) may not inflate past the read cap either.
        mib = max(1, -(-max_manifest_bytes // (1024 * 1024)))
        settings["core"] = {"max_decompressed_manifest_size_in_mb": mib}
    return settings


class _NativeReport(NamedTuple):
    state: str | None
    report: dict[str, Any]  # Reader.json()
    certificate: dict[str, Any] | None  # the active manifest's certificateInfo (crJSON)


def _native_read(
    path: str | os.PathLike[str], mime_type: str | None, anchors: str | None, max_bytes: int
) -> _NativeReport:
    try:
        context = c2pa.Context.from_dict(_reader_settings(anchors, max_bytes))
    except c2pa.C2paError as exc:
        raise _TrustListRefusedError(_text(str(exc)) or type(exc).__name__) from exc
    try:
        with open(path, "rb") as fh, c2pa.Reader(mime_type, fh, context=context) as reader:
            state = reader.get_validation_state()
            report = json.loads(reader.json())
            certificate = _certificate_info(reader, report.get("active_manifest"))
    finally:
        context.close()
    return _NativeReport(None if state is None else str(state), report, certificate)


def _certificate_info(reader: Any, label: Any) -> dict[str, Any] | None:
    """Return the signing certificate's issuer and validity (only crJSON reports them)."""
    try:
        manifests = json.loads(reader.crjson()).get("manifests")
    except (c2pa.C2paError, ValueError, AttributeError):
        return None  # optional detail: the rest of the report stands without it
    for manifest in manifests if isinstance(manifests, list) else []:
        if isinstance(manifest, dict) and manifest.get("label") == label:
            signature = manifest.get("signature")
            info = signature.get("certificateInfo") if isinstance(signature, dict) else None
            return info if isinstance(info, dict) else None
    return None


_T = TypeVar("_T")


def _with_deadline(work: Callable[[], _T], timeout_s: float) -> _T:
    """Run ``work`` in its own thread; raise ``TimeoutError`` if it outlasts ``timeout_s``.

    A native call cannot be interrupted: a thread that times out is left to finish on its own
    (a daemon, so it never holds up an exit). The manifest size cap bounds that work; the
    deadline bounds the caller's wait.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="c2pa-read", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"no result after {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    value: _T = outcome["value"]
    return value


def _from_c2pa_error(exc: c2pa.C2paError, anchored: bool) -> ContentCredentials:
    """Map the bindings' exceptions to statuses (the native message is kept, shortened)."""
    message = _text(str(exc)) or type(exc).__name__

    def outcome(
        status: CredentialsStatus, present: bool | None, **facts: Any
    ) -> ContentCredentials:
        return ContentCredentials(status, present, anchored, **facts)

    if isinstance(exc, c2pa.C2paError.ManifestNotFound):
        return outcome("absent", False)
    if isinstance(exc, c2pa.C2paError.NotSupported):
        return outcome("unsupported", False, message=message)
    if message.startswith("Remote"):
        # Only a link to a manifest hosted elsewhere is embedded; it is never fetched here.
        return outcome(
            "unreadable",
            True,
            reason="remote_manifest",
            message=f"only a link to a remote manifest is embedded, not fetched ({message})",
        )
    if isinstance(exc, c2pa.C2paError.Io):
        return outcome("unreadable", None, reason="corrupt", message=message)
    return outcome("unreadable", True, reason="corrupt", message=message)


def _from_report(native: _NativeReport, anchored: bool) -> ContentCredentials:
    """Turn the reader's JSON report into the credentials."""
    state, report = native.state, native.report

    def outcome(status: CredentialsStatus, **facts: Any) -> ContentCredentials:
        return ContentCredentials(status, True, anchored, **facts)

    manifests = report.get("manifests") or {}
    active = manifests.get(report.get("active_manifest")) if isinstance(manifests, dict) else None
    active = active if isinstance(active, dict) else {}
    codes = _failure_codes(report)
    facts: dict[str, Any] = {
        "validation_state": state,
        "failure_codes": codes,
        "signer": _signer(active.get("signature_info"), native.certificate),
        "claim_generator": _claim_generator(active),
    }
    actions = _actions(active.get("assertions"))
    facts["actions"] = actions
    facts["digital_source_types"] = tuple(
        dict.fromkeys(a.digital_source_type for a in actions if a.digital_source_type)
    )
    if state == "Trusted" and anchored:
        return outcome("valid_trusted", **facts)
    if state in ("Trusted", "Valid"):
        # Trusted without a configured list would mean anchors built into the SDK: trust is
        # what *you* configure, so it is reported as untrusted (0.38.1 has none built in).
        return outcome("valid_untrusted", **facts)
    if state == "Invalid":
        return outcome("invalid", **facts)
    return outcome(
        "unreadable", reason="corrupt", message=f"no validation state ({state!r})", **facts
    )


def _failure_codes(report: dict[str, Any]) -> tuple[str, ...]:
    found: list[Any] = []
    results = report.get("validation_results")
    if isinstance(results, dict) and isinstance(results.get("activeManifest"), dict):
        found += results["activeManifest"].get("failure") or []
    found += report.get("validation_status") or []
    codes = [_text(item.get("code")) for item in found if isinstance(item, dict)]
    return tuple(dict.fromkeys(c for c in codes if c))[:_MAX_ITEMS]


def _signer(info: Any, certificate: dict[str, Any] | None) -> SignerInfo | None:
    if not isinstance(info, dict):
        return None
    certificate = certificate or {}
    validity = certificate.get("validity")
    return SignerInfo(
        common_name=_text(info.get("common_name")),
        organisation=_text(info.get("issuer")),
        certificate_issuer=_distinguished_name(certificate.get("issuer")),
        valid_until=_text(validity.get("notAfter")) if isinstance(validity, dict) else None,
        algorithm=(_text(info.get("alg")) or "").lower() or None,
        time=_text(info.get("time")),
    )


def _distinguished_name(name: Any) -> str | None:
    """Return ``CN (O)`` of a certificate name as crJSON gives it (``{"CN": …, "O": …}``)."""
    if not isinstance(name, dict):
        return None
    common, org = _text(name.get("CN")), _text(name.get("O"))
    if common and org and org != common:
        return _text(f"{common} ({org})")
    return common or org


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list):
        names = [
            " ".join(str(v) for v in (info.get("name"), info.get("version")) if v)
            for info in infos[:_MAX_ITEMS]
            if isinstance(info, dict)
        ]
        if any(names):
            return _text(", ".join(n for n in names if n))
    return _text(manifest.get("claim_generator"))


def _actions(assertions: Any) -> tuple[RecordedAction, ...]:
    if not isinstance(assertions, list):
        return ()
    found: list[RecordedAction] = []
    for assertion in assertions:
        if not isinstance(assertion, dict):
            continue
        label = str(assertion.get("label", ""))
        if label != "c2pa.actions" and not label.startswith("c2pa.actions."):
            continue
        data = assertion.get("data")
        entries = data.get("actions") if isinstance(data, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or len(found) >= _MAX_ITEMS:
                continue
            agent = entry.get("softwareAgent")
            found.append(
                RecordedAction(
                    action=_text(entry.get("action")) or "?",
                    digital_source_type=_source_type(entry.get("digitalSourceType")),
                    software_agent=_text(agent.get("name") if isinstance(agent, dict) else agent),
                    when=_text(entry.get("when")),
                )
            )
    return tuple(found)


def _source_type(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    for prefix in _IPTC_SOURCE_TYPE_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :] or None
    return text


def _text(value: Any) -> str | None:
    """Return ``value`` as a short single-line string, or ``None`` (manifests are untrusted)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
