"""Shared wire logic for HTTP email APIs: one client, batching, status mapping, Retry-After."""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from email.header import decode_header, make_header
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import httpx

from newsletter import __version__
from newsletter.clock import now
from newsletter.errors import ConfigError, PermanentSendError, Problem, located
from newsletter.senders.base import (
    Message,
    Outcome,
    Result,
    Sender,
    permanent,
    secret_from_env,
    transient,
)

USER_AGENT = f"newsletter/{__version__} (+https://pypi.org/project/newsletter/)"
DEFAULT_TIMEOUT = 30.0  # seconds per read; a batch of 500 JSON messages can take a while
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def make_client(timeout: float = DEFAULT_TIMEOUT) -> httpx.Client:
    """The client a sender builds for itself when none is injected."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=10.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


class HTTPSender(Sender):
    """Base for HTTP API providers: subclasses only build the request and parse the answer.

    ``send`` splits the input into requests of at most ``max_batch`` messages and maps the
    response: 2xx → ``parse_success``; 401/403 → ``PermanentSendError``; 408, 429, 5xx,
    timeouts, connection errors and unreadable 2xx bodies → TRANSIENT for the whole request;
    any other 4xx → ``classify_error``, by default PERMANENT per message, except 404/405 and
    redirects, which mean a wrong URL and raise. Nothing is retried here: the dispatcher owns
    retry policy. The only state is the thread-safe ``httpx.Client``.
    """

    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        secrets: Iterable[str] = (),
        secret_env: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        # The variable holding the key is named in hints; its value never is.
        self.secret_env = secret_env
        self._owns_client = client is None
        self._client = client if client is not None else make_client(timeout)
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted((s for s in secrets if s), key=len, reverse=True))

    # -- what each provider supplies -----------------------------------------------------

    @abc.abstractmethod
    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        """The one HTTP request that submits ``batch`` (at most ``max_batch`` messages)."""

    @abc.abstractmethod
    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        """One Result per message from a 2xx answer; raise ValueError/KeyError if unreadable."""

    def classify_error(
        self, response: httpx.Response, batch: Sequence[Message]
    ) -> list[Result] | None:
        """Results for a 4xx other than 401/403/408/429, or None for PERMANENT per message."""
        return None

    def error_text(self, response: httpx.Response) -> str:
        """The provider's own words for a failed request, for logs and the ledger."""
        return describe_body(response)

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying, from the standard Retry-After header."""
        return parse_retry_after(response.headers.get("Retry-After"))

    def new_request(self, method: str, url: str, **kwargs: Any) -> httpx.Request:
        """A request with the client's timeouts and our User-Agent for ``build_request``.

        A bare ``httpx.Request`` passed to ``Client.send`` carries no timeout at all.
        """
        headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
        return self._client.build_request(method, url, headers=headers, **kwargs)

    # -- the shared wire logic ----------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[Result]:
        results: list[Result] = []
        size = max(1, self.max_batch)
        for start in range(0, len(messages), size):
            batch = messages[start : start + size]
            try:
                got = self._send_batch(batch)
            except PermanentSendError as exc:
                if not results:
                    raise
                # Earlier requests were accepted: return their results so they are recorded,
                # and let the next send() raise before anything else goes out.
                return results + [transient(m, str(exc)) for m in messages[start:]]
            results.extend(got)
            if got and all(r.outcome is Outcome.TRANSIENT for r in got):
                # Throttled or down: hammering on with the rest helps nobody.
                wait = max((r.retry_after or 0.0 for r in got), default=0.0) or None
                reason = f"not attempted: {got[0].error}"
                results.extend(transient(m, reason, wait) for m in messages[start + size :])
                break
        return results

    def _send_batch(self, batch: Sequence[Message]) -> list[Result]:
        request = self.build_request(batch)
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as exc:
            return self._all_transient(batch, f"timed out ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return self._all_transient(batch, f"connection failed ({type(exc).__name__}: {exc})")
        status = response.status_code
        if 200 <= status < 300:
            try:
                results = self.parse_success(response, batch)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                # Possibly accepted, but we cannot tell which: retrying is the safer guess.
                return self._all_transient(batch, f"unreadable HTTP {status} answer ({exc})")
            if len(results) != len(batch):
                return self._all_transient(batch, f"HTTP {status} answer does not match batch")
            return [self._redacted(r) for r in results]
        return self._map_error(response, batch)

    def _map_error(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        status, text = response.status_code, self.error_text(response)
        if status in (401, 403):
            where = f" in ${self.secret_env}" if self.secret_env else ""
            hint = f"check the credentials{where} and the account's permissions"
            error = f"{self.name}: the API refused the credentials (HTTP {status}): {text}"
            raise PermanentSendError(self.redact(error), hint=hint)
        if status in (408, 429) or status >= 500:
            return self._all_transient(batch, f"HTTP {status}: {text}", self.retry_after(response))
        custom = self.classify_error(response, batch) if status >= 400 else None
        if custom is not None:
            return [self._redacted(r) for r in custom]
        if status < 400 or status in (404, 405):
            # A redirect or a missing endpoint: the URL is wrong for every message alike.
            error = f"{self.name}: unexpected HTTP {status} from {response.request.url}: {text}"
            raise PermanentSendError(self.redact(error), hint="check base_url / endpoint")
        error = self.redact(f"{self.name}: HTTP {status}: {text}")
        return [permanent(m, error) for m in batch]

    def _all_transient(
        self, batch: Sequence[Message], error: str, retry_after: float | None = None
    ) -> list[Result]:
        error = self.redact(f"{self.name}: {error}")
        return [transient(m, error, retry_after) for m in batch]

    def redact(self, text: str) -> str:
        """Mask every secret this sender holds, in case a provider echoes one back."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _redacted(self, result: Result) -> Result:
        return replace(result, error=self.redact(result.error)) if result.error else result

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


