"""A thin JSON client for the few API calls the ledger store and the election make.

Why not the generated `kubernetes` API classes: a compare-and-swap admission
is one GET or PUT of a small object on the webhook's hot path, and the
generated layer walks every body twice (sanitise, then `json`) and retries
connection errors behind our back, which would blur the request deadline.
This keeps the `kubernetes` package for what it does well (kubeconfig and
in-cluster configuration, TLS, tokens that refresh) and speaks orjson over
its urllib3 pool, with one explicit timeout per call and no hidden retries.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3

from quotalang.errors import InternalError


class KubeError(InternalError):
    """Base of the errors a call can end in."""


class ApiError(KubeError):
    """The apiserver answered with an error status (409 Conflict, 404 NotFound, 410 Gone, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


class Unreachable(KubeError):
    """No answer: connection refused or reset, TLS failure, timeout."""


class KubeApi:
    """JSON requests against one apiserver, safe to share between threads."""

    def __init__(self, configuration: Any, *, pool_size: int = 32) -> None:
        from kubernetes.client.rest import RESTClientObject

        configuration.connection_pool_maxsize = max(pool_size, configuration.connection_pool_maxsize or 0)
        self.configuration = configuration
        self.host = str(configuration.host).rstrip("/")
        self._pool: urllib3.PoolManager = RESTClientObject(configuration).pool_manager

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, *, context: str | None = None) -> KubeApi:
        """From a kubeconfig file, else in-cluster configuration, else `$KUBECONFIG`/`~/.kube/config`."""
        from kubernetes import client

        config: Any = importlib.import_module("kubernetes.config")  # untyped
        configuration = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(context=context, client_configuration=configuration)
        return cls(configuration)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "quotalang"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        for auth in self.configuration.auth_settings().values():  # a bearer token, refreshed if it expires
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        return f"{self.host}{path}?{urlencode(query)}" if query else f"{self.host}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer. Raises `ApiError` or `Unreachable`."""
        data = orjson.dumps(body) if body is not None else None
        try:
            response = self._pool.request(
                method,
                self._url(path, query),
                body=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        return _decode(response.status, response.data, method, path)

    def watch(self, path: str, query: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Watch events (`{"type", "object"}`) until the server ends the stream or `timeout` passes."""
        try:
            response = self._pool.request(
                "GET",
                self._url(path, {**query, "watch": "1"}),
                headers=self._headers(None),
                timeout=urllib3.Timeout(connect=5.0, read=timeout),
                retries=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"WATCH {path}: {type(exc).__name__}: {exc}") from None
        try:
            if response.status >= 300:
                _decode(response.status, response.read(), "WATCH", path)
            # One split per chunk: splitting off one line at a time copied the rest of a 64 KiB chunk for every
            # event in it (a tenth of the leader's CPU in a burst of creates). `pending`: a line's start.
            pending: list[bytes] = []
            for chunk in response.stream(65536):
                if b"\n" not in chunk:
                    pending.append(chunk)
                    continue
                head, *lines, tail = chunk.split(b"\n")
                pending.append(head)
                for line in (b"".join(pending), *lines):
                    if line.strip():
                        event: dict[str, Any] = orjson.loads(line)
                        yield event
                pending = [tail]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"WATCH {path}: {type(exc).__name__}: {exc}") from None
        finally:
            response.release_conn()

    def close(self) -> None:
        self._pool.clear()


def _decode(status: int, data: bytes, method: str, path: str) -> dict[str, Any]:
    try:
        decoded = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        decoded = {"message": data[:200].decode(errors="replace")}
    if not isinstance(decoded, dict):
        decoded = {"message": str(decoded)[:200]}
    if status >= 300:
        raise ApiError(status, str(decoded.get("reason") or "Error"),
                       f"{method} {path}: {decoded.get('message') or ''}".strip())
    return decoded


__all__ = ["ApiError", "KubeApi", "KubeError", "Unreachable"]
