"""The Postgres ledger's hot-path statements, plain SQL in psycopg's paramstyle.

Kept apart from :mod:`.postgres` so the code reads without scrolling past them; see
``benchmarks/RESULTS.md`` for why the hot path is not the ORM.
"""

from calendly_brevo.ledger.base import DONE

_DONE_SQL = ", ".join(f"'{status}'" for status in sorted(DONE))

#: The claim, one round trip. ``prev`` is the row as the statement's snapshot saw it (for
#: ``interrupted`` and for a duplicate's attempts and effects); the upsert locks and changes the
#: latest version, and returns nothing when that one is done: the event is a duplicate. Under
#: the contact lock both are the same row version.
PG_CLAIM = """
WITH prev AS (
    SELECT status, attempts, effects FROM processed_events WHERE event_id = %(event_id)s
), claimed AS (
    INSERT INTO processed_events AS pe (
        event_id, event_name, invitee_uri, email, status, source, attempts, effects, payload,
        signature_key, received_at, claimed_at, created_at, updated_at
    ) VALUES (
        %(event_id)s, %(event_name)s, %(invitee_uri)s, %(email)s, 'processing', %(source)s, 1,
        '{}', %(payload)s, %(signature_key)s, %(received_at)s, %(ts)s, %(ts)s, %(ts)s
    )
    ON CONFLICT (event_id) DO UPDATE SET
        status = 'processing',
        attempts = pe.attempts + 1,
        claimed_at = EXCLUDED.claimed_at,
        updated_at = EXCLUDED.updated_at,
        payload = COALESCE(pe.payload, EXCLUDED.payload)
    WHERE pe.status NOT IN ({done})
    RETURNING attempts, effects, brevo_calls
)
SELECT prev.status, prev.attempts, prev.effects, claimed.attempts, claimed.effects,
    claimed.brevo_calls
FROM (SELECT 1) AS one LEFT JOIN prev ON true LEFT JOIN claimed ON true
""".replace("{done}", _DONE_SQL)

#: What the state merge reads, one round trip: the stored record of the event's invitee and
#: its no-show mark, both locked for the merge (kinds 1 and 3), every other record of the
#: contact (2), and every other mark of the contact's invitees (4, a superset: filtered after
#: the merge, when the invitee's final email is known).
PG_STATE = """
WITH target AS (
    SELECT invitee_uri, data FROM invitees WHERE invitee_uri = %(uri)s FOR UPDATE
), target_mark AS (
    SELECT invitee_uri, mark_key, no_show_uri, created, deleted, marked_at
    FROM no_shows WHERE mark_key = %(mark_key)s FOR UPDATE
)
SELECT 1, invitee_uri, data, NULL::text, NULL::text, NULL::bool, NULL::bool, NULL::text
FROM target
UNION ALL
SELECT 2, invitee_uri, data, NULL, NULL, NULL, NULL, NULL FROM invitees
WHERE email = %(email)s AND invitee_uri IS DISTINCT FROM %(uri)s
UNION ALL
SELECT 3, invitee_uri, NULL, mark_key, no_show_uri, created, deleted, marked_at FROM target_mark
UNION ALL
SELECT 4, n.invitee_uri, NULL, n.mark_key, n.no_show_uri, n.created, n.deleted, n.marked_at
FROM no_shows AS n
WHERE (
    n.invitee_uri = %(uri)s
    OR n.invitee_uri IN (SELECT invitee_uri FROM invitees WHERE email = %(email)s)
) AND n.mark_key IS DISTINCT FROM %(mark_key)s
"""

PG_SAVE_INVITEE = """
INSERT INTO invitees (invitee_uri, email, status, data, updated_at)
VALUES (%(uri)s, %(email)s, %(status)s, %(data)s::json, %(ts)s)
ON CONFLICT (invitee_uri) DO UPDATE SET
    email = EXCLUDED.email, status = EXCLUDED.status, data = EXCLUDED.data,
    updated_at = EXCLUDED.updated_at
"""

PG_SAVE_MARK = """
INSERT INTO no_shows (mark_key, no_show_uri, invitee_uri, created, deleted, marked_at, updated_at)
VALUES (%(key)s, %(no_show_uri)s, %(invitee_uri)s, %(created)s, %(deleted)s, %(marked_at)s, %(ts)s)
ON CONFLICT (mark_key) DO UPDATE SET
    created = EXCLUDED.created, deleted = EXCLUDED.deleted, marked_at = EXCLUDED.marked_at,
    updated_at = EXCLUDED.updated_at
"""