# -- helpers shared by the provider modules --------------------------------------------


class BearerSender(HTTPSender):
    """An API authenticated by one Bearer key read from the environment (SendGrid, Resend)."""

    default_url: ClassVar[str]
    endpoint: ClassVar[str]  # path appended to the base URL
    key_env: ClassVar[str]  # default name of the variable holding the key

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        client: httpx.Client | None = None,
        api_key_env: str = "",
        timeout: float = 30.0,
    ) -> None:
        super().__init__(client=client, secrets=(api_key,), secret_env=api_key_env, timeout=timeout)
        self._api_key = api_key
        self.url = f"{(base_url or self.default_url).rstrip('/')}{self.endpoint}"

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        r = OptionReader(cls.name, options, environ, ("api_key_env", "base_url"))
        api_key = r.secret("api_key_env", cls.key_env)
        base_url = r.url("base_url", cls.default_url)
        timeout = r.number("timeout", 30.0)
        r.finish()
        return cls(
            api_key,
            base_url=base_url,
            client=kwargs.get("client"),
            timeout=timeout,
            api_key_env=r.env_name("api_key_env", cls.key_env),
        )

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, (when - now()).total_seconds()) if when.tzinfo else None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def describe_body(response: httpx.Response, limit: int = 300) -> str:
    """A short human message from a JSON error body, else the start of the text."""
    try:
        data = response.json()
    except ValueError:
        data = None
    found = _find_message(data)
    if found:
        return found[:limit]
    text = " ".join(response.text.split())
    return text[:limit] or response.reason_phrase or "no details"


def _find_message(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("message", "Message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        errors = data.get("errors")
        if isinstance(errors, list):
            return "; ".join(m for m in (_find_message(e) for e in errors) if m)
    return ""


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body; ValueError when it is not JSON (the base maps it to TRANSIENT)."""
    return json.loads(response.content)


def unencoded(value: str) -> str:
    """Undo RFC 2047 encoded-words: JSON APIs take Unicode and encode headers themselves."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def split_address(header: str) -> tuple[str, str]:
    """("Name", "addr@host") from a From or Reply-To header."""
    name, addr = parseaddr(unencoded(header))
    return name, addr


def display_address(name: str, addr: str) -> str:
    """``Name <addr>`` for JSON APIs, quoting the name only when RFC 5322 requires it."""
    if not name:
        return addr
    if any(c in name for c in '()<>[]:;@\\,."'):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


def extra_headers(msg: Message, reserved: Iterable[str] = ()) -> dict[str, str]:
    """The message's extra headers (List-Unsubscribe …) minus those a provider sets itself."""
    skip = {h.lower() for h in reserved}
    return {k: unencoded(v) for k, v in msg.headers.items() if k.lower() not in skip}


class OptionReader:
    """Reads one ``[sender.<name>]`` table, collecting every problem before raising."""

    def __init__(
        self,
        section: str,
        options: Mapping[str, Any],
        environ: Mapping[str, str],
        known: Iterable[str],
    ) -> None:
        self.section = section
        self.options = {k: v for k, v in options.items() if not k.startswith("_")}
        self.environ = environ
        self.problems: list[Problem] = []
        self.hints: list[str] = []
        known = set(known) | {"timeout"}
        for key in sorted(set(self.options) - known):
            self.problem(key, "unknown key; known keys: " + ", ".join(sorted(known)))

    def problem(self, key: str, message: str) -> None:
        self.problems.append(
            Problem("config.toml", None, f"[sender.{self.section}] {key}: {message}")
        )

    def string(self, key: str, default: str = "", *, required: bool = False) -> str:
        value = self.options.get(key, default)
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {type(value).__name__}")
            return default
        if required and not value.strip():
            self.problem(key, "is required")
        return value.strip()

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            self.problem(key, f"must be a number greater than {minimum:g}")
            return default
        return float(value)

    def url(self, key: str, default: str) -> str:
        value = self.string(key, default).rstrip("/")
        parts = urlsplit(value)
        secure = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
        )
        if not parts.hostname or not secure:
            self.problem(key, f"must be an https:// URL, got {value!r}")
            return default
        return value

    def secret(self, key: str, default_env: str, *, optional: bool = False) -> str:
        """The value of the environment variable named by ``options[key]``."""
        env_name = self.options.get(key, default_env)
        if optional and isinstance(env_name, str) and not self.environ.get(env_name):
            return ""
        try:
            return secret_from_env(self.options, key, default_env, self.environ, self.section)
        except ConfigError as exc:
            self.problems.append(Problem("config.toml", None, exc.message))
            if exc.hint:
                self.hints.append(exc.hint)
            return ""

    def env_name(self, key: str, default_env: str) -> str:
        value = self.options.get(key, default_env)
        return value if isinstance(value, str) else default_env

    def finish(self) -> None:
        """Raise one ConfigError naming every problem found."""
        if self.problems:
            raise located(
                self.problems,
                f"[sender.{self.section}]",
                ConfigError,
                hint="; ".join(self.hints) or None,
            )
