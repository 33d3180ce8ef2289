//! Planning against real stores: every test runs on SQLite and on PostgreSQL (one schema per
//! test; `TEST_DATABASE_URL`, default the local server `.ci/run` starts — a missing server fails,
//! it never skips). Two separately started instances filing over Kafka: `tests/instances.rs`.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    registration_needs_complete_metadata_and_numbers_are_stable,
    ineligible_resources_never_enter_a_scope,
    a_plan_walks_the_chain_and_is_filed_with_the_province,
    steps_out_of_order_name_the_missing_step,
    a_major_amendment_goes_through_the_chain_again,
    a_minor_amendment_applies_with_its_record,
    the_effective_date_is_kept_by_the_scheduler,
    no_tenant_sees_another_tenants_rows,
    the_public_sees_effective_plans_and_no_personal_information,
    lists_page_with_tokens,
    a_stored_state_that_does_not_decode_is_an_error,
    a_state_filtered_list_pages_through_every_version,
    the_chain_s_records_are_in_time_order,
);
