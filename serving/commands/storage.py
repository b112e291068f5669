"""`serving storage pull URI DEST`: fetch a model (local, http(s), pvc, S3, GCS, Azure Blob) into a folder (what KServe's storage-initializer does into
/mnt/models; our Kubernetes Deployments run it as their init container). Also `serving storage fingerprint URI`.

As KServe's storage initializer, a pull reads STORAGE_CONFIG (a storage Secret's JSON entry, given as a
secretKeyRef) and STORAGE_OVERRIDE_CONFIG (a model's `storage.parameters`): for type s3 their endpoint_url,
access_key_id, secret_access_key, region, ca_bundle, verify_ssl and anonymous become the S3 env of this pull.
`--storage-path PATH` instead of URI: the URI is built from them (`s3://BUCKET/PATH`), as the operator renders
it when it could not read the Secret. `--also URI DEST` (repeatable) pulls more, in order: KServe's
`storageUris`, each URI into its mountPath.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from serving.errors import BadRequest
from serving.storage import StorageConfig, default_cache_dir, fingerprint, pull
from serving.storage.errors import redact
from serving.storage.storage_spec import config_from_env, env_from_config, storage_uri


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "storage", help="fetch models from a storageUri (file, http(s), pvc, s3, gs, az)"
    )
    sub = p.add_subparsers(dest="storage_command", required=True, metavar="SUBCOMMAND")
    pull_p = sub.add_parser(
        "pull", help="resolve URI and copy the model into DEST (like KServe's storage-initializer)"
    )
    pull_p.add_argument(
        "uri",
        metavar="URI",
        nargs="?",
        help="local path, file://, http(s):// (archives unpacked), pvc://NAME/path, s3://, gs://, az:// or "
        "https://ACCOUNT.blob.core.windows.net/... (credentials: KServe's env names, see README)",
    )
    pull_p.add_argument(
        "dest", metavar="DEST", type=Path, help="folder to put the model in (created if missing)"
    )
    pull_p.add_argument(
        "--also",
        nargs=2,
        action="append",
        default=[],
        metavar=("URI", "DEST"),
        help="then URI into DEST as well (repeatable; KServe's storageUris: each URI into its mountPath)",
    )
    pull_p.add_argument(
        "--storage-path",
        metavar="PATH",
        help="instead of URI: a KServe storage.path, the bucket and type from STORAGE_CONFIG / "
        "STORAGE_OVERRIDE_CONFIG (s3://BUCKET/PATH)",
    )
    _add_common(pull_p)
    pull_p.set_defaults(func=main_pull)
    fp = sub.add_parser(
        "fingerprint", help="print a cheap content identity of URI (changes when the model does)"
    )
    fp.add_argument("uri", metavar="URI")
    _add_common(fp)
    fp.set_defaults(func=main_fingerprint)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="download cache (default $SERVING_CACHE_DIR or ~/.cache/serving/models)",
    )
    p.add_argument("--pvc-root", type=Path, help="pvc://NAME/path maps to PVC_ROOT/NAME/path")
    p.add_argument(
        "--allowed-root",
        type=Path,
        action="append",
        default=[],
        help="local paths must lie inside one of these (repeatable; default: anywhere)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per connect/read (default 60)")
    p.add_argument("--max-bytes", type=int, default=2 * 1024**3, help="download size limit (default 2 GiB)")


def config_from_args(args: argparse.Namespace) -> StorageConfig:
    storage_env = env_from_config(config_from_env(os.environ))  # KServe's STORAGE_CONFIG, if given
    return StorageConfig(
        env={**os.environ, **storage_env} if storage_env else None,
        cache_dir=args.cache_dir or default_cache_dir(),
        pvc_root=args.pvc_root,
        allowed_roots=tuple(args.allowed_root),
        base_dir=Path.cwd(),
        timeout_s=args.timeout,
        max_download_bytes=args.max_bytes,
    )


def main_pull(args: argparse.Namespace) -> int:
    if (args.uri is None) == (args.storage_path is None):
        raise BadRequest("give URI or --storage-path (not both)")
    if args.uri is None:
        args.uri = storage_uri(config_from_env(os.environ), args.storage_path)
    config = config_from_args(args)
    for uri, dest in [(args.uri, args.dest), *((u, Path(d)) for u, d in args.also)]:
        files, size = pull(uri, dest, config)
        print(f"pulled {redact(uri)} into {dest} ({files} file{'' if files == 1 else 's'}, {size} bytes)")
    return 0


def main_fingerprint(args: argparse.Namespace) -> int:
    print(fingerprint(args.uri, config_from_args(args)))
    return 0
