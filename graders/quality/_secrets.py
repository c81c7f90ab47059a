"""Secrets committed to a submission: well-known token formats and hard-coded credentials.

A finding names the file, the line and the rule, and shows the value masked: at most the
public prefix that identifies the format (such as `AKIA`), never the secret itself. Every text
file is scanned line by line (notebooks as the JSON on disk, so outputs count too), within a
per-file byte cap. Placeholders such as `<your key>` or `changeme` are not findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (rule, pattern, characters of the match that may be shown: the format's public prefix)
_TOKENS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("aws-access-key-id", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"), 4),
    ("private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), 11),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"), 4),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), 5),
    ("openai-style-key", re.compile(r"\bsk-(?:[a-z]+-)?[A-Za-z0-9_-]{20,}"), 3),
    ("huggingface-token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), 3),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), 4),
    ("stripe-key", re.compile(r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}\b"), 8),
)
# A name ending in a credential word, `=` or `:`, then a quoted literal (quotes may be JSON-escaped).
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z_][A-Za-z0-9_]*?(?:password|passwd|pwd|secret|token|api_?key|access_?key|secret_?key"
    r"|private_?key|auth_?key|credentials?))\b[\"']?\s*(?::|=|==)\s*\\?[\"']([^\"'\\\s]{12,200})\\?[\"']")
_PLACEHOLDER = re.compile(r"(?i)^(?:.*(?:your|xxxx|changeme|change_me|placeholder|replace|redacted|dummy)"
                          r".*|<.*>|\$\{.*\}|\{\{.*\}\}|\*+|(.)\1+|[a-z_]+)$")
_RULE_FOR_ASSIGNMENT = "hard-coded-credential"
LABELS = {"aws-access-key-id": "an AWS access key ID", "private-key": "a private key",
          "github-token": "a GitHub token", "slack-token": "a Slack token",
          "openai-style-key": "an API key (sk-...)", "huggingface-token": "a Hugging Face token",
          "google-api-key": "a Google API key", "stripe-key": "a Stripe live key",
          _RULE_FOR_ASSIGNMENT: "a password, token or key written into the code"}
MAX_LINE_CHARS = 10_000


@dataclass(frozen=True)
class Secret:
    """Where a secret-looking value is and what kind it is; `masked` never holds the value."""

    rel: str
    line: int
    rule: str
    masked: str

    @property
    def location(self) -> str:
        return f"{self.rel}:{self.line}"

    @property
    def label(self) -> str:
        return LABELS.get(self.rule, self.rule)


def _mask(value: str, shown: int) -> str:
    return f"{value[:shown]}{'*' * 8} ({len(value)} characters, masked)"


def scan_text(rel: str, text: str, limit: int = 50) -> list[Secret]:
    """The secrets in `text` (at most `limit`), one per rule and line."""
    found: list[Secret] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line[:MAX_LINE_CHARS]
        rules_here: set[str] = set()
        for rule, pattern, shown in _TOKENS:
            match = pattern.search(line)
            if match and rule not in rules_here:
                rules_here.add(rule)
                found.append(Secret(rel, number, rule, _mask(match.group(0), shown)))
        if not rules_here:
            for match in _ASSIGNMENT.finditer(line):
                if not _PLACEHOLDER.match(match.group(2)):
                    found.append(Secret(rel, number, _RULE_FOR_ASSIGNMENT,
                                        f"{match.group(1)} = {_mask(match.group(2), 0)}"))
                    break
        if len(found) >= limit:
            return found[:limit]
    return found


def looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]
