"""Keep secrets and Dagster-internal tags out of notification payloads.

A payload may carry run tags, error messages and check metadata, all of which can contain
something a user typed. Three rules apply before anything leaves the process:
- tags whose key starts with `.` (Dagster-internal, e.g. `.dagster/grpc_info`) are dropped;
- a tag whose key names a credential (token, secret, password, ...) or whose value looks like
  one (a known token prefix, a JWT, a long random-looking string, a URL with a password) is
  dropped, key and value;
- free text (error messages, metadata values) has credential-looking substrings replaced by
  `[redacted]`.
Run config, resource config and the environment are never read by the notifier at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ml_assets.settings import URI_PASSWORD

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"token|secret|passw|pwd|api[_-]?key|apikey|credential|auth|private[_-]?key|"
    r"access[_-]?key|session|cookie|signature|\bsig\b",
    re.IGNORECASE,
)

# Well-known token shapes, and a URL carrying user:password@.
_SECRET_VALUE_PATTERNS = [
    r"dapi[0-9a-f]{20,}",  # Databricks personal access token
    r"xox[abposr]-[0-9A-Za-z-]{10,}",  # Slack
    r"gh[pousr]_[0-9A-Za-z]{20,}",  # GitHub
    r"github_pat_[0-9A-Za-z_]{20,}",
    r"sk-[0-9A-Za-z_-]{16,}",  # OpenAI-style secret keys
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key id
    r"eyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    URI_PASSWORD.pattern,
    r"(?i:bearer|basic)\s+[0-9A-Za-z._~+/=-]{8,}",
    # key=value / key: value pairs whose key names a credential
    r"(?i:token|secret|password|passwd|pwd|api[_-]?key)\s*[=:]\s*[^\s,;'\"]+",
]
_SECRET_VALUE = re.compile("|".join(f"(?:{p})" for p in _SECRET_VALUE_PATTERNS))
# A long run of token characters mixing letters and digits: random-looking, so treated as a
# credential. Run ids (UUIDs with dashes) and ISO dates do not match: dashes split them.
_HIGH_ENTROPY = re.compile(r"[A-Za-z0-9_+/=]{32,}")


def _looks_random(word: str) -> bool:
    return any(c.isdigit() for c in word) and any(c.isalpha() for c in word)


def looks_secret(value: str) -> bool:
    if _SECRET_VALUE.search(value):
        return True
    return any(_looks_random(m.group()) for m in _HIGH_ENTROPY.finditer(value))


def redact(text: str) -> str:
    """Replace credential-looking substrings of free text."""
    text = _SECRET_VALUE.sub(REDACTED, text)
    return _HIGH_ENTROPY.sub(lambda m: REDACTED if _looks_random(m.group()) else m.group(), text)


def safe_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Run tags fit to leave the process: no `.`-prefixed keys and nothing credential-like."""
    return {
        key: value
        for key, value in sorted(tags.items())
        if not key.startswith(".") and not _SECRET_KEY.search(key) and not looks_secret(str(value))
    }
