//! Working days of mainland China (工作日), in Asia/Shanghai.
//!
//! Monday to Friday are working days, minus the statutory days off, plus the adjusted working days
//! (调休上班日) that fall on weekends. The schedule is data (`data/holidays-cn.toml`), published
//! each November for the next year; a date in a year the data does not cover is an error rather
//! than a guess, since a wrong deadline is worse than none.
//!
//! Periods are counted as the Civil Code counts them (民法典 第二百零一条, 第二百零三条): the day
//! a period starts is not counted, and the period ends at 24:00 of its last day.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Shanghai;
use serde::Deserialize;

const SHIPPED: &str = include_str!("../data/holidays-cn.toml");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("the working-day calendar has no schedule for {0}; add that year to the holiday file")]
    YearNotCovered(i32),
    #[error("holiday file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct WorkingCalendar {
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

impl WorkingCalendar {
    /// The schedule shipped with pdp.
    pub fn shipped() -> Self {
        Self::parse(SHIPPED).expect("the shipped holiday file is valid")
    }

    /// The shipped schedule, or the file that configuration names instead.
    pub fn load(replacement: Option<&Path>) -> Result<Self, CalendarError> {
        match replacement {
            None => Ok(Self::shipped()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CalendarError::Invalid(format!("{}: {e}", path.display())))?;
                Self::parse(&text)
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, CalendarError> {
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
            if years.insert(entry.year, year).is_some() {
                return Err(CalendarError::Invalid(format!(
                    "year {} listed twice",
                    entry.year
                )));
            }
        }
        Ok(Self { years })
    }

    /// The years this calendar covers.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    pub fn is_working_day(&self, day: NaiveDate) -> Result<bool, CalendarError> {
        let year = self
            .years
            .get(&day.year())
            .ok_or(CalendarError::YearNotCovered(day.year()))?;
        if year.working_days.contains(&day) {
            return Ok(true);
        }
        Ok(!is_weekend(day) && !year.days_off.contains(&day))
    }

    /// The `n`-th working day after `day`; `day` itself is never counted (第二百零一条).
    pub fn working_days_after(&self, day: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        let mut current = day;
        let mut counted = 0;
        while counted < n {
            current = current
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::YearNotCovered(current.year()))?;
            if self.is_working_day(current)? {
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

    #[test]
    fn a_new_year_is_data() {
        let text = format!(
            "{SHIPPED}\n[[year]]\nyear = 2027\ndays_off = [\"2027-01-01\"]\nworking_days = []\n"
        );
        let cal = WorkingCalendar::parse(&text).unwrap();
        assert!(!cal.is_working_day(d("2027-01-01")).unwrap());
        assert!(cal.is_working_day(d("2027-01-04")).unwrap());
        assert_eq!(cal.years().collect::<Vec<_>>(), vec![2025, 2026, 2027]);
    }

    #[test]
    fn invalid_files_are_refused() {
        let weekday_as_adjusted =
            "[[year]]\nyear = 2026\ndays_off = []\nworking_days = [\"2026-03-02\"]\n";
        assert!(WorkingCalendar::parse(weekday_as_adjusted).is_err());
        let wrong_year = "[[year]]\nyear = 2026\ndays_off = [\"2025-01-01\"]\nworking_days = []\n";
        assert!(WorkingCalendar::parse(wrong_year).is_err());
    }
}
