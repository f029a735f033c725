//! Local times of day in a journey's zone, DST-correct (LANGUAGE.md §5.3): a time that does not
//! exist that day is the same clock reading shifted by the jump; a time that happens twice is
//! the first of them.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;
use rustc_hash::FxHashMap;

/// `at_local` remembered: the same few local times (a daily entry's, a wait's, the end of quiet
/// hours) are asked for on the same few dates by every user in a zone, and the zone's lookup
/// costs some hundreds of instructions each time. `at_local` is a pure function of its
/// arguments, so an answer remembered is the answer.
#[derive(Default)]
pub struct LocalTimes {
    answers: FxHashMap<(Tz, i32, u16), Option<i64>>,
    /// The last `local_reading` asked and its answer: timers due at one instant (the end of
    /// quiet hours, a daily entry) ask it for many users at once, and a send under quiet hours
    /// asks it twice (the minute, then the date the window ends).
    last_reading: Option<(Tz, i64, Option<LocalReading>)>,
    /// The UTC date of the last reading made, by days since 1970-01-01: instants come in time
    /// order, mostly on the same day as the one before, and a date costs a third as much as
    /// the zone's lookup to make.
    utc_day: Option<(i64, NaiveDate)>,
}

/// How many answers `LocalTimes` keeps before it starts again (a few hundred KiB at most).
const REMEMBERED: usize = 1 << 14;

impl LocalTimes {
    /// `at_local(zone, date, minute)`.
    pub fn at(&mut self, zone: Tz, date: NaiveDate, minute: u16) -> Option<i64> {
        let key = (zone, date.num_days_from_ce(), minute);
        if let Some(answer) = self.answers.get(&key) {
            return *answer;
        }
        if self.answers.len() >= REMEMBERED {
            self.answers.clear();
        }
        let answer = at_local(zone, date, minute);
        self.answers.insert(key, answer);
        answer
    }

    /// `local_reading(zone, ms)`.
    fn reading(&mut self, zone: Tz, ms: i64) -> Option<LocalReading> {
        match self.last_reading {
            Some((z, t, answer)) if z == zone && t == ms => answer,
            _ => {
                let day = ms.div_euclid(MS_PER_DAY);
                let date = match self.utc_day {
                    Some((known, date)) if known == day => Some(date),
                    _ => date_of_day(day),
                };
                if let Some(date) = date {
                    self.utc_day = Some((day, date));
                }
                let answer = date.and_then(|date| local_reading_on(zone, ms, date));
                self.last_reading = Some((zone, ms, answer));
                answer
            }
        }
    }

    /// The local minute of the day at `ms` (`local_reading`).
    pub fn minute(&mut self, zone: Tz, ms: i64) -> Option<u16> {
        self.reading(zone, ms).map(|r| r.minute)
    }

    /// `next_time_of_day`, with the local times remembered.
    pub fn next_time_of_day(
        &mut self,
        zone: Tz,
        now: i64,
        minute: u16,
        accept: impl Fn(u32) -> bool,
    ) -> Option<i64> {
        let today = self.reading(zone, now)?.date()?;
        next_time_of_day_from(today, now, accept, |date| self.at(zone, date, minute))
    }
}

/// The local clock at an instant: its day and its minute of the day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalReading {
    /// Days since 1970-01-01 (a date is made only when asked: quiet hours need the minute).
    pub day: i64,
    pub minute: u16,
}

impl LocalReading {
    /// The local date.
    pub fn date(&self) -> Option<NaiveDate> {
        date_of_day(self.day)
    }
}

/// The local day and minute of an instant, from one lookup of the offset in force. (A
/// `DateTime<Tz>` would cost a conversion to a date; this runs for every send under quiet
/// hours.)
pub fn local_reading(zone: Tz, ms: i64) -> Option<LocalReading> {
    local_reading_on(zone, ms, date_of_day(ms.div_euclid(MS_PER_DAY))?)
}

const MS_PER_DAY: i64 = 86_400_000;

/// The date `day` days after 1970-01-01.
fn date_of_day(day: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(
        i32::try_from(day)
            .ok()?
            .checked_add(UNIX_EPOCH_DAYS_FROM_CE)?,
    )
}

