"""AWS Signature Version 4 for httpx requests: the IAM API of SeaweedFS, Ceph RGW and AWS (never boto3).

botocore pins python-dateutil < 3 while kubernetes 37 needs >= 3, so the AWS SDK cannot share an environment
with the Kubernetes backend; the signature itself is a few HMACs (AWS "Signature Version 4 signing process").
The signing key is derived per request and kept nowhere; nothing here logs or formats a credential.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SigV4(httpx.Auth):
    """Signs every request with the given key pair for one service and region (headers `host`,
    `x-amz-date`, `x-amz-content-sha256` and, if present, `content-type`)."""

    requires_request_body = True

    def __init__(self, access_key: str, secret_key: str, region: str, service: str) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self.region = region
        self.service = service

    def __repr__(self) -> str:  # never show the key pair
        return f"SigV4(service={self.service!r}, region={self.region!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request, datetime.now(UTC))
        yield request

    def sign(self, request: httpx.Request, now: datetime) -> None:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        payload = hashlib.sha256(request.content).hexdigest()
        request.headers["x-amz-date"] = stamp
        request.headers["x-amz-content-sha256"] = payload
        host = request.url.netloc.decode("ascii")
        headers = {"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"].strip()
        names = sorted(headers)
        canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in names)
        signed = ";".join(names)
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(request.url.params.multi_items())
        )
        path = quote(request.url.path or "/", safe="/-_.~")
        canonical = "\n".join([request.method, path, query, canonical_headers, signed, payload])
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(("AWS4" + self._secret_key).encode(), day)
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        request.headers["authorization"] = (
            f"{ALGORITHM} Credential={self._access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
