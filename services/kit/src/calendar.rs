//! Working days of mainland China (工作日), in Asia/Shanghai.
//!
//! Monday to Friday are working days, minus the statutory days off, plus the adjusted working days
//! (调休上班日) that fall on weekends. The schedule is data: the years shipped with pdp
//! (`data/holidays-cn.toml`), plus the years a deployment adds in its own file
//! (`calendar.holidays_file`), which the State Council publishes each November for the next year.
//! The deployment's file is read at start and again whenever it changes, so a new year needs no
//! new binary. A date in a year neither covers is an error rather than a guess, since a wrong
//! deadline is worse than none.
//!
//! Periods are counted as the Civil Code counts them (民法典 第二百零一条, 第二百零三条): the day
//! a period starts is not counted, and the period ends at 24:00 of its last day.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Shanghai;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

const SHIPPED: &str = include_str!("../data/holidays-cn.toml");

/// How a deployment adds a year: said in every error about a year the calendar does not hold.
pub const HOW_TO_ADD_A_YEAR: &str = "the State Council publishes each year's holidays and \
adjusted working days in November: add that year as a [[year]] to the file named by \
calendar.holidays_file (PDP_CALENDAR__HOLIDAYS_FILE; the chart's calendar.holidays value), \
check it with `pdp calendar check FILE`, and running services pick it up without a restart";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("the working-day calendar has no schedule for {0}; {HOW_TO_ADD_A_YEAR}")]
    YearNotCovered(i32),
    #[error("holiday file: {0}")]
    Invalid(String),
}

/// The working-day calendar a process uses. Shared by its services; [`WorkingCalendar::watch`]
/// swaps in the deployment's file when it changes, and readers see one whole schedule or the
/// next, never a mix.
#[derive(Debug)]
pub struct WorkingCalendar {
    schedule: RwLock<Arc<Schedule>>,
}

/// The years a calendar holds.
#[derive(Debug, Clone, Default)]
struct Schedule {
    years: BTreeMap<i32, Year>,
}

#[derive(Debug, Clone, Default)]
struct Year {
    days_off: BTreeSet<NaiveDate>,
    working_days: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    year: Vec<YearEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearEntry {
    year: i32,
    days_off: Vec<String>,
    working_days: Vec<String>,
}

impl Schedule {
    fn parse(text: &str) -> Result<Self, CalendarError> {
        let file: File = toml::from_str(text).map_err(|e| CalendarError::Invalid(e.to_string()))?;
        let mut years = BTreeMap::new();
        for entry in file.year {
            let mut year = Year::default();
            for item in &entry.days_off {
                year.days_off.extend(expand(item, entry.year)?);
            }
            for item in &entry.working_days {
                for day in expand(item, entry.year)? {
                    if !is_weekend(day) {
                        return Err(CalendarError::Invalid(format!(
                            "adjusted working day {day} is not a weekend day"
                        )));
                    }
                    year.working_days.insert(day);
                }
            }
            if let Some(both) = year.days_off.intersection(&year.working_days).next() {
                return Err(CalendarError::Invalid(format!(
                    "{both} is listed both as a day off and as a working day"
                )));
            }
            if years.insert(entry.year, year).is_some() {
                return Err(CalendarError::Invalid(format!(
                    "year {} listed twice",
                    entry.year
                )));
            }
        }
        Ok(Self { years })
    }

    fn shipped() -> Self {
        Self::parse(SHIPPED).expect("the shipped holiday file is valid")
    }

    /// The shipped years with the deployment's on top: a year in both is the deployment's, so
    /// that a correction needs no release either.
    fn with_deployment_file(path: &Path) -> Result<Self, CalendarError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CalendarError::Invalid(format!("{}: {e}", path.display())))?;
        let added = Self::parse(&text)
            .map_err(|e| CalendarError::Invalid(format!("{}: {e}", path.display())))?;
        let mut schedule = Self::shipped();
        schedule.years.extend(added.years);
        Ok(schedule)
    }
}

impl WorkingCalendar {
    fn of(schedule: Schedule) -> Self {
        Self {
            schedule: RwLock::new(Arc::new(schedule)),
        }
    }

    fn current(&self) -> Arc<Schedule> {
        self.schedule.read().expect("calendar lock").clone()
    }

    /// The years shipped with pdp.
    pub fn shipped() -> Self {
        Self::of(Schedule::shipped())
    }

