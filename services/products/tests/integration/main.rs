//! Products against real stores: every flow on SQLite and on PostgreSQL (one schema per test;
//! `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    a_product_is_built_within_its_operators_grants,
    reviews_before_release_then_a_registration_code_unique_and_public,
    prices_stay_within_the_bureaus_rules_and_every_change_is_kept,
    release_lists_on_the_exchange_and_termination_delists_everything,
    an_exchanges_signed_receipt_and_trades_apply_once_and_nothing_unsigned_does,
    operators_report_quarters_and_revenue_past_the_permitted_is_flagged_once,
);
