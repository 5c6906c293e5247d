"""What every settings model shares: strictness (unknown keys are errors, values frozen) and
the pattern of placeholder secrets."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

DEFAULT_CALENDLY_API_URL = "https://api.calendly.com"
DEFAULT_BREVO_API_URL = "https://api.brevo.com/v3"

PLACEHOLDERS = re.compile(
    r"^(your[_-].*|changeme|change[_-]me|xxx+|todo|placeholder|<.*>|\$\{.*\})$", re.IGNORECASE
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
