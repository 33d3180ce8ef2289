//! Selection against real stores: every flow on SQLite and on PostgreSQL (one schema per test;
//! `TEST_DATABASE_URL`; a missing server fails, it never skips).
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

mod flows;
mod support;

use pdp_kit::on_both_stores;

on_both_stores!(
    no_call_without_an_effective_plan,
    a_selection_from_call_to_conclusion,
    an_upheld_objection_sends_the_result_back_to_shortlisting,
    an_invited_tender_takes_only_the_invited,
    only_named_evaluators_untied_to_applicants_evaluate,
    objections_are_bounded_paged_and_resolved_together,
    applicants_see_the_result_only_as_the_notice_publishes_it,
    an_incident_oversight_recorded_fails_the_condition_whatever_is_declared,
);
