"""S3 the way every part of the product reaches it: one URL form, the SDK's own configuration.

Credentials, region and endpoint come from the AWS SDK's standard chain, `AWS_ENDPOINT_URL` and
`AWS_ENDPOINT_URL_S3` included, for boto3 and polars alike (polars' object-store reader does not
read `AWS_ENDPOINT_URL_S3` by itself), so a local S3 (moto's server, MinIO) needs no code change.
Dagster code gets its client from dagster-aws's S3Resource, which builds the same boto3 client.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

# What S3 allows in a bucket name; prefixes are checked only for what would break a key.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3UrlError(ValueError):
    pass


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> "S3Url":
        if not url.startswith("s3://"):
            raise S3UrlError(f"{url!r} must look like s3://bucket/prefix")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket):
            raise S3UrlError(f"{url!r}: {bucket!r} is not an S3 bucket name")
        prefix = prefix.strip("/")
        if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
            raise S3UrlError(f"{url!r}: the prefix has an empty, '.' or '..' part")
        return cls(bucket, prefix)

    def key(self, *parts: str) -> str:
        """The key of `parts` under the prefix; every part is the product's own name, never request data."""
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def child(self, name: str) -> "S3Url":
        return S3Url(self.bucket, self.key(name))

    def __str__(self) -> str:
        return self.url()


def endpoint_url() -> str | None:
    """The S3 endpoint the SDK's configuration names, if any (the service-specific one first)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def client() -> Any:
    """An S3 client from dagster-aws's S3Resource (the standard chain, Dagster's retry policy),
    for Dagster code and the commands alike; the shipper backs off on top of its retries."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(max_attempts=3).get_client()


class MissingBucket(Exception):
    """S3 answered that a setting's bucket does not exist: a typo or an unmade bucket, not an outage."""


def check_bucket(url: "S3Url", setting: str) -> None:
    """Raise MissingBucket if S3 says `url`'s bucket does not exist; anything else passes.

    Asked once, at start, with short timeouts and a single attempt, so that a bucket name's typo
    stops `serve` or `ship` in one line instead of being retried for ever like an outage. An S3
    out of reach passes (events land locally, and the shipper retries and says so in its log),
    and so does a denied HeadBucket (a least-privilege role may lack s3:ListBucket) or an SDK
    configuration the client cannot be built from (the shipper reports it).
    """
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        probe = boto3.client("s3", config=Config(connect_timeout=3, read_timeout=5, retries={"total_max_attempts": 1}))
        probe.head_bucket(Bucket=url.bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            where = f"S3 at {endpoint}" if (endpoint := endpoint_url()) else "S3"
            raise MissingBucket(f"{setting}={url}: {where} has no bucket {url.bucket!r} (create it, or correct the name)") from None
    except (BotoCoreError, ValueError):  # out of reach, no credentials, a malformed endpoint
        pass


class S3Place:
    """An `s3://bucket/prefix` setting and the client that reads it (the landing, the lake)."""

    remote = True

    def __init__(self, url: str, s3: Any = None) -> None:
        self.url = S3Url.parse(url)
        self.s3 = s3 or client()

    def __str__(self) -> str:
        return str(self.url)


_SESSION: boto3.session.Session | None = None


def storage_options() -> dict[str, str]:
    """polars' object-store options from the same chain boto3 reads; credentials as they are now
    (a role's are refreshed by the session as they near expiry)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    session = _SESSION
    options: dict[str, str] = {}
    if (region := session.region_name) is not None:
        options["aws_region"] = region
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options["aws_access_key_id"] = frozen.access_key
        options["aws_secret_access_key"] = frozen.secret_key
        if frozen.token:
            options["aws_session_token"] = frozen.token
    if (endpoint := endpoint_url()) is not None:
        options["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            options["aws_allow_http"] = "true"
    return options


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class ObjectConflict(Exception):
    """A different object already has the key a put-if-absent was for."""


def put_if_absent(s3: Any, bucket: str, key: str, data: bytes, checksum: str | None = None) -> bool:
    """Put `data` at `key` unless an object is there; True if this call created it.

    A conditional PUT (If-None-Match: *), with a SHA-256 checksum S3 verifies: a retry under the
    same key after a crash between the PUT and the caller's bookkeeping never makes a second
    copy, and a 412 means it is already there. Then the object is compared (its checksum, its
    ETag as MD5 for a single-part upload, else its bytes), and one that differs raises
    ObjectConflict rather than passing for this data. `checksum`: sha256_b64(data), if the caller
    has it already.
    """
    checksum = checksum or sha256_b64(data)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*", ChecksumSHA256=checksum)
        return True
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412 and exc.response["Error"].get("Code") != "PreconditionFailed":
            raise
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    if head.get("ChecksumSHA256"):
        same = head["ChecksumSHA256"] == checksum
    elif head.get("ETag", "").strip('"') == hashlib.md5(data).hexdigest():
        same = True
    else:  # a multipart or KMS-encrypted object: its ETag is no MD5
        same = s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    if not same:
        raise ObjectConflict(f"s3://{bucket}/{key} already holds a different object")
    return False


def put(s3: Any, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Put a whole object (replacing any); returns its ETag."""
    return s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, ChecksumSHA256=sha256_b64(data))["ETag"]


def list_keys(s3: Any, bucket: str, prefix: str, start_after: str | None = None) -> list[dict]:
    """Every object under `prefix` (Key, Size, ETag, LastModified), in key order."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **({"StartAfter": start_after} if start_after else {})):
        found.extend(page.get("Contents", []))
    return found


def list_folders(s3: Any, bucket: str, prefix: str, start_after: str | None = None) -> list[str]:
    """The names of the "folders" directly under `prefix` (which ends with "/" or is empty)."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/", **({"StartAfter": start_after} if start_after else {})
    ):
        names.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
    return names


def get(s3: Any, bucket: str, key: str) -> bytes | None:
    """An object's bytes, or None if there is none."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"].get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def head(s3: Any, bucket: str, key: str) -> dict | None:
    """An object's metadata, or None if there is none."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"].get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
