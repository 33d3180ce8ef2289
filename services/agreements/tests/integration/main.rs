//! Agreements against real stores: every flow on SQLite and on PostgreSQL (one schema per test;
//! `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    an_agreement_needs_a_concluded_selection_and_complete_terms,
    signing_activation_and_expiry_happen_on_time,
    renewal_stays_within_three_uninterrupted_years,
    the_bureau_suspends_resumes_and_terminates_on_a_decision,
);
