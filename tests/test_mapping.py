"""The mapping engine: event types → lists, invitee fields → typed Brevo attributes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calendly_brevo.config import Settings
from calendly_brevo.events import event_from_dict
from calendly_brevo.mapping import (
    attributes_for,
    lists_for,
    managed_lists,
    match_answer,
    meeting_date,
    normalize_phone,
    readable_answer,
    region_for_timezone,
    slugify,
)
from calendly_brevo.state import InviteeRecord, record_from_event
from tests import payloads as p


def record(env: dict[str, Any]) -> InviteeRecord:
    rec = record_from_event(event_from_dict(env))
    assert rec is not None
    return rec


def config(event_mapping: dict[str, Any], **extra: Any) -> Settings:
    return Settings.model_validate(
        {"connectors": {"calendly": {"event_mapping": event_mapping}}, **extra}
    )


# --- lists -------------------------------------------------------------------------------------
def test_lists_match_by_event_type_uri() -> None:
    assert lists_for(record(p.invitee_created()), p.settings().calendly.event_mapping) == (10,)
    demo = record(p.invitee_created(event_type_uri=p.DEMO_EVENT_TYPE_URI, event_type_name="Demo"))
    assert lists_for(demo, p.settings().calendly.event_mapping) == (11,)


def test_lists_match_by_mapping_key_as_slug_of_the_event_name() -> None:
    cfg = config({"discovery_call": {"list_id": 10}, "demo": {"list_ids": [11, 12]}})
    rec = record(p.invitee_created(event_type_name="Discovery  Call"))
    assert lists_for(rec, cfg.calendly.event_mapping) == (10,)
    assert lists_for(
        record(p.invitee_created(event_type_name="DEMO")), cfg.calendly.event_mapping
    ) == (11, 12)


def test_lists_match_by_explicit_slug_then_by_name_case_insensitively() -> None:
    cfg = config(
        {
            "a": {"list_id": 1, "slug": "intro-chat"},
            "b": {"list_id": 2, "name": "Onboarding  session"},
        }
    )
    assert lists_for(
        record(p.invitee_created(event_type_name="Intro Chat")), cfg.calendly.event_mapping
    ) == (1,)
    assert lists_for(
        record(p.invitee_created(event_type_name="onboarding session")), cfg.calendly.event_mapping
    ) == (2,)


def test_a_uri_match_wins_over_a_name_match() -> None:
    cfg = config(
        {
            "by_name": {"list_id": 1, "name": "15 Minute Meeting"},
            "by_uri": {"list_id": 2, "event_type_uri": p.DEFAULT_EVENT_TYPE_URI + "/"},
        }
    )
    assert lists_for(record(p.invitee_created()), cfg.calendly.event_mapping) == (2,)


def test_an_entry_pinned_to_a_uri_does_not_catch_another_event_type_by_name() -> None:
    cfg = config({"demo": {"list_id": 11, "event_type_uri": p.DEMO_EVENT_TYPE_URI}})
    other = record(
        p.invitee_created(event_type_uri=p.event_type_uri("OTHER"), event_type_name="Demo")
    )
    assert lists_for(other, cfg.calendly.event_mapping) == ()


def test_several_entries_for_one_event_type_give_all_their_lists_once() -> None:
    cfg = config(
        {
            "one": {"list_ids": [3, 1], "event_type_uri": p.DEFAULT_EVENT_TYPE_URI},
            "two": {"list_id": 1, "list_ids": [7], "event_type_uri": p.DEFAULT_EVENT_TYPE_URI},
        }
    )
    assert lists_for(record(p.invitee_created()), cfg.calendly.event_mapping) == (3, 1, 7)


def test_a_payload_without_scheduled_event_maps_to_no_list() -> None:
    assert (
        lists_for(
            record(p.invitee_created(with_scheduled_event=False)),
            p.settings().calendly.event_mapping,
        )
        == ()
    )


def test_managed_lists_are_every_list_named_in_the_config() -> None:
    cfg = p.settings(
        brevo={
            "list_moves": {"on_cancel": {"add": [20], "remove": [10]}, "on_no_show": {"add": [30]}}
        }
    )
    assert managed_lists(cfg) == {10, 11, 20, 30}


def test_slugify_joins_words_with_dashes() -> None:
    assert slugify("Discovery Call ") == slugify("discovery_call") == "discovery-call"
    assert slugify("Café Meeting!") == "cafe-meeting"


# --- names -------------------------------------------------------------------------------------
def test_first_and_last_name_come_from_calendlys_split_fields() -> None:
    rec = record(p.invitee_created(first_name="Ada", last_name="King", name="Ada King"))
    attrs = attributes_for(rec, "booked", p.settings().rules)
    assert (attrs["FIRSTNAME"], attrs["LASTNAME"]) == ("Ada", "King")


def test_null_first_and_last_name_fall_back_to_splitting_name() -> None:
    rec = record(p.invitee_created(first_name=None, last_name=None, name="Jean Claude Van Damme"))
    attrs = attributes_for(rec, "booked", p.settings().rules)
    assert (attrs["FIRSTNAME"], attrs["LASTNAME"]) == ("Jean", "Claude Van Damme")


def test_a_single_word_name_has_no_last_name() -> None:
    attrs = attributes_for(record(p.invitee_created(name="Madonna")), "booked", p.settings().rules)
    assert attrs["FIRSTNAME"] == "Madonna"
    assert "LASTNAME" not in attrs


def test_the_name_attribute_gets_the_full_name_when_first_name_is_mapped_apart() -> None:
    cfg = p.settings(field_mapping={"name": "FULLNAME", "first_name": "FIRSTNAME"})
    attrs = attributes_for(record(p.invitee_created(name="Ada King")), None, cfg.rules)
    assert attrs["FULLNAME"] == "Ada King"
    assert attrs["FIRSTNAME"] == "Ada"
    assert attrs["LASTNAME"] == "King"


# --- questions ---------------------------------------------------------------------------------
QAS = (
    ("What is your role?", "CTO"),
    ("Company name", "Acme"),
    ("Company", "Acme Inc."),
    ("Phone Number", "+31 6 12345678"),
)


def test_an_exact_question_match_beats_a_prefix_match() -> None:
    assert match_answer("company", QAS) == "Acme Inc."


def test_a_key_matches_the_start_of_a_question() -> None:
    assert match_answer("phone", QAS) == "+31 6 12345678"
    assert match_answer("company", QAS[:2]) == "Acme"


def test_a_key_matches_whole_words_anywhere_in_a_question() -> None:
    assert match_answer("role", QAS) == "CTO"
    assert match_answer("rol", QAS) is None  # whole words only


def test_underscores_in_keys_are_spaces() -> None:
    assert match_answer("company_name", QAS) == "Acme"


def test_the_first_question_by_position_wins_within_a_tier() -> None:
    qas = (("Company size", "10"), ("Company name", "Acme"))
    assert match_answer("company", qas) == "10"


@settings(max_examples=80, deadline=None)
@given(
    cases=st.lists(st.booleans(), min_size=12, max_size=12),
    pads=st.lists(st.sampled_from(["", " ", "  ", "\t", "\n", "_", " - "]), min_size=3, max_size=3),
)
def test_question_matching_ignores_case_and_spacing(cases: list[bool], pads: list[str]) -> None:
    text = "".join(
        c.upper() if up else c.lower() for c, up in zip("company name", cases, strict=False)
    )
    question = pads[0] + text.replace(" ", pads[1] or " ") + pads[2] + "?"
    assert match_answer("Company_Name", [("Other", "x"), (question, "Acme")]) == "Acme"


def test_multi_select_answers_are_readable() -> None:
    assert readable_answer("Answer 1\nAnswer 2\n\n Answer 3 ") == "Answer 1, Answer 2, Answer 3"
    cfg = p.settings(field_mapping={"questions_and_answers": {"interests": "INTERESTS"}})
    rec = record(p.invitee_created(questions=[("Interests", "SEO\nAds\nEmail")]))
    assert attributes_for(rec, None, cfg.rules)["INTERESTS"] == "SEO, Ads, Email"


def test_the_seed_mapping_fills_company_role_and_phone() -> None:
    rec = record(p.invitee_created(questions=list(QAS)))
    attrs = attributes_for(rec, "booked", p.settings().rules)
    assert attrs["COMPANY"] == "Acme Inc."
    assert attrs["JOB_TITLE"] == "CTO"
    assert attrs["SMS"] == "+31612345678"


# --- phones ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+31612345678", None, "+31612345678"),
        ("+31 6 1234 5678", None, "+31612345678"),
        ("+1 212-555-0199", None, "+12125550199"),
        ("(212) 555-0199", "US", "+12125550199"),
        ("06-12345678", "NL", "+31612345678"),
        ("0031 6 12345678", None, "+31612345678"),
        ("06 12345678", None, None),  # no country code and no region: unknowable
        ("garbage", "NL", None),
        ("+31 6", None, None),
        ("", "NL", None),
    ],
)
def test_phone_numbers_are_normalised_to_e164(
    raw: str, region: str | None, expected: str | None
) -> None:
    assert normalize_phone(raw, region) == expected


@settings(max_examples=60, deadline=None)
@given(seps=st.lists(st.sampled_from(["", " ", "-", ".", "  "]), min_size=4, max_size=4))
def test_any_punctuation_of_a_valid_number_gives_the_same_e164(seps: list[str]) -> None:
    raw = f"+31{seps[0]}6{seps[1]}1234{seps[2]}5678{seps[3]}"
    assert normalize_phone(raw) == "+31612345678"


def test_a_national_number_uses_the_configured_default_region() -> None:
    cfg = p.settings(field_mapping={"phone_default_region": "NL"})
    rec = record(p.invitee_created(questions=[("Phone", "06 12345678")]))
    assert attributes_for(rec, None, cfg.rules)["SMS"] == "+31612345678"


def test_a_national_number_is_read_in_the_country_of_the_invitee_timezone() -> None:
    if region_for_timezone("Europe/Amsterdam") is None:
        pytest.skip("no zone.tab on this machine")
    rec = record(
        p.invitee_created(questions=[("Phone", "06 12345678")], timezone="Europe/Amsterdam")
    )
    assert attributes_for(rec, None, p.settings().rules)["SMS"] == "+31612345678"


def test_an_unparseable_phone_is_kept_as_text_and_left_out_of_sms() -> None:
    rec = record(p.invitee_created(questions=[("Phone", "call me maybe")]))
    attrs = attributes_for(rec, None, p.settings().rules)
    assert "SMS" not in attrs
    assert attrs["PHONE_TEXT"] == "call me maybe"


def test_timezone_regions_come_from_the_tz_database() -> None:
    if region_for_timezone("Europe/Amsterdam") is None:
        pytest.skip("no zone.tab on this machine")
    assert region_for_timezone("America/New_York") == "US"
    assert region_for_timezone("Europe/London") == "GB"
    assert region_for_timezone("UTC") is None
    assert region_for_timezone(None) is None


# --- dates and other attributes ----------------------------------------------------------------
def test_meeting_date_is_the_date_in_the_invitees_timezone() -> None:
    assert meeting_date("2030-01-11T03:30:00.000000Z", "America/New_York") == "2030-01-10"
    assert meeting_date("2030-01-11T03:30:00.000000Z", None) == "2030-01-11"
    assert meeting_date("2030-01-11T03:30:00Z", "Not/AZone") == "2030-01-11"
    assert meeting_date(None, "UTC") is None
    assert meeting_date("soon", "UTC") is None


@settings(max_examples=60, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    tz=st.sampled_from([None, "UTC", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati"]),
)
def test_dates_are_always_yyyy_mm_dd(when: datetime, tz: str | None) -> None:
    stamp = when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    date = meeting_date(stamp, tz)
    assert date is not None
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)


def test_booking_attributes_and_tracking() -> None:
    cfg = p.settings(
        field_mapping={
            "timezone": "TIMEZONE",
            "cancel_url": "CANCEL_URL",
            "reschedule_url": "RESCHEDULE_URL",
            "tracking": {"utm_source": "UTM_SOURCE", "utm_campaign": "UTM_CAMPAIGN"},
        }
    )
    rec = record(p.invitee_created(tracking={"utm_source": "newsletter"}))
    attrs = attributes_for(rec, "booked", cfg.rules)
    assert attrs["BOOKING_STATUS"] == "booked"
    assert attrs["MEETING_DATE"] == "2030-01-10"
    assert attrs["CALENDLY_EVENT_TYPE"] == "15 Minute Meeting"
    assert attrs["TIMEZONE"] == "America/New_York"
    assert attrs["CANCEL_URL"].startswith("https://calendly.com/cancellations/")
    assert attrs["RESCHEDULE_URL"].startswith("https://calendly.com/reschedulings/")
    assert attrs["UTM_SOURCE"] == "newsletter"
    assert "UTM_CAMPAIGN" not in attrs


def test_a_record_without_scheduled_event_still_gets_person_attributes() -> None:
    attrs = attributes_for(
        record(p.invitee_created(with_scheduled_event=False)), "booked", p.settings().rules
    )
    assert attrs == {"FIRSTNAME": "John", "LASTNAME": "Doe", "BOOKING_STATUS": "booked"}


def test_every_attribute_value_is_a_non_empty_string() -> None:
    rec = replace(
        record(p.invitee_created(questions=list(QAS), tracking={"utm_source": "x"})),
        last_name="",
    )
    attrs = attributes_for(rec, "booked", p.settings().rules)
    assert attrs
    assert all(isinstance(v, str) and v for v in attrs.values())


@settings(max_examples=60, deadline=None)
@given(tz=st.text(max_size=40), start=st.text(max_size=40))
def test_meeting_date_never_raises_on_odd_input(tz: str, start: str) -> None:
    meeting_date(start, tz)
    meeting_date("2030-01-11T03:30:00Z", tz)


def test_a_non_ascii_event_name_does_not_match_a_non_ascii_key_by_empty_slug() -> None:
    cfg = config({"会議": {"list_id": 5}})
    rec = record(p.invitee_created(event_type_name="打ち合わせ"))
    assert lists_for(rec, cfg.calendly.event_mapping) == ()
    assert lists_for(
        record(p.invitee_created(event_type_name="会議")),
        config({"x": {"list_id": 5, "name": "会議"}}).calendly.event_mapping,
    ) == (5,)


def test_name_and_first_name_on_one_attribute_give_the_given_name() -> None:
    cfg = p.settings(field_mapping={"name": "FIRSTNAME", "first_name": "FIRSTNAME"})
    assert attributes_for(record(p.invitee_created()), None, cfg.rules)["FIRSTNAME"] == "John"


def test_the_sms_reminder_number_becomes_the_sms_attribute_in_e164() -> None:
    rec = record(p.invitee_created(text_reminder_number="+1 212-555-0199"))
    assert attributes_for(rec, None, p.settings().rules)["SMS"] == "+12125550199"


def test_a_phone_answer_mapped_to_sms_wins_over_the_reminder_number() -> None:
    rec = record(p.invitee_created(questions=list(QAS), text_reminder_number="+12125550199"))
    assert attributes_for(rec, None, p.settings().rules)["SMS"] == "+31612345678"


def test_an_unparseable_reminder_number_goes_to_the_fallback_attribute_not_sms() -> None:
    rec = record(p.invitee_created(text_reminder_number="not a number"))
    attrs = attributes_for(rec, None, p.settings().rules)
    assert "SMS" not in attrs
    assert attrs["PHONE_TEXT"] == "not a number"


def test_the_reminder_number_mapping_can_be_switched_off() -> None:
    rec = record(p.invitee_created(text_reminder_number="+12125550199"))
    cfg = p.settings(field_mapping={"text_reminder_number": None})
    assert "SMS" not in attributes_for(rec, None, cfg.rules)


def test_the_event_type_filter_matches_uri_slug_or_name_and_exclude_wins() -> None:
    from calendly_brevo.mapping import event_type_synced
    from calendly_brevo.state import InviteeRecord

    def synced(include: list[str], exclude: list[str], **record: str | None) -> bool:
        settings = p.settings(
            connectors={
                "calendly": {"sync": {"event_types": {"include": include, "exclude": exclude}}}
            }
        )
        r = InviteeRecord(invitee_uri="u", email="a@example.com", **record)  # type: ignore[arg-type]
        return event_type_synced(r, settings.calendly.sync.event_types)

    uri = "https://api.calendly.com/event_types/ABC"
    call = {"event_type_uri": uri + "/", "event_type_name": "Discovery Call"}
    assert synced([], [], **call)
    assert synced([uri], [], **call)
    assert synced(["discovery_call"], [], **call)
    assert synced(["discovery call"], [], **call)
    assert not synced(["demo"], [], **call)
    assert not synced([], ["Discovery-Call"], **call)
    assert not synced([uri], [uri], **call)
    assert not synced(["demo"], [], event_type_uri=None, event_type_name=None)
    assert synced([], ["demo"], event_type_uri=None, event_type_name=None)
