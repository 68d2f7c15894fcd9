"""API keys for the endpoint: generated once at provision, kept out of every config file."""

from __future__ import annotations

import secrets

from provision.targets import ApiKeys

PRIMARY = "api-key-primary"
SECONDARY = "api-key-secondary"


KEY_NAMES = {"primary": PRIMARY, "secondary": SECONDARY}


def generate_key() -> str:
    return secrets.token_urlsafe(32)


def generate_keys() -> ApiKeys:
    return ApiKeys(primary=generate_key(), secondary=generate_key())
