//! The 5-field cron expression: parsing and matching of local (wall-clock) date-times.
//!
//! Time zones and DST are handled in [`super::zone`]; this file only knows calendars.

use std::fmt;
use std::str::FromStr;

use chrono::Datelike;
use chrono::NaiveDate;
use chrono::NaiveDateTime;
use chrono::Timelike;

/// Why a cron expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression is empty or only whitespace.
    #[error("the expression is empty")]
    Empty,
    /// Not exactly five fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    /// `@something` that is not one of the supported macros.
    #[error(
        "unknown macro {0:?} (supported: @yearly @annually @monthly @weekly @daily @midnight @hourly)"
    )]
    UnknownMacro(String),
    /// An empty element in a list, e.g. `1,,2`.
    #[error("{field}: empty list element")]
    EmptyElement { field: Field },
    /// A token that is neither a number, a name, `*`, a range nor a step.
    #[error("{field}: cannot read {token:?}")]
    Syntax { field: Field, token: String },
    /// A value outside the field's range.
    #[error("{field}: {value} is out of range {min}-{max}")]
    OutOfRange {
        field: Field,
        value: u64,
        min: u32,
        max: u32,
    },
    /// A range whose start is after its end (only `X-SUN`/`X-0` may wrap, meaning `X-7`).
    #[error("{field}: range {start}-{end} is reversed")]
    ReversedRange { field: Field, start: u32, end: u32 },
    /// A step of zero or larger than the field's span.
    #[error("{field}: step {step} must be between 1 and {max}")]
    BadStep { field: Field, step: u64, max: u32 },
    /// Day-of-month values that no selected month has (e.g. `30 2`), with day-of-week `*`.
    #[error("never matches: no selected month has the selected day(s) of month")]
    NeverMatches,
}

/// One of the five fields, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    const ALL: [Self; 5] = [
        Self::Minute,
        Self::Hour,
        Self::DayOfMonth,
        Self::Month,
        Self::DayOfWeek,
    ];

    /// Inclusive bounds as written (day-of-week accepts 7 for Sunday).
    fn bounds(self) -> (u32, u32) {
        match self {
            Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::DayOfMonth => (1, 31),
            Self::Month => (1, 12),
            Self::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        match self {
            Self::Month => &MONTHS,
            Self::DayOfWeek => &DAYS,
            Self::Minute | Self::Hour | Self::DayOfMonth => &[],
        }
    }

    /// First value the names map to (`jan` = 1, `sun` = 0).
    fn name_base(self) -> u32 {
        match self {
            Self::Month => 1,
            Self::Minute | Self::Hour | Self::DayOfMonth | Self::DayOfWeek => 0,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::DayOfMonth => "day-of-month",
            Self::Month => "month",
            Self::DayOfWeek => "day-of-week",
        })
    }
}

/// A parsed 5-field cron expression. Each field is a bit set of the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    source: String,
    /// Bits 0..=59.
    minutes: u64,
    /// Bits 0..=23.
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0 (7 is folded into 0).
    days_of_week: u8,
    /// The field was written as something other than a bare `*`.
    dom_restricted: bool,
    dow_restricted: bool,
}

const ALL_HOURS: u32 = (1 << 24) - 1;

impl CronExpr {
    /// Parses five whitespace-separated fields, or one of the `@` macros.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let expanded = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownMacro(trimmed.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_ascii_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let mut sets = [0u64; 5];
        for ((set, field), text) in sets.iter_mut().zip(Field::ALL).zip(&fields) {
            *set = parse_field(field, text)?;
        }
        let [minutes, hours, dom, months, dow] = sets;
        // Day-of-week 7 is Sunday.
        let dow = (dow | (dow >> 7)) & 0x7f;
        let parsed = Self {
            source: trimmed.to_owned(),
            minutes,
            hours: u32::try_from(hours).unwrap_or(ALL_HOURS),
            days_of_month: u32::try_from(dom).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            days_of_week: u8::try_from(dow).unwrap_or(0x7f),
            dom_restricted: fields[2] != "*",
            dow_restricted: fields[4] != "*",
        };
        if !parsed.can_match() {
            return Err(CronError::NeverMatches);
        }
        Ok(parsed)
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the hour field allows every hour (`*`, `0-23`, `*/1`, ...). Such expressions
    /// follow elapsed time across DST changes; the others follow the wall clock (see the
    /// module docs of [`crate::cron`]).
    pub fn every_hour(&self) -> bool {
        self.hours == ALL_HOURS
    }

