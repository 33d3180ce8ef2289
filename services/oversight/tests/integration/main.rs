//! Oversight against real stores: every flow on SQLite and on PostgreSQL (one schema per test;
//! `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    refused_queries_raise_one_alert_that_the_supervisors_of_its_duty_handle,
    each_shipped_rule_fires_on_its_stream_and_stays_quiet_on_another,
    an_unanswered_order_fails_at_its_deadline_and_asks_the_bureau_to_terminate,
    a_rectification_rejected_twice_fails_and_an_accepted_one_is_rectified,
    evaluations_score_on_the_criteria_and_an_unevaluated_agreement_near_its_end_alerts,
    the_years_report_lists_its_authorizations_and_products_and_goes_out_as_reviewed,
    incidents_documents_and_assessments_are_kept_and_a_major_incident_alerts_at_once,
);
