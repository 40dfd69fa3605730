"""moto's S3 server on loopback: a real S3 endpoint over HTTP, started by the tests themselves.

The product reaches it as it reaches any S3: through the SDK's standard variables
(AWS_ENDPOINT_URL_S3 and credentials), in this process and in the processes tests start.
"""

from __future__ import annotations

import socket
import urllib.request

import boto3
from moto.server import ThreadedMotoServer

BUCKET = "amp-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")

    def start(self, bucket: str | None = BUCKET) -> "S3Server":
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        if bucket:
            # moto keeps its objects per process, across servers: a fresh start begins empty.
            urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"), timeout=10).close()
            self.client().create_bucket(Bucket=bucket)
        return self

    def stop(self) -> None:
        """Down, as an outage is: what it held is kept for a start on the same port (moto keeps
        its state in this process)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> None:
        self.start(bucket=None)

    def keys(self, prefix: str = "", bucket: str = BUCKET) -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
