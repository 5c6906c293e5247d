"""Issue 13 (security review): every point and the tests that hold it. This file only checks
that those tests still exist, so a rename or a deletion has to come through here (and through
the review that reads this list)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: point → ["path::test name", ...]
ISSUE_13: dict[str, list[str]] = {
    "1 OAuth connect needs the operator's key; another account is refused": [
        "tests/security/test_oauth_connect.py::"
        "test_starting_a_connection_without_the_admin_token_or_a_link_is_refused",
        "tests/security/test_oauth_connect.py::test_a_connect_link_works_once_and_connects_calendly",
        "tests/security/test_oauth_connect.py::test_an_expired_connect_link_is_refused",
        "tests/security/test_oauth_connect.py::"
        "test_a_token_for_another_calendly_account_is_refused_and_the_connection_kept",
        "tests/security/test_oauth_connect.py::"
        "test_a_replace_link_lets_the_operator_switch_calendly_accounts",
        "tests/calendly/test_oauth.py::test_a_callback_without_the_start_cookie_is_refused",
    ],
    "2 placeholder and short secrets refused": [
        "tests/security/test_weak_secrets.py::test_the_values_shipped_in_secret_example_yaml_are_refused",
        "tests/security/test_weak_secrets.py::"
        "test_short_repeated_or_changeme_secrets_are_refused_naming_the_key",
        "tests/security/test_weak_secrets.py::test_the_embedded_dry_run_demo_accepts_a_short_key",
    ],
    "3 a stalled database does not freeze the receiver": [
        "tests/security/test_stalled_database.py::"
        "test_webhooks_keep_answering_202_from_the_last_good_keys_while_postgres_hangs",
        "tests/security/test_stalled_database.py::"
        "test_postgres_engines_get_a_connect_and_a_statement_timeout",
    ],
    "4 a generated signing key is stored, never printed in a CronJob": [
        "tests/calendly/test_signing_key_output.py::"
        "test_check_repair_in_a_cron_job_stores_the_new_key_and_never_prints_it",
        "tests/calendly/test_signing_key_output.py::"
        "test_install_without_a_terminal_does_not_print_the_key",
    ],
    "5 retention and erasure are complete and exact": [
        "tests/security/test_retention.py::"
        "test_prune_strips_superseded_names_phones_and_answers_but_not_the_projection",
        "tests/security/test_retention.py::"
        "test_prune_drops_payloads_of_unfinished_events_and_open_dead_letters_past_retention",
        "tests/security/test_forget_exact.py::test_forget_never_removes_another_persons_dead_letters",
        "tests/security/test_forget_exact.py::test_forget_normalises_unicode_like_the_worker",
        "tests/security/test_forget_exact.py::"
        "test_forget_removes_the_persons_waiting_messages_from_the_embedded_queue",
        "tests/security/test_forget_redis.py::"
        "test_forget_removes_the_persons_waiting_redis_messages_and_leaves_the_held_one",
        "tests/security/test_forget_redis.py::"
        "test_forget_on_the_command_line_says_what_a_worker_still_holds",
    ],
    "6 the worker's health server is threaded with timeouts": [
        "tests/security/test_worker_hostile.py::"
        "test_one_idle_open_connection_does_not_block_the_worker_healthz",
    ],
    "7 admin, OAuth start and metrics on their own port; admin auth rate-limited": [
        "tests/security/test_admin_port.py::"
        "test_admin_metrics_and_the_oauth_start_answer_404_on_the_public_port",
        "tests/security/test_admin_port.py::"
        "test_admin_metrics_and_the_oauth_start_work_on_the_admin_port_with_the_token",
        "tests/security/test_admin_port.py::"
        "test_the_admin_port_comes_from_admin_port_and_must_differ_from_the_public_one",
        "tests/security/test_secrets.py::"
        "test_no_secret_or_email_reaches_logs_metrics_or_error_answers",
        "tests/calendly/test_oauth.py::"
        "test_the_start_on_the_admin_listener_hands_over_to_the_public_one",
        "tests/security/test_admin_auth_limit.py::"
        "test_an_address_that_keeps_guessing_the_admin_token_gets_429_with_a_reason",
        "tests/deploy/test_kubernetes.py::"
        "test_the_ingress_routes_only_the_webhook_and_the_oauth_callback_to_the_public_port",
        "tests/deploy/test_kubernetes.py::"
        "test_network_policies_open_the_public_port_and_the_admin_port_only_to_prometheus_and_peers",
        "tests/deploy/test_kubernetes.py::"
        "test_service_monitors_scrape_the_receiver_and_worker_services",
        "tests/deploy/test_compose.py::"
        "test_caddy_forwards_only_the_public_paths_to_the_receivers_public_port",
    ],
    "8 docker compose: localhost only, no default passwords": [
        "tests/deploy/test_compose.py::test_every_published_port_but_caddys_is_bound_to_localhost",
        "tests/deploy/test_compose.py::"
        "test_passwords_have_no_defaults_and_compose_names_the_missing_one",
        "tests/deploy/test_compose.py::"
        "test_grafana_has_no_anonymous_access_and_no_default_admin_password",
    ],
    "9 ${VAR} expanded after parsing; YAML errors never quote a line": [
        "tests/security/test_config_expansion.py::"
        "test_a_signing_key_with_quotes_and_backslashes_loads_verbatim",
        "tests/security/test_config_expansion.py::test_a_variable_cannot_inject_yaml_structure",
        "tests/security/test_config_expansion.py::"
        "test_a_yaml_error_names_line_and_column_but_never_the_line_itself",
    ],
    "10 keys at rest: private files, keys rotate": [
        "tests/security/test_keys_at_rest.py::test_the_embedded_database_queue_and_key_files_are_private",
        "tests/security/test_keys_at_rest.py::"
        "test_keys_rotate_re_encrypts_every_stored_secret_so_the_old_key_can_go",
    ],
    "11 each pod gets only the secrets it reads": [
        "tests/deploy/test_kubernetes.py::test_every_process_gets_only_the_secret_keys_it_needs",
        "tests/deploy/test_kubernetes.py::"
        "test_the_receiver_has_no_brevo_key_and_the_worker_no_admin_token_or_signing_key",
        "tests/deploy/test_kubernetes.py::test_each_process_starts_with_only_its_own_secret_keys",
        "tests/deploy/test_compose.py::test_each_compose_service_gets_only_the_secrets_it_reads",
        "tests/security/test_weak_secrets.py::"
        "test_a_job_with_a_database_but_no_redis_or_brevo_key_is_not_exempt",
        "tests/calendly/test_links.py::"
        "test_a_receiver_without_the_brevo_key_returns_the_link_and_says_it_was_not_written",
    ],
    "12 logs mask unusual emails, names and phones; dead-letter errors carry no input": [
        "tests/security/test_log_redaction.py::test_unusual_emails_are_masked_in_any_log_text",
        "tests/security/test_log_redaction.py::test_names_and_phone_numbers_are_masked_outside_debug",
        "tests/security/test_log_redaction.py::"
        "test_a_dead_letter_error_does_not_carry_the_raw_input_values",
    ],
    "13 base images and actions pinned": [
        "tests/deploy/test_pins.py::test_every_base_image_is_pinned_by_digest",
        "tests/deploy/test_pins.py::test_every_github_action_is_pinned_by_commit_sha_with_its_version",
    ],
    "done when: SECURITY.md": [
        "tests/security/test_security_doc.py::"
        "test_security_md_states_protections_reporting_and_operator_duties",
    ],
}


def _tests_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_point_of_issue_13_names_tests_that_exist() -> None:
    assert len([p for p in ISSUE_13 if p[0].isdigit()]) == 13
    for point, nodes in ISSUE_13.items():
        assert nodes, point
        for node in nodes:
            path, _, name = node.partition("::")
            assert name in _tests_in(path), f"issue 13 point {point}: {node} is gone"
