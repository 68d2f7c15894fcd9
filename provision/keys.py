"""API keys for the endpoint: generated once at provision, kept out of every config file."""

from __future__ import annotations

import secrets

from provision.targets import ApiKeys

PRIMARY = "api-key-primary"
SECONDARY = "api-key-secondary"


def generate_keys() -> ApiKeys:
    return ApiKeys(primary=secrets.token_urlsafe(32), secondary=secrets.token_urlsafe(32))