    /// Whether a local (wall-clock) date-time matches; seconds are ignored.
    pub fn matches(&self, local: NaiveDateTime) -> bool {
        self.month_ok(local.month())
            && self.day_matches(local.date())
            && bit32(self.hours, local.hour())
            && bit64(self.minutes, local.minute())
    }

    /// The first matching local minute at or after `from` (rounded up to a whole minute).
    /// `None` only past chrono's calendar range.
    pub fn next_local_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = ceil_minute(from)?;
        let mut date = from.date();
        let mut hour = from.hour();
        let mut minute = from.minute();
        // Every step below moves to a later date, hour or minute; a year needs at most a few
        // dozen steps, and the longest gap between matches is 8 years (29 February).
        for _ in 0..4096 {
            if !self.month_ok(date.month()) {
                date = self.next_month_start(date)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = match self.next_day_in_month(date) {
                    Some(day) => day,
                    None => first_of_next_month(date)?,
                };
                (hour, minute) = (0, 0);
                continue;
            }
            let Some(next_hour) = next_bit(u64::from(self.hours), hour, 23) else {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
                continue;
            };
            if next_hour != hour {
                (hour, minute) = (next_hour, 0);
            }
            let Some(next_minute) = next_bit(self.minutes, minute, 59) else {
                if hour == 23 {
                    date = date.succ_opt()?;
                    (hour, minute) = (0, 0);
                } else {
                    (hour, minute) = (hour + 1, 0);
                }
                continue;
            };
            return date.and_hms_opt(hour, next_minute, 0);
        }
        None
    }

    fn month_ok(&self, month: u32) -> bool {
        self.months & (1 << month) != 0
    }

    /// The Vixie/POSIX rule: if both day fields are restricted (not a bare `*`), a day matches
    /// when either matches; otherwise both must (the unrestricted one matches everything).
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = bit32(self.days_of_month, date.day());
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The next matching day after `date` in the same month, if any.
    fn next_day_in_month(&self, date: NaiveDate) -> Option<NaiveDate> {
        let last = days_in_month(date.year(), date.month());
        let day = date.day();
        let by_dom = || next_bit(u64::from(self.days_of_month), day + 1, last);
        let by_dow = || {
            let weekday = date.weekday().num_days_from_sunday();
            (1..=7)
                .map(|k| day + k)
                .find(|&d| d <= last && self.days_of_week & (1 << ((weekday + d - day) % 7)) != 0)
        };
        let next = match (self.dom_restricted, self.dow_restricted) {
            (true, true) => match (by_dom(), by_dow()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            (true, false) => by_dom(),
            (false, true) => by_dow(),
            (false, false) => (day < last).then_some(day + 1),
        };
        next.and_then(|d| date.with_day(d))
    }

    /// The first day of the next allowed month after `date`'s month.
    fn next_month_start(&self, date: NaiveDate) -> Option<NaiveDate> {
        let (year, month) = (date.year(), date.month());
        match next_bit(u64::from(self.months), month + 1, 12) {
            Some(m) => NaiveDate::from_ymd_opt(year, m, 1),
            None => {
                let first = next_bit(u64::from(self.months), 1, 12)?;
                NaiveDate::from_ymd_opt(year.checked_add(1)?, first, 1)
            }
        }
    }

    /// False when the day fields can never match in any selected month (checked at parse).
    fn can_match(&self) -> bool {
        if self.dow_restricted && self.dom_restricted {
            return true;
        }
        if self.dow_restricted || !self.dom_restricted {
            return self.days_of_week != 0;
        }
        (1..=12).filter(|&m| self.month_ok(m)).any(|m| {
            // February counts its leap day.
            let longest = if m == 2 { 29 } else { days_in_month(2001, m) };
            next_bit(u64::from(self.days_of_month), 1, longest).is_some()
        })
    }
}

