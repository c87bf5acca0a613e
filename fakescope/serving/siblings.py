"""Files of other models of the repository, for the python models that read them at start-up.

``face_detector`` reads the batch limits of ``mtcnn_rnet``/``mtcnn_onet`` and the served
``face_classifier``'s config and ONNX metadata. From a local
repository those files lie beside the model's own folder. From S3, tritonserver copies each
model into a temporary folder of its own (``/tmp/folderXXXXXX``), so nothing lies beside it:
then the repository's URL is in :data:`REPOSITORY_ENV` (``EmbeddedTriton`` sets it; a
deployment of the NGC image sets it to the same URL as ``--model-repository``) and the file is
downloaded from there (credentials as for tritonserver, :mod:`fakescope.storage`) into the
model's temporary folder, which tritonserver removes at unload.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from fakescope.serving.model_config import latest_version_dir, pinned_version

__all__ = ["REPOSITORY_ENV", "served_version_file", "sibling_file"]

logger = logging.getLogger(__name__)

#: Environment variable naming the repository's ``s3://`` URL when it is served from S3.
REPOSITORY_ENV: Final = "FAKESCOPE_MODEL_REPOSITORY"
#: Where downloaded sibling files go, inside the model's own (temporary) folder.
DOWNLOADS: Final = ".fakescope-siblings"


def sibling_file(
    args: Mapping[str, str], model: str, relative: str, environ: Mapping[str, str] | None = None
) -> Path:
    """Return a local path of ``<repository>/<model>/<relative>`` for a python model.

    Args:
        args: the ``args`` of ``TritonPythonModel.initialize`` (``model_repository`` is the
            calling model's folder).
        model: the other model's name.
        relative: the file under that model's folder, e.g. ``config.pbtxt`` or ``4/model.onnx``.
        environ: the environment (default: the process's).

    Raises:
        FileNotFoundError: no such file (locally), with a hint when the repository is remote.
        fakescope.storage.StorageError: the S3 download failed (message names the object).

    """
    env = os.environ if environ is None else environ
    own = Path(args["model_repository"])
    remote = env.get(REPOSITORY_ENV, "").strip()
    if remote:
        from fakescope.storage import S3Storage, parse_s3_url

        target = own / DOWNLOADS / model / relative
        if not target.is_file():
            storage = S3Storage(parse_s3_url(remote), env)
            storage.download(f"{model}/{relative}", target)
            logger.info("fetched %s/%s from %s", model, relative, remote)
        return target
    local = own.parent / model / relative
    if not local.is_file():
        raise FileNotFoundError(
            f"{local} not found: the repository is not on this disk; when it is served from "
            f"S3, set {REPOSITORY_ENV} to its s3:// URL (the --model-repository value)"
        )
    return local


def served_version_file(
    args: Mapping[str, str], model: str, filename: str, environ: Mapping[str, str] | None = None
) -> Path:
    """Return a local path of ``filename`` in the version of ``model`` that Triton serves.

    The served version is the one its ``config.pbtxt`` pins (``version_policy: { specific:
    { versions: [N] } }``, what ``fakescope export`` writes), so this file and the model
    tritonserver loads come from the same version. A config with a ``latest`` policy means the
    highest version folder, which only a local repository can be listed for here.

    Raises:
        FileNotFoundError: as :func:`sibling_file`, or a remote model whose config pins no
            version.

    """
    env = os.environ if environ is None else environ
    config = sibling_file(args, model, "config.pbtxt", env)
    version = pinned_version(config)
    if version is not None:
        return sibling_file(args, model, f"{version}/{filename}", env)
    if env.get(REPOSITORY_ENV, "").strip():
        raise FileNotFoundError(
            f"{model}/config.pbtxt pins no version (version_policy specific): from S3 the "
            "served version must be named there (re-export or publish with fakescope export)"
        )
    return latest_version_dir(config.parent) / filename
