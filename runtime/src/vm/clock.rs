//! Local times of day in a journey's zone, DST-correct (LANGUAGE.md §5.3): a time that does not
//! exist that day is the same clock reading shifted by the jump; a time that happens twice is
//! the first of them.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;

/// The instant of `minute` (of the day) on `date` in `zone`.
pub fn at_local(zone: Tz, date: NaiveDate, minute: u16) -> Option<i64> {
    let time = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)?;
    let local = NaiveDateTime::new(date, time);
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Some(t.timestamp_millis()),
        chrono::LocalResult::Ambiguous(first, _) => Some(first.timestamp_millis()),
        chrono::LocalResult::None => {
            // Skipped by a jump forward: read the clock with the offset in force before it.
            let before = zone
                .offset_from_utc_datetime(&local.checked_sub_signed(Duration::hours(24))?)
                .fix();
            let shifted =
                local.checked_sub_signed(Duration::seconds(i64::from(before.local_minus_utc())))?;
            Some(shifted.and_utc().timestamp_millis())
        }
    }
}

/// The local date of an instant.
pub fn local_date(zone: Tz, ms: i64) -> Option<NaiveDate> {
    zone.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.date_naive())
}

/// The next instant strictly after `now` whose local time is `minute`, on a day `accept`s
/// (weekday, 0 = Monday).
pub fn next_time_of_day(
    zone: Tz,
    now: i64,
    minute: u16,
    accept: impl Fn(u32) -> bool,
) -> Option<i64> {
    let mut date = local_date(zone, now)?.pred_opt()?;
    for _ in 0..16 {
        if accept(date.weekday().num_days_from_monday()) {
            if let Some(t) = at_local(zone, date, minute).filter(|t| *t > now) {
                return Some(t);
            }
        }
        date = date.succ_opt()?;
    }
    None
}

/// The local minute of the day of an instant.
pub fn local_minute(zone: Tz, ms: i64) -> Option<u16> {
    use chrono::Timelike;
    zone.timestamp_millis_opt(ms)
        .single()
        .map(|t| (t.hour() * 60 + t.minute()) as u16)
}

/// Whether `minute` lies in the half-open window `[start, end)`, which may wrap midnight.
pub fn in_window(minute: u16, start: u16, end: u16) -> bool {
    if start <= end {
        start <= minute && minute < end
    } else {
        minute >= start || minute < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    #[test]
    fn skipped_and_repeated_local_times() {
        let berlin: Tz = chrono_tz::Europe::Berlin;
        // 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 means 03:30 CEST = 01:30 UTC.
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap_or_default();
        assert_eq!(
            at_local(berlin, spring, 150),
            Some(utc("2026-03-29T01:30:00Z"))
        );
        // 2026-10-25: 02:30 happens twice; the first is 02:30 CEST = 00:30 UTC.
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap_or_default();
        assert_eq!(
            at_local(berlin, autumn, 150),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // Strictly after now: at 09:00 local exactly, the next 09:00 is tomorrow.
        let nine = utc("2026-01-05T08:00:00Z");
        assert_eq!(
            next_time_of_day(berlin, nine, 540, |_| true),
            Some(utc("2026-01-06T08:00:00Z"))
        );
        // Only Mondays (2026-01-05 is a Monday).
        assert_eq!(
            next_time_of_day(berlin, nine, 540, |d| d == 0),
            Some(utc("2026-01-12T08:00:00Z"))
        );
        assert!(in_window(23 * 60, 21 * 60, 9 * 60) && !in_window(12 * 60, 21 * 60, 9 * 60));
    }
}