impl FromStr for CronExpr {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_field(field: Field, text: &str) -> Result<u64, CronError> {
    let (min, _) = field.bounds();
    // The implicit end of `*` and `a/s`: Saturday for day-of-week (7 is only an alias).
    let max = match field {
        Field::DayOfWeek => 6,
        _ => field.bounds().1,
    };
    let mut set = 0u64;
    for element in text.split(',') {
        if element.is_empty() {
            return Err(CronError::EmptyElement { field });
        }
        let (base, step) = match element.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(field, element, step)?)),
            None => (element, None),
        };
        let (start, end) = if base == "*" {
            (min, max)
        } else if let Some((a, b)) = base.split_once('-') {
            let start = parse_value(field, a)?;
            let mut end = parse_value(field, b)?;
            if field == Field::DayOfWeek && end == 0 && start > 0 {
                end = 7; // `FRI-SUN` is `5-7`
            }
            if start > end {
                return Err(CronError::ReversedRange { field, start, end });
            }
            (start, end)
        } else {
            let value = parse_value(field, base)?;
            // `a/n` means `a-max/n`; a bare value is just itself.
            (value, if step.is_some() { max } else { value })
        };
        let step = step.unwrap_or(1);
        let mut value = start;
        while value <= end {
            set |= 1 << value;
            value += step;
        }
    }
    Ok(set)
}

fn parse_step(field: Field, element: &str, step: &str) -> Result<u32, CronError> {
    let (min, max) = field.bounds();
    let span = max - min + 1;
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CronError::Syntax {
            field,
            token: element.to_owned(),
        });
    }
    match step.parse::<u64>() {
        Ok(n) if (1..=u64::from(span)).contains(&n) => Ok(u32::try_from(n).unwrap_or(span)),
        Ok(n) => Err(CronError::BadStep {
            field,
            step: n,
            max: span,
        }),
        Err(_) => Err(CronError::BadStep {
            field,
            step: u64::MAX,
            max: span,
        }),
    }
}

fn parse_value(field: Field, token: &str) -> Result<u32, CronError> {
    let (min, max) = field.bounds();
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        let value = token.parse::<u64>().unwrap_or(u64::MAX);
        return match u32::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(CronError::OutOfRange {
                field,
                value,
                min,
                max,
            }),
        };
    }
    let lower = token.to_ascii_lowercase();
    field
        .names()
        .iter()
        .position(|name| *name == lower)
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + field.name_base())
        .ok_or_else(|| CronError::Syntax {
            field,
            token: token.to_owned(),
        })
}

/// The smallest set bit `>= from` and `<= last`.
fn next_bit(set: u64, from: u32, last: u32) -> Option<u32> {
    if from > last || from >= 64 {
        return None;
    }
    let found = (set >> from).trailing_zeros();
    let value = from.checked_add(found)?;
    (found < 64 && value <= last).then_some(value)
}

fn bit64(set: u64, value: u32) -> bool {
    value < 64 && set & (1 << value) != 0
}

fn bit32(set: u32, value: u32) -> bool {
    value < 32 && set & (1 << value) != 0
}

pub(super) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if NaiveDate::from_ymd_opt(year, 2, 29).is_some() => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// Rounds up to the next whole minute (unchanged when already whole).
pub(super) fn ceil_minute(t: NaiveDateTime) -> Option<NaiveDateTime> {
    let floor = t.with_second(0)?.with_nanosecond(0)?;
    if floor == t {
        Some(t)
    } else {
        floor.checked_add_signed(chrono::TimeDelta::minutes(1))
    }
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