    /// The shipped years plus those of the deployment's file, when configuration names one.
    pub fn load(deployment_file: Option<&Path>) -> Result<Self, CalendarError> {
        match deployment_file {
            None => Ok(Self::shipped()),
            Some(path) => Ok(Self::of(Schedule::with_deployment_file(path)?)),
        }
    }

    /// One holiday file alone (no shipped years): what `pdp calendar check` validates.
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        Ok(Self::of(Schedule::parse(text)?))
    }

    /// Reads the deployment's file again and, when it is valid, uses it from now on; an invalid
    /// file leaves the calendar as it was. Returns the years covered now.
    pub fn reload(&self, deployment_file: &Path) -> Result<Vec<i32>, CalendarError> {
        let schedule = Schedule::with_deployment_file(deployment_file)?;
        let years = schedule.years.keys().copied().collect();
        *self.schedule.write().expect("calendar lock") = Arc::new(schedule);
        Ok(years)
    }

    /// The years this calendar covers.
    pub fn years(&self) -> Vec<i32> {
        self.current().years.keys().copied().collect()
    }

    pub fn covers(&self, year: i32) -> bool {
        self.current().years.contains_key(&year)
    }

    /// From 1 December, the next year when the calendar does not hold it yet: periods counted
    /// from late December reach into it and would be refused.
    pub fn missing_next_year(&self, today: NaiveDate) -> Option<i32> {
        let next = today.year() + 1;
        (today.month() == 12 && !self.covers(next)).then_some(next)
    }

    pub fn is_working_day(&self, day: NaiveDate) -> Result<bool, CalendarError> {
        self.current().is_working_day(day)
    }

    /// The `n`-th working day after `day`; `day` itself is never counted (第二百零一条).
    pub fn working_days_after(&self, day: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        let schedule = self.current();
        let mut current = day;
        let mut counted = 0;
        while counted < n {
            current = current
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::YearNotCovered(current.year()))?;
            if schedule.is_working_day(current)? {
                counted += 1;
            }
        }
        Ok(current)
    }

    /// The instant a period of `n` working days ends when it starts at `start`: 24:00
    /// Asia/Shanghai of the `n`-th working day after the civil date of `start` (第二百零三条).
    pub fn period_end(&self, start: DateTime<Utc>, n: u32) -> Result<DateTime<Utc>, CalendarError> {
        let last_day = self.working_days_after(civil_date(start), n)?;
        Ok(end_of_day(last_day))
    }

    /// Keeps the calendar in step with the deployment's file (when there is one) and says, from
    /// 1 December, when next year's schedule is still missing: in the log, in the
    /// `pdp_calendar_next_year_missing` metric, and through [`WorkingCalendar::advice`].
    /// Looks every `every` until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        deployment_file: Option<PathBuf>,
        clock: Arc<dyn Clock>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        // Read again on the first round too: the file may have changed since it was loaded.
        let mut seen = None;
        let mut warned_for = None;
        loop {
            if let Some(path) = &deployment_file {
                let now = fingerprint(path);
                if now != seen {
                    match self.reload(path) {
                        Ok(years) => {
                            tracing::info!(file = %path.display(), ?years, "holiday file reloaded")
                        }
                        Err(err) => tracing::warn!(
                            error = %err,
                            "holiday file changed but is invalid; the calendar stays as it was"
                        ),
                    }
                    seen = now;
                }
            }
            let missing = self.missing_next_year(civil_date(clock.now()));
            crate::telemetry::metrics::CALENDAR_NEXT_YEAR_MISSING.set(i64::from(missing.is_some()));
            if let Some(year) = missing.filter(|y| warned_for != Some(*y)) {
                tracing::warn!(year, "{}", CalendarError::YearNotCovered(year));
                warned_for = Some(year);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// What `/readyz` says of the calendar on `today`, without making the process unready: a
    /// missing next year is a warning for the operators, not a reason to stop serving.
    pub fn advice(&self, today: NaiveDate) -> Option<String> {
        self.missing_next_year(today)
            .map(|year| CalendarError::YearNotCovered(year).to_string())
    }
}

impl Schedule {
    fn is_working_day(&self, day: NaiveDate) -> Result<bool, CalendarError> {
        let year = self
            .years
            .get(&day.year())
            .ok_or(CalendarError::YearNotCovered(day.year()))?;
        if year.working_days.contains(&day) {
            return Ok(true);
        }
        Ok(!is_weekend(day) && !year.days_off.contains(&day))
    }
}

/// What changes when a file is rewritten or replaced (a ConfigMap update swaps a symlink).
fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The civil date in Asia/Shanghai of an instant.
pub fn civil_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Shanghai).date_naive()
}

