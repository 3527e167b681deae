"""Object storage of a run: the engine's journal, the code, every node's outputs, the paper and its review.

Layout under ``s3://<bucket>/<prefix>``::

    code/<sha256>.tar.gz                        content-addressed code tarballs (templates, changed programs)
    runs/<namespace>/<run>/journal.json         the engine's journal: a snapshot, now and then (see journal_store)
    runs/<namespace>/<run>/journal/<uid>/<k>.jsonl   the journal's changes since, one object per save
    runs/<namespace>/<run>/state.json           the operator's bookkeeping: run uid, start time, template, paper
    runs/<namespace>/<run>/run.yaml, summary.json, records.tar.gz     the records the writeup reads
    runs/<namespace>/<run>/nodes/<id>/attempt-<k>/{stdout.txt,stderr.txt,metrics.json,result.json,plots.tar.gz}
    runs/<namespace>/<run>/paper/{paper.pdf,paper.tar.gz}, review.json

The operator holds the credentials (from the Secret the run names); pods get presigned URLs only.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import urllib.parse
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import minio
import minio.error

DEFAULT_REGION = 'us-east-1'
"""Presigning needs a region and must not ask the server for it; S3-compatible servers accept this one."""


class StorageError(Exception):
    """Object storage is misconfigured or unreachable; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class S3Config:
    """Where a run's objects go and with which identity."""

    endpoint: str
    """URL of the S3 API that pods reach (``http://`` means no TLS)."""
    bucket: str
    prefix: str
    access_key: str
    secret_key: str
    insecure: bool = False
    """Skip TLS certificate checks (self-signed test setups)."""
    region: str = DEFAULT_REGION
    operator_endpoint: str = ''
    """Where the operator itself reaches the API, when that differs from ``endpoint``."""