#: ``record_effect``: by whether it finishes the event (``None``: no) and as done (``True``).
#: Here and in ``finish``, the Brevo call log replaces the stored one when given (a NULL
#: ``calls`` leaves it).
PG_RECORD_EFFECT = {
    None: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s,
    brevo_calls = COALESCE(%(calls)s::json, brevo_calls)
WHERE event_id = %(event_id)s
""",
    False: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s,
    brevo_calls = COALESCE(%(calls)s::json, brevo_calls),
    status = %(status)s, last_error = %(error)s
WHERE event_id = %(event_id)s
""",
    True: """
UPDATE processed_events SET effects = %(effects)s::json, updated_at = %(ts)s,
    brevo_calls = COALESCE(%(calls)s::json, brevo_calls),
    status = %(status)s, last_error = %(error)s, applied_at = %(ts)s
WHERE event_id = %(event_id)s
""",
}
#: ``finish``: by whether the status is a done one.
PG_FINISH = {
    False: """
UPDATE processed_events SET updated_at = %(ts)s, status = %(status)s, last_error = %(error)s,
    brevo_calls = COALESCE(%(calls)s::json, brevo_calls)
WHERE event_id = %(event_id)s
""",
    True: """
UPDATE processed_events SET updated_at = %(ts)s, status = %(status)s, last_error = %(error)s,
    applied_at = %(ts)s, brevo_calls = COALESCE(%(calls)s::json, brevo_calls)
WHERE event_id = %(event_id)s
""",
}

PG_ATTEMPTS_EFFECTS = "SELECT attempts, effects FROM processed_events WHERE event_id = %(event_id)s"

# -- pushed projections: one statement each, on the contact lock's connection ------------------
PG_LAST_PUSHED = """
SELECT email, attributes, list_ids, projection_hash, mapping_fingerprint, pushed_at, event_id
FROM pushed_projections WHERE email = %(email)s
"""

PG_RECORD_PUSHED = """
INSERT INTO pushed_projections
    (email, attributes, list_ids, projection_hash, mapping_fingerprint, pushed_at, event_id)
VALUES (%(email)s, %(attributes)s, %(list_ids)s, %(projection_hash)s, %(mapping_fingerprint)s,
        %(pushed_at)s, %(event_id)s)
ON CONFLICT (email) DO UPDATE SET
    attributes = EXCLUDED.attributes, list_ids = EXCLUDED.list_ids,
    projection_hash = EXCLUDED.projection_hash,
    mapping_fingerprint = EXCLUDED.mapping_fingerprint,
    pushed_at = EXCLUDED.pushed_at, event_id = EXCLUDED.event_id
"""

#: Whether any of some tombstone keys is stored (every invitee event asks, under its lock).
PG_TOMBSTONED = "SELECT 1 FROM tombstones WHERE key_hash = ANY(%(keys)s) LIMIT 1"

# -- a group of events in one pass (:mod:`worker.group`): one statement for many ------------------
# Their arrays go in binary (``%(name)b``): in text, psycopg escapes every quote of every
# element in Python, which cost about 2 ms a statement for a group's JSON payloads (0.25 ms in
# binary, measured on this project's 2-core VM).
#: Claim the events never seen before, all at once; an event already stored (a retry, a
#: redelivery, a duplicate) is not claimed here, nor one whose invitee was forgotten (its
#: invitee tombstone key in ``tombstones``): each takes the one-event path, which knows them.
PG_CLAIM_FRESH = """
INSERT INTO processed_events (
    event_id, event_name, invitee_uri, email, status, source, attempts, effects, payload,
    signature_key, received_at, claimed_at, created_at, updated_at
)
SELECT e, n, u, m, 'processing', s, 1, '{}', p, k, r, %(ts)s, %(ts)s, %(ts)s
FROM unnest(
    %(ids)b::text[], %(names)b::text[], %(uris)b::text[], %(emails)b::text[],
    %(sources)b::text[], %(payloads)b::text[], %(keys)b::text[], %(received)b::timestamptz[],
    %(tombstones)b::text[]
) AS t(e, n, u, m, s, p, k, r, tk)
WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE key_hash = t.tk)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

#: :data:`PG_STATE` for many contacts at once: kinds 1 and 3 (locked) for every event's invitee
#: and mark, 2 every record of the contacts (with its email, to split them per event), 4 every
#: mark of their invitees. Split per event in :meth:`PostgresLedger.claim_fresh`.
PG_STATES = """
WITH target AS (
    SELECT invitee_uri, email, data FROM invitees WHERE invitee_uri = ANY(%(uris)b) FOR UPDATE
), target_mark AS (
    SELECT invitee_uri, mark_key, no_show_uri, created, deleted, marked_at
    FROM no_shows WHERE mark_key = ANY(%(mark_keys)b) FOR UPDATE
), theirs AS (
    SELECT invitee_uri, email, data FROM invitees WHERE email = ANY(%(emails)b)
)
SELECT 1, invitee_uri, email, data, NULL::text, NULL::text, NULL::bool, NULL::bool, NULL::text
FROM target
UNION ALL
SELECT 2, invitee_uri, email, data, NULL, NULL, NULL, NULL, NULL FROM theirs
UNION ALL
SELECT 3, invitee_uri, NULL, NULL, mark_key, no_show_uri, created, deleted, marked_at
FROM target_mark
UNION ALL
SELECT 4, n.invitee_uri, NULL, NULL, n.mark_key, n.no_show_uri, n.created, n.deleted,
    n.marked_at
