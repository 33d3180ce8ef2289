//! The audit archive against real stores: every flow on SQLite and on PostgreSQL (one schema per
//! test; `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    the_chain_verifies_and_names_the_first_record_altered_deleted_or_reordered,
    checkpoints_are_signed_published_and_catch_a_rewritten_chain,
    records_stay_two_years_after_their_period_and_under_holds_and_the_chain_verifies_after,
    only_bureaus_supervisors_and_auditors_read_and_a_hold_names_what_it_lacks,
    an_early_termination_cuts_access_destroys_under_witness_hands_over_and_closes,
    a_case_open_past_its_deadline_is_flagged_once,
    a_batch_appends_each_tenants_records_to_its_own_chain,
);
