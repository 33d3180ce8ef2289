//! An injectable clock, so that tests move time instead of waiting for it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until a test moves it. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = now;
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let start = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = ManualClock::at(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        shared.advance(Duration::days(2));
        assert_eq!(clock.now(), start + Duration::days(2));
    }
}

/// The wall clock shifted by the number of seconds written in a file, read on every call: how a
/// test or a demonstration of `pdp dev` moves time for dated rules (windows, notices, terms)
/// from outside the process. A missing or unreadable file means no shift. Never used in cluster
/// mode (the configuration refuses it).
#[derive(Debug, Clone)]
pub struct ShiftedClock {
    file: std::path::PathBuf,
}

impl ShiftedClock {
    pub fn new(file: impl Into<std::path::PathBuf>) -> Self {
        Self { file: file.into() }
    }

    /// Writes the shift that makes the clock read `at` now.
    pub fn shift_to(file: &std::path::Path, at: DateTime<Utc>) -> std::io::Result<()> {
        let seconds = (at - Utc::now()).num_seconds();
        std::fs::write(file, seconds.to_string())
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let shift = std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Utc::now() + Duration::seconds(shift)
    }
}