FROM no_shows AS n
WHERE n.invitee_uri = ANY(%(uris)b) OR n.invitee_uri IN (SELECT invitee_uri FROM theirs)
"""

PG_SAVE_INVITEES = """
INSERT INTO invitees (invitee_uri, email, status, data, updated_at)
SELECT u, m, s, d::json, %(ts)s
FROM unnest(%(uris)b::text[], %(emails)b::text[], %(statuses)b::text[], %(data)b::text[])
    AS t(u, m, s, d)
ON CONFLICT (invitee_uri) DO UPDATE SET
    email = EXCLUDED.email, status = EXCLUDED.status, data = EXCLUDED.data,
    updated_at = EXCLUDED.updated_at
"""

#: :data:`PG_RECORD_EFFECT` for many events: a NULL status records the effects only.
PG_RECORD_EFFECTS = """
UPDATE processed_events AS pe SET effects = t.effects::json, updated_at = %(ts)s,
    brevo_calls = COALESCE(t.calls::json, pe.brevo_calls),
    status = COALESCE(t.status, pe.status),
    last_error = CASE WHEN t.status IS NULL THEN pe.last_error END,
    applied_at = CASE WHEN t.status IN ({done}) THEN %(ts)s ELSE pe.applied_at END
FROM unnest(%(ids)b::text[], %(effects)b::text[], %(calls)b::text[], %(statuses)b::text[])
    AS t(event_id, effects, calls, status)
WHERE pe.event_id = t.event_id
""".replace("{done}", _DONE_SQL)

PG_RECORD_PUSHED_MANY = """
INSERT INTO pushed_projections
    (email, attributes, list_ids, projection_hash, mapping_fingerprint, pushed_at, event_id)
SELECT m, a::json, l::json, h, f, %(ts)s, e
FROM unnest(
    %(emails)b::text[], %(attributes)b::text[], %(list_ids)b::text[], %(hashes)b::text[],
    %(fingerprints)b::text[], %(event_ids)b::text[]
) AS t(m, a, l, h, f, e)
ON CONFLICT (email) DO UPDATE SET
    attributes = EXCLUDED.attributes, list_ids = EXCLUDED.list_ids,
    projection_hash = EXCLUDED.projection_hash,
    mapping_fingerprint = EXCLUDED.mapping_fingerprint,
    pushed_at = EXCLUDED.pushed_at, event_id = EXCLUDED.event_id
"""

PG_LAST_PUSHED_MANY = """
SELECT email, attributes, list_ids, projection_hash, mapping_fingerprint, pushed_at, event_id
FROM pushed_projections WHERE email = ANY(%(emails)b)
"""

#: Which of some tombstone keys are stored.
PG_TOMBSTONES = "SELECT key_hash FROM tombstones WHERE key_hash = ANY(%(keys)b)"

#: :data:`PG_RECORD_EFFECTS`, then :data:`PG_RECORD_PUSHED_MANY`, as one statement (one round
#: trip and one commit): a data-modifying ``WITH`` runs whether or not it is read.
PG_RECORD_EFFECTS_AND_PUSHED = "WITH effects AS (" + PG_RECORD_EFFECTS + ")" + PG_RECORD_PUSHED_MANY