def s3_config_of(run: Mapping[str, Any], secret: Mapping[str, Any] | None, operator_endpoint: str = '') -> S3Config:
    """A run's object storage (``spec.storage.s3``) with the identity from its Secret (``None``: missing).

    ``operator_endpoint``: where this process reaches the S3 API, when that differs from the run's endpoint.
    Raises StorageError naming the field or the Secret at fault.
    """
    namespace = (run.get('metadata') or {}).get('namespace')
    s3 = ((run.get('spec') or {}).get('storage') or {}).get('s3')
    if not s3:
        raise StorageError("spec.storage.s3: required in a cluster (node code and outputs live in object storage)")
    secret_name = (s3.get('secretRef') or {}).get('name')
    if secret is None:
        raise StorageError(f"spec.storage.s3.secretRef: no Secret {secret_name} in namespace {namespace}")
    data = secret.get('data') or {}
    try:
        keys = {k: base64.b64decode(data[k]).decode() for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY')}
    except KeyError as err:
        raise StorageError(f"spec.storage.s3.secretRef: Secret {secret_name} has no key {err.args[0]}") from None
    return S3Config(endpoint=s3['endpoint'], bucket=s3['bucket'], prefix=s3.get('prefix') or '',
                    access_key=keys['AWS_ACCESS_KEY_ID'], secret_key=keys['AWS_SECRET_ACCESS_KEY'],
                    insecure=bool(s3.get('insecure')), operator_endpoint=operator_endpoint)


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI; ValueError for anything else."""
    url = urllib.parse.urlsplit(uri)
    if url.scheme != 's3' or not url.netloc or not url.path.strip('/'):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return url.netloc, url.path.lstrip('/')


def read_uri(config: S3Config, uri: str) -> bytes:
    """One object's bytes by its ``s3://`` URI, in any bucket the identity reads; StorageError if it is absent."""
    bucket, key = split_uri(uri)
    store = Store(config, '', '')
    data = store.get(key, bucket)
    if data is None:
        raise StorageError(f"{uri}: NoSuchKey: no such object")
    return data


def _client(endpoint: str, config: S3Config) -> minio.Minio:
    url = urllib.parse.urlsplit(endpoint if '://' in endpoint else f'https://{endpoint}')
    if not url.netloc:
        raise StorageError(f"spec.storage.s3.endpoint: {endpoint!r} is not a URL")
    return minio.Minio(url.netloc, access_key=config.access_key, secret_key=config.secret_key,
                       secure=url.scheme == 'https', region=config.region, cert_check=not config.insecure)


class Store:
    """The objects of one run (and the shared content-addressed code), through one S3 identity."""

    def __init__(self, config: S3Config, namespace: str, run: str) -> None:
        self.config = config
        self._client = _client(config.operator_endpoint or config.endpoint, config)
        self._signer = _client(config.endpoint, config)
        prefix = config.prefix
        if prefix and not prefix.endswith('/'):
            prefix += '/'
        self.prefix = prefix
        self.run_prefix = f'{prefix}runs/{namespace}/{run}/'

    # -- keys ------------------------------------------------------------------------------------------

    def run_key(self, name: str) -> str:
        return self.run_prefix + name

    def code_key(self, sha256_hex: str) -> str:
        return f'{self.prefix}code/{sha256_hex}.tar.gz'

    def node_key(self, node_id: str, attempt: int, name: str = '') -> str:
        return self.run_key(f'nodes/{node_id}/attempt-{attempt}/{name}')

    def uri(self, key: str) -> str:
        return f's3://{self.config.bucket}/{key}'

    # -- objects ---------------------------------------------------------------------------------------

    def get(self, key: str, bucket: str | None = None) -> bytes | None:
        """The object's bytes (in the run's bucket unless told), or None when there is no such object."""
        bucket = bucket or self.config.bucket
        try:
            response = self._client.get_object(bucket, key)
        except minio.error.S3Error as err:
            if err.code in ('NoSuchKey', 'NoSuchObject', 'NoSuchBucket'):
                return None
            raise StorageError(f"s3://{bucket}/{key}: {err.code}: {err.message}") from err
        except (OSError, ValueError) as err:  # urllib3 errors are OSErrors
            raise StorageError(f"{self.config.endpoint}: {err}") from err
        try:
            data: bytes = response.read()
            return data
        finally:
            response.close()
            response.release_conn()

    def put(self, key: str, data: bytes, content_type: str = 'application/octet-stream') -> None:
        try:
            self._client.put_object(self.config.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except minio.error.S3Error as err:
            raise StorageError(f"s3://{self.config.bucket}/{key}: {err.code}: {err.message}") from err
        except (OSError, ValueError) as err:
            raise StorageError(f"{self.config.endpoint}: {err}") from err

    def exists(self, key: str) -> bool:
        try:
            self._client.stat_object(self.config.bucket, key)
        except minio.error.S3Error as err:
            if err.code in ('NoSuchKey', 'NoSuchObject', 'NotFound'):
                return False
            raise StorageError(f"s3://{self.config.bucket}/{key}: {err.code}: {err.message}") from err
        except (OSError, ValueError) as err:
            raise StorageError(f"{self.config.endpoint}: {err}") from err
        return True

    def get_json(self, key: str) -> Any:
        data = self.get(key)
        return None if data is None else json.loads(data)

    def put_json(self, key: str, data: Any) -> None:
        self.put(key, json.dumps(data, indent=1, default=str).encode(), 'application/json')

    def presign_get(self, key: str, seconds: int) -> str:
        url: str = self._signer.presigned_get_object(self.config.bucket, key, expires=timedelta(seconds=seconds))
        return url

    def presign_put(self, key: str, seconds: int) -> str:
        url: str = self._signer.presigned_put_object(self.config.bucket, key, expires=timedelta(seconds=seconds))
        return url

    def presign_prefix(self, bucket: str, prefix: str, seconds: int, limit: int) -> list[tuple[str, int, str]]:
        """``(path below prefix, size, presigned GET URL)`` of every object under ``s3://bucket/prefix``, in key
        order; raises StorageError when there are more than `limit` (a pod's arguments must stay small)."""
        found: list[tuple[str, int, str]] = []
        try:
            for item in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                if item.is_dir or item.object_name is None:
                    continue
                if len(found) == limit:
                    raise StorageError(f"s3://{bucket}/{prefix}: more than {limit} objects; pack the data into fewer "
                                       "files (a tarball the program unpacks, say)")
                url = self._signer.presigned_get_object(bucket, item.object_name, expires=timedelta(seconds=seconds))
                found.append((item.object_name[len(prefix):].lstrip('/'), int(item.size or 0), url))
        except minio.error.S3Error as err:
            raise StorageError(f"s3://{bucket}/{prefix}: {err.code}: {err.message}") from err
        except (OSError, ValueError) as err:
            raise StorageError(f"{self.config.endpoint}: {err}") from err
        return found
