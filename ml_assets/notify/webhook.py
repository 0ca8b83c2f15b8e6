"""POST a JSON message to a webhook, with a bounded timeout and retries on transient errors."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """A message could not be delivered. `retryable` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def describe_url(url: str) -> str:
    """The webhook without its path: Slack-style webhook paths are themselves the secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


@dataclass(frozen=True)
class Webhook:
    url: str
    # Per attempt; a sensor tick must stay well inside the daemon's evaluation timeout.
    timeout_seconds: float = 5.0
    attempts: int = 3
    backoff_seconds: float = 0.5

    def post(self, payload: dict) -> None:
        """Deliver once. Retries 5xx, 429, timeouts and connection errors with exponential
        back-off; a 4xx is not retried (the payload or URL is wrong, retrying cannot help)."""
        body = json.dumps(payload).encode()
        last: DeliveryError | None = None
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "ml_assets-notify"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
                return
            except urllib.error.HTTPError as error:
                retryable = error.code >= 500 or error.code == 429
                last = DeliveryError(
                    f"webhook {describe_url(self.url)} answered HTTP {error.code}",
                    retryable=retryable,
                )
                if not retryable:
                    raise last from None
            except (urllib.error.URLError, TimeoutError, OSError) as error:
                reason = getattr(error, "reason", error)
                last = DeliveryError(
                    f"webhook {describe_url(self.url)} unreachable: {reason}", retryable=True
                )
            log.warning("%s (attempt %d of %d)", last, attempt + 1, self.attempts)
        assert last is not None
        raise last
