"""What the result page's Content Credentials panel says: a heading, a tone, plain sentences.

Input: the ``content_credentials`` object stored with the verdict
(:meth:`fakescope.client.content_credentials.ContentCredentials.to_dict`). The panel sits
beside the verdict and says so: the fake score above it is the classifier's alone. Every
sentence also says what the evidence does *not* prove: unsigned is normal, and a valid
signature proves who signed and that nothing changed since — not that the content is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CredentialsPanel", "describe_credentials", "source_type_words"]

#: IPTC digital source types in words (https://cv.iptc.org/newscodes/digitalsourcetype/).
_SOURCE_TYPES: Final[dict[str, str]] = {
    "trainedAlgorithmicMedia": "made by generative AI",
    "compositeWithTrainedAlgorithmicMedia": "a composite that includes generative-AI material",
    "algorithmicMedia": "made by an algorithm (not a trained model)",
    "digitalCapture": "recorded by a camera",
    "computationalCapture": "recorded by a camera with computational processing",
    "negativeFilm": "scanned from negative film",
    "positiveFilm": "scanned from positive film",
    "print": "scanned from a print",
    "humanEdits": "edited by a person",
    "minorHumanEdits": "lightly edited by a person",
    "compositeCapture": "a composite of camera recordings",
    "composite": "a composite",
    "compositeSynthetic": "a composite that includes synthetic material",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
    "digitalCreation": "created digitally by a person",
    "dataDrivenMedia": "generated from data",
    "screenCapture": "a screen recording",
    "virtualRecording": "a recording of a virtual scene",
}

_BESIDE: Final = "This is separate evidence: it does not change the fake score above."


@dataclass(frozen=True)
class CredentialsPanel:
    """The panel's content.

    Attributes:
        status: the credentials' status code (``valid_untrusted``, …), for the page and tests.
        tone: ``signed``, ``warning`` or ``none`` (the panel's colour).
        heading: one line ("Signed, signer not on your trust list", …).
        declared: the declared origin in words, when the manifest declares one.
        details: the sentences that follow, each its own paragraph.
        facts: ``(label, value)`` rows: signer, tool, actions, failure codes.

    """

    status: str
    tone: str
    heading: str
    declared: str | None
    details: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]


def source_type_words(source_type: str) -> str:
    """Return an IPTC digital source type in words, with its name (unknown ones as given)."""
    words = _SOURCE_TYPES.get(source_type)
    return f"{words} ({source_type})" if words else source_type


def describe_credentials(cc: dict[str, Any]) -> CredentialsPanel:
    """Put a video's Content Credentials in words for the result page."""
    status = str(cc.get("status"))
    types = [str(t) for t in cc.get("digital_source_types") or []]
    declared = "; ".join(source_type_words(t) for t in types) or None
    facts = _facts(cc)
    if status in ("valid_trusted", "valid_untrusted"):
        trusted = status == "valid_trusted"
        heading = (
            "Signed by a signer on your trust list"
            if trusted
            else "Signed, signer not on your trust list"
        )
        who = (
            "The signer's certificate chains to a root on this service's trust list."
            if trusted
            else "The signature is intact, but nothing vouches for the signer's identity: "
            "anyone can make a certificate with any name."
        )
        details = [
            "The video carries Content Credentials (C2PA) whose signature and hashes "
            "validate: it has not changed since it was signed.",
            who,
            "A signature proves who signed and that nothing changed since, not that what "
            "the video shows is true.",
        ]
        if cc.get("declares_ai_generated"):
            # The strongest signal there is when it validates: usually the generator's own.
            details.insert(
                0,
                "The signed manifest declares this video AI-generated: a statement that "
                "normally comes from the tool that made it"
                + ("." if trusted else ", here from a signer nobody on your list vouches for."),
            )
        return CredentialsPanel(status, "signed", heading, declared, (*details, _BESIDE), facts)
    if status == "invalid":
        return CredentialsPanel(
            status,
            "warning",
            "Content Credentials present, but they do not validate",
            declared,
            (
                "The video or its manifest changed after signing (or the certificate had "
                "expired), so nothing the manifest says can be relied on — including who "
                "signed it and how the video was made.",
                "Editing a signed video without re-signing it does this too; it is a reason "
                "to look closer, not proof of manipulation.",
                _BESIDE,
            ),
            facts,
        )
    if status == "unreadable":
        return CredentialsPanel(
            status,
            "warning",
            "Content Credentials present, but unreadable",
            None,
            (str(cc.get("message") or "The manifest could not be read."), _BESIDE),
            facts,
        )
    if status == "absent":
        return CredentialsPanel(
            status,
            "none",
            "No Content Credentials",
            None,
            (
                "Most videos carry none: few cameras and tools sign yet, and re-encoding or "
                "re-uploading (as most platforms do) removes them. Their absence says nothing "
                "about whether the video is real.",
            ),
            (),
        )
    if status == "unsupported":
        return CredentialsPanel(
            status,
            "none",
            "Content Credentials not checked",
            None,
            (
                f"C2PA cannot be embedded in this kind of file ({cc.get('message')}), so there "
                "is nothing to read.",
            ),
            (),
        )
    return CredentialsPanel(
        status,
        "warning",
        "Content Credentials could not be checked",
        None,
        (str(cc.get("message") or "The check failed."), _BESIDE),
        (),
    )


def _facts(cc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str]] = []
    signer = cc.get("signer") or {}
    who = " · ".join(str(v) for v in (signer.get("common_name"), signer.get("organisation")) if v)
    if who:
        rows.append(("Signed by", who))
    if signer.get("certificate_issuer"):
        rows.append(("Certificate issued by", str(signer["certificate_issuer"])))
    if cc.get("claim_generator"):
        rows.append(("Made with", str(cc["claim_generator"])))
    actions = []
    for action in cc.get("actions") or []:
        name = str(action.get("action") or "?").removeprefix("c2pa.")
        agent = action.get("software_agent")
        actions.append(f"{name} ({agent})" if agent else name)
    if actions:
        rows.append(("Recorded actions", ", ".join(actions)))
    codes = [c for c in cc.get("failure_codes") or [] if c != "signingCredential.untrusted"]
    if codes and cc.get("status") != "valid_untrusted":
        rows.append(("Failures", ", ".join(codes)))
    return tuple(rows)
