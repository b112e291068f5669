"""Where a revision's model files are on this machine: the storage layer resolves `storageUri`.

Object-store credentials come from the environment of `serving up` overlaid with the predictor's literal
`env` values (KServe's names: AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCESS_KEY...).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from serving import storage
from serving.control.process_args import local_env, predictor_env
from serving.errors import ArtifactError
from serving.revision import Revision


def resolve_model_dir(revision: Revision, config: storage.StorageConfig) -> Path:
    uri = revision.storage_uri
    if not uri:
        raise ArtifactError("no storageUri given")
    own = local_env(predictor_env(revision))
    if own:
        config = dataclasses.replace(config, env={**(config.env or os.environ), **own})
    return storage.resolve(uri, config)