/// 24:00 Asia/Shanghai of `day`, that is 00:00 of the next day, as an instant.
pub fn end_of_day(day: NaiveDate) -> DateTime<Utc> {
    let next = day.succ_opt().expect("date within chrono's range");
    Shanghai
        .from_local_datetime(&next.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("Asia/Shanghai has no daylight saving since 1991")
        .with_timezone(&Utc)
}

fn is_weekend(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

fn expand(item: &str, year: i32) -> Result<Vec<NaiveDate>, CalendarError> {
    let parse = |s: &str| {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|e| CalendarError::Invalid(format!("`{s}`: {e}")))
    };
    let (first, last) = match item.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let day = parse(item)?;
            (day, day)
        }
    };
    if first > last {
        return Err(CalendarError::Invalid(format!(
            "range `{item}` runs backwards"
        )));
    }
    let days: Vec<_> = first.iter_days().take_while(|d| *d <= last).collect();
    if let Some(stray) = days.iter().find(|d| d.year() != year) {
        return Err(CalendarError::Invalid(format!(
            "{stray} is listed under year {year}"
        )));
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weekends_holidays_and_adjusted_working_days() {
        let cal = WorkingCalendar::shipped();
        assert!(
            cal.is_working_day(d("2026-03-02")).unwrap(),
            "an ordinary Monday"
        );
        assert!(
            !cal.is_working_day(d("2026-03-07")).unwrap(),
            "an ordinary Saturday"
        );
        assert!(
            !cal.is_working_day(d("2026-02-17")).unwrap(),
            "Spring Festival Tuesday"
        );
        assert!(
            cal.is_working_day(d("2026-02-14")).unwrap(),
            "adjusted working Saturday"
        );
        assert!(
            cal.is_working_day(d("2025-01-26")).unwrap(),
            "adjusted working Sunday 2025"
        );
        assert!(
            !cal.is_working_day(d("2025-10-08")).unwrap(),
            "National Day 2025 Wednesday"
        );
        assert!(cal.is_working_day(d("2026-10-10")).unwrap());
        assert!(!cal.is_working_day(d("2026-10-07")).unwrap());
    }

    #[test]
    fn start_day_is_not_counted() {
        let cal = WorkingCalendar::shipped();
        // Published Monday 2026-03-02: Tue..Mon are the five working days.
        assert_eq!(
            cal.working_days_after(d("2026-03-02"), 5).unwrap(),
            d("2026-03-09")
        );
        assert_eq!(
            cal.working_days_after(d("2026-03-02"), 0).unwrap(),
            d("2026-03-02")
        );
    }

    #[test]
    fn counting_across_national_day_uses_adjusted_saturday() {
        let cal = WorkingCalendar::shipped();
        // Published Tue 2026-09-29: Wed 30 is day 1, Oct 1-7 off, Thu 8 day 2, Fri 9 day 3,
        // Sat 10 (adjusted working day) day 4, Mon 12 day 5.
        assert_eq!(
            cal.working_days_after(d("2026-09-29"), 5).unwrap(),
            d("2026-10-12")
        );
    }

    #[test]
    fn counting_across_spring_festival() {
        let cal = WorkingCalendar::shipped();
        // Published Fri 2026-02-13: Sat 14 (adjusted) day 1, 15-23 off, Tue 24 day 2 … Fri 27
        // day 5.
        assert_eq!(
            cal.working_days_after(d("2026-02-13"), 5).unwrap(),
            d("2026-02-27")
        );
    }

    #[test]
    fn period_ends_at_shanghai_midnight() {
        let cal = WorkingCalendar::shipped();
        // 2026-03-01T20:00Z is already Monday 2026-03-02 04:00 in Shanghai.
        let start = "2026-03-01T20:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let end = cal.period_end(start, 5).unwrap();
        assert_eq!(
            end,
            "2026-03-09T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn uncovered_year_is_an_error_not_a_guess() {
        let cal = WorkingCalendar::shipped();
        assert_eq!(
            cal.is_working_day(d("2027-01-04")),
            Err(CalendarError::YearNotCovered(2027))
        );
        assert_eq!(
            cal.working_days_after(d("2026-12-30"), 5),
            Err(CalendarError::YearNotCovered(2027))
        );
    }

    const YEAR_2027: &str =
        "[[year]]\nyear = 2027\ndays_off = [\"2027-01-01\"]\nworking_days = []\n";

    #[test]
    fn a_deployment_adds_a_year_to_the_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holidays.toml");
        std::fs::write(&file, YEAR_2027).unwrap();
        let cal = WorkingCalendar::load(Some(&file)).unwrap();
        assert!(!cal.is_working_day(d("2027-01-01")).unwrap());
        assert!(cal.is_working_day(d("2027-01-04")).unwrap());
        assert!(
            !cal.is_working_day(d("2026-02-17")).unwrap(),
            "shipped years stay"
        );
        assert_eq!(cal.years(), vec![2025, 2026, 2027]);
        assert_eq!(
            cal.working_days_after(d("2026-12-30"), 5).unwrap(),
            d("2027-01-07")
        );
    }

    #[test]
    fn a_deployment_year_replaces_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holidays.toml");
        std::fs::write(
            &file,
            "[[year]]\nyear = 2026\ndays_off = [\"2026-03-02\"]\nworking_days = []\n",
        )
        .unwrap();
        let cal = WorkingCalendar::load(Some(&file)).unwrap();
        assert!(!cal.is_working_day(d("2026-03-02")).unwrap());
        assert!(cal.is_working_day(d("2026-02-17")).unwrap());
    }

    #[test]
    fn reload_takes_a_valid_file_and_keeps_the_calendar_on_an_invalid_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holidays.toml");
        std::fs::write(&file, "year = []\n").unwrap();
        let cal = WorkingCalendar::load(Some(&file)).unwrap();
        assert!(!cal.covers(2027));

        std::fs::write(&file, YEAR_2027).unwrap();
        assert_eq!(cal.reload(&file).unwrap(), vec![2025, 2026, 2027]);
        assert!(cal.covers(2027));

        std::fs::write(&file, "[[year]]\nyear = 2028\n").unwrap();
        let err = cal.reload(&file).unwrap_err();
        assert!(err.to_string().contains("holidays.toml"), "{err}");
        assert!(cal.covers(2027), "an invalid file changes nothing");
    }

    #[tokio::test]
    async fn the_watcher_picks_up_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holidays.toml");
        std::fs::write(&file, "year = []\n").unwrap();
        let cal = Arc::new(WorkingCalendar::load(Some(&file)).unwrap());
        let stop = CancellationToken::new();
        let clock = Arc::new(crate::clock::ManualClock::at(
            "2026-12-01T02:00:00Z".parse().unwrap(),
        ));
        let watcher = tokio::spawn(cal.clone().watch(
            Some(file.clone()),
            clock,
            Duration::from_millis(20),
            stop.clone(),
        ));
        std::fs::write(&file, format!("{YEAR_2027}# a longer file\n")).unwrap();
        for _ in 0..200 {
            if cal.covers(2027) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        watcher.await.unwrap();
        assert!(cal.covers(2027));
    }

    #[test]
    fn from_december_a_missing_next_year_is_said() {
        let cal = WorkingCalendar::shipped();
        assert_eq!(cal.missing_next_year(d("2026-11-30")), None);
        assert_eq!(cal.missing_next_year(d("2026-12-01")), Some(2027));
        assert_eq!(
            cal.missing_next_year(d("2025-12-01")),
            None,
            "2026 is shipped"
        );
        let advice = cal.advice(d("2026-12-01")).unwrap();
        assert!(advice.contains("2027"), "{advice}");
        assert!(advice.contains("calendar.holidays_file"), "{advice}");
    }

    #[test]
    fn invalid_files_are_refused() {
        let weekday_as_adjusted =
            "[[year]]\nyear = 2026\ndays_off = []\nworking_days = [\"2026-03-02\"]\n";
        assert!(WorkingCalendar::parse(weekday_as_adjusted).is_err());
        let wrong_year = "[[year]]\nyear = 2026\ndays_off = [\"2025-01-01\"]\nworking_days = []\n";
        assert!(WorkingCalendar::parse(wrong_year).is_err());
        let both =
            "[[year]]\nyear = 2026\ndays_off = [\"2026-02-14\"]\nworking_days = [\"2026-02-14\"]\n";
        assert!(WorkingCalendar::parse(both).is_err());
    }
}
