"""What the connector last pushed to Brevo for a contact, and the fingerprint of the mapping.

The worker records a :class:`~calendly_brevo.ledger.PushedProjection` each time a contact upsert
succeeds; ``resync`` diffs today's projection against it. Two hashes, both SHA-256 over canonical
JSON (sorted keys, no whitespace), so they are stable across processes and versions of Python:

- :func:`projection_hash`: the pushed attributes and the lists the connector added;
- :func:`mapping_fingerprint`: every setting that changes a projection (``event_mapping``,
  ``field_mapping``, ``brevo.list_moves``, the ``sync`` switches and event-type filter (not
  ``sync.auto_resync``: it changes when, not what), ``enabled``). Contacts pushed under another
  fingerprint may be stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from calendly_brevo.config import Rules
from calendly_brevo.ledger.base import PushedProjection


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def projection_hash(attributes: Mapping[str, Any], list_ids: Iterable[int]) -> str:
    return _digest({"attributes": dict(attributes), "lists": sorted(set(list_ids))})


def mapping_fingerprint(rules: Rules) -> str:
    """A stable hash of the settings a contact's projection depends on. The keys are those of
    the first version (stored fingerprints stay comparable)."""
    return _digest(
        {
            "enabled": rules.enabled,
            "event_mapping": {k: v.model_dump(mode="json") for k, v in rules.event_mapping.items()},
            "field_mapping": rules.fields.model_dump(mode="json"),
            "list_moves": rules.list_moves.model_dump(mode="json"),
            "sync": rules.sync.model_dump(mode="json", exclude={"auto_resync"}),
        }
    )


def pushed_projection(
    email: str,
    attributes: Mapping[str, Any],
    list_ids: Iterable[int],
    fingerprint: str,
    event_id: str | None = None,
) -> PushedProjection:
    """What was pushed, under the mapping ``fingerprint`` (:func:`mapping_fingerprint`, which a
    caller computes once: its settings do not change)."""
    lists = tuple(sorted(set(list_ids)))
    return PushedProjection(
        email=email,
        attributes=dict(attributes),
        list_ids=lists,
        projection_hash=projection_hash(attributes, lists),
        mapping_fingerprint=fingerprint,
        pushed_at=datetime.now(UTC),
        event_id=event_id,
    )


def to_unlink(
    unlink_list_ids: Iterable[int], list_ids: Iterable[int], last: PushedProjection | None
) -> tuple[int, ...]:
    """The lists a contact's upsert unlinks: the projection's, and those the connector added
    under an earlier config (``last`` pushed) and no longer wants (a list dropped from
    ``event_mapping`` is no longer managed, but it is still the connector's)."""
    if last is None:
        return tuple(unlink_list_ids)
    return tuple(sorted(set(unlink_list_ids) | (set(last.list_ids) - set(list_ids))))
