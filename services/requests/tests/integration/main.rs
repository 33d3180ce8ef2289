//! Requests against real stores: every flow on SQLite and on PostgreSQL (one schema per test;
//! `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    a_request_lies_within_an_active_agreement_and_says_what_article_17_asks,
    the_bureau_and_each_provider_review_and_the_grant_is_what_all_approved,
    one_rejection_rejects_with_every_reason_shown,
    an_unanswered_review_is_overdue_and_grants_end_on_time_or_on_revocation,
    a_ticket_answered_late_is_overdue_and_the_record_says_so,
    developers_register_with_an_operator_that_reviews_them_and_their_needs,
    providers_load_data_and_operators_query_only_what_their_grant_names,
    providers_stream_whole_files_into_loads,
    operators_pin_the_version_their_grant_reads,
    without_a_sandbox_store_loads_and_queries_are_refused,
    the_bureau_sets_the_group_size_and_the_privacy_budget,
    operators_keep_tables_in_the_grants_workspace_at_the_tenants_rate,
    a_grants_workspace_holds_at_most_its_quota,
    a_buyer_calls_what_its_trade_entitles_under_disclosure_control,
    a_dataset_is_computed_on_its_schedule_and_fetched_as_bought,
);