/// `local_reading`, given the UTC date of `ms`.
fn local_reading_on(zone: Tz, ms: i64, utc_date: NaiveDate) -> Option<LocalReading> {
    let of_day = ms.rem_euclid(MS_PER_DAY);
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        (of_day / 1000) as u32,
        (of_day % 1000) as u32 * 1_000_000,
    )?;
    let utc = NaiveDateTime::new(utc_date, time);
    let offset = i64::from(zone.offset_from_utc_datetime(&utc).fix().local_minus_utc());
    let local_seconds = ms.div_euclid(1000).checked_add(offset)?;
    Some(LocalReading {
        day: local_seconds.div_euclid(86_400),
        minute: (local_seconds.rem_euclid(86_400) / 60) as u16,
    })
}

/// Days from 0001-01-01 (day 1) to 1970-01-01, as `NaiveDate::num_days_from_ce` counts them.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

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

/// The next instant strictly after `now` whose local time is `minute`, on a day `accept`s
/// (weekday, 0 = Monday).
pub fn next_time_of_day(
    zone: Tz,
    now: i64,
    minute: u16,
    accept: impl Fn(u32) -> bool,
) -> Option<i64> {
    let today = local_reading(zone, now)?.date()?;
    next_time_of_day_from(today, now, accept, |date| at_local(zone, date, minute))
}

/// `next_time_of_day` from `today`, the local date at `now`, with `local(date)` giving the
/// instant of the minute on `date`.
fn next_time_of_day_from(
    today: NaiveDate,
    now: i64,
    accept: impl Fn(u32) -> bool,
    mut local: impl FnMut(NaiveDate) -> Option<i64>,
) -> Option<i64> {
    let mut date = today.pred_opt()?;
    for _ in 0..16 {
        if accept(date.weekday().num_days_from_monday()) {
            if let Some(t) = local(date).filter(|t| *t > now) {
                return Some(t);
            }
        }
        date = date.succ_opt()?;
    }
    None
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

    #[test]
    fn remembered_local_times_are_the_local_times() {
        let mut remembered = LocalTimes::default();
        let zones = [
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Apia,
        ];
        // Twice over (the second time from memory), across both of 2026's DST changes, at
        // minutes inside and outside the skipped and repeated hours.
        let start = utc("2026-01-01T00:00:00Z");
        for _ in 0..2 {
            for zone in zones {
                for i in 0..2_000i64 {
                    let now = start + i * 15_731_000;
                    for minute in [0, 90, 150, 570, 1439] {
                        assert_eq!(
                            remembered.next_time_of_day(zone, now, minute, |_| true),
                            next_time_of_day(zone, now, minute, |_| true),
                            "{zone} {now} {minute}"
                        );
                        assert_eq!(
                            remembered.next_time_of_day(zone, now, minute, |d| d == 6),
                            next_time_of_day(zone, now, minute, |d| d == 6),
                            "{zone} {now} {minute} Sundays"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn local_times_are_remembered_within_bounds() {
        let mut remembered = LocalTimes::default();
        let berlin = chrono_tz::Europe::Berlin;
        let start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
        // More answers than are kept: the memory starts again, and stays right.
        for (date, minute) in start
            .iter_days()
            .take(REMEMBERED / 3 + 7)
            .flat_map(|date| [0, 150, 1439].map(|minute| (date, minute)))
        {
            assert_eq!(
                remembered.at(berlin, date, minute),
                at_local(berlin, date, minute)
            );
            assert!(remembered.answers.len() <= REMEMBERED);
        }
        assert!(remembered.answers.len() < REMEMBERED);
    }

    #[test]
    fn local_reading_is_the_local_clock_reading() {
        use chrono::Timelike;
        let zones = [
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Pacific::Apia,
        ];
        // Every 7 minutes and 13 seconds over two years around DST changes, and before 1970.
        let start = utc("2025-01-01T00:00:00Z");
        let mut times = LocalTimes::default();
        for zone in zones {
            for ms in (0..145_000i64).map(|i| start + i * 433_000).chain([
                -1,
                -86_400_001,
                -2_208_988_800_000,
            ]) {
                let want = zone
                    .timestamp_millis_opt(ms)
                    .single()
                    .map(|t| (Some(t.date_naive()), (t.hour() * 60 + t.minute()) as u16));
                let got = local_reading(zone, ms).map(|r| (r.date(), r.minute));
                assert_eq!(got, want, "{zone} {ms}");
                // The same, with the last UTC date remembered.
                assert_eq!(times.minute(zone, ms), want.map(|(_, m)| m), "{zone} {ms}");
            }
        }
    }
}
