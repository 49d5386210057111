"""The team's remote cache on S3 (or any S3-compatible store), through boto3.

The same layout and operations as a shared folder (engine/remotecache.py: `Remote`);
here, the primitives as S3 requests: a conditional create is `PutObject` with
`IfNoneMatch="*"` (412 when the name exists), a conditional replace `IfMatch` the
ETag read, and an upload carries `ChecksumSHA256` (S3 refuses bytes that do not match)
and is checked against the returned ETag, the MD5 of what a single-part upload stored.
boto3 reads the credentials from the environment; the endpoint of a store other than
AWS comes from the variable `[cache] endpoint_env` names.  A client error becomes a
`RemoteError` with a hint (a refused key, a missing bucket, a read-only client).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .remotecache import CHUNK, Missing, Remote, RemoteError


class S3Remote(Remote):
    """A bucket (and prefix) on S3 or an S3-compatible store, through boto3."""

    def __init__(self, url: str, bucket: str, prefix: str, endpoint: str | None,
                 patient: bool = True) -> None:
        """`patient`: retry as a build must (5 attempts, 10 s to connect, 60 s to read);
        otherwise give up soon (2 attempts, 3 s, 10 s), for `plan` and an editor's hover,
        which a bucket that does not answer must not hold for a minute."""
        import boto3
        from botocore.config import Config as BotoConfig

        self.url, self.bucket = url, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = endpoint
        attempts, connect, read = (5, 10, 60) if patient else (2, 3, 10)
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint or None,
            config=BotoConfig(retries={"max_attempts": attempts, "mode": "standard"},
                              max_pool_connections=32, connect_timeout=connect,
                              read_timeout=read))

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError:
            raise
        except NoCredentialsError:
            raise RemoteError(f"no credentials for {self.url}",
                              "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
                              "in the environment; filmc.toml never holds them") from None
        except BotoCoreError as e:
            where = f" at {self.endpoint}" if self.endpoint else ""
            raise RemoteError(f"cannot {what} {self.url}{where}: {e}",
                              "check the network and the endpoint "
                              "(`FILMC_S3_ENDPOINT` or `[cache] endpoint_env`)") from None

    def _failed(self, what: str, e: Any) -> RemoteError:
        code = e.response.get("Error", {}).get("Code", "")
        hint = {"AccessDenied": "this client's credentials may not do that: a read-only "
                                "client sets `[cache] write = false`",
                "NoSuchBucket": "create the bucket, or fix `[cache] remote` in filmc.toml",
                "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY"}.get(code)
        return RemoteError(f"cannot {what} {self.url}: {code or 'error'} "
                           f"({e.response.get('Error', {}).get('Message', '')})", hint)

    @staticmethod
    def _code(e: Any) -> tuple[str, int]:
        return (e.response.get("Error", {}).get("Code", ""),
                int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)))

    def _read(self, name: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            r = self._call("read", self.client.get_object, Key=self._key(name))
            return r["Body"].read(), r.get("ETag", "")
        except ClientError as e:
            code, status = self._code(e)
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            raise self._failed(f"read {name} in", e) from None

    def _write(self, name: str, data: bytes, *, create: bool = False,
               version: str | None = None) -> str | None:
        from botocore.exceptions import ClientError

        cond: dict[str, str] = {}
        if create:
            cond["IfNoneMatch"] = "*"
        elif version is not None:
            cond["IfMatch"] = version
        try:
            r = self._call("write", self.client.put_object, Key=self._key(name), Body=data,
                           ContentType="application/json", **cond)
            return str(r.get("ETag", ""))
        except ClientError as e:
            code, status = self._code(e)
            if cond and (status in (409, 412) or code in ("PreconditionFailed",
                                                          "ConditionalRequestConflict")):
                return None
            raise self._failed(f"write {name} in", e) from None

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        from botocore.exceptions import ClientError

        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for o in page.get("Contents", ()):
                    yield o["Key"][len(self.prefix):], int(o.get("Size", 0))
        except ClientError as e:
            raise self._failed("list", e) from None
        except Exception as e:  # BotoCoreError: the connection
            from botocore.exceptions import BotoCoreError

            if isinstance(e, BotoCoreError):
                raise RemoteError(f"cannot list {self.url}: {e}",
                                  "check the network and the endpoint") from None
            raise

    def _delete(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("delete from", self.client.delete_object, Key=self._key(name))
        except ClientError as e:
            raise self._failed(f"delete {name} in", e) from None

    def _exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call("read", self.client.head_object, Key=self._key(name))
            return True
        except ClientError as e:
            code, status = self._code(e)
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._failed(f"read {name} in", e) from None

    def _upload(self, name: str, path: Path, sha256: bytes, md5: str) -> None:
        from botocore.exceptions import ClientError

        try:
            with open(path, "rb") as f:
                # S3 checks ChecksumSHA256 against what it received and refuses a mismatch.
                r = self._call("upload to", self.client.put_object, Key=self._key(name),
                               Body=f, ChecksumSHA256=base64.b64encode(sha256).decode())
        except ClientError as e:
            code, _status = self._code(e)
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                raise RemoteError(f"{self.url} refused {name}: what it received differs from "
                                  f"what was sent", "`filmc cache push` sends it again") from None
            raise self._failed(f"upload {name} to", e) from None
        # And a single-part upload's ETag is the MD5 of what the server stored.
        etag = str(r.get("ETag", "")).strip('"')
        if len(etag) == 32 and "-" not in etag and etag != md5:
            with contextlib.suppress(RemoteError, ClientError):
                self._delete(name)
            raise RemoteError(f"{self.url} stored {name} with other bytes than were sent "
                              f"(its ETag {etag} is not their MD5 {md5}); it was deleted",
                              "`filmc cache push` sends it again")

    def _download(self, name: str, out: IO[bytes]) -> None:
        from botocore.exceptions import ClientError

        try:
            r = self._call("download from", self.client.get_object, Key=self._key(name))
            body = r["Body"]
            while block := body.read(CHUNK):
                out.write(block)
        except ClientError as e:
            code, status = self._code(e)
            if status == 404 or code in ("NoSuchKey", "404"):
                raise Missing(f"{self.url} does not hold {name}") from None
            raise self._failed(f"download {name} from", e) from None
