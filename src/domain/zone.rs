//! `Zone`: the IANA time zone a statistics request counts its days in (`tz=`), the local calendar
//! arithmetic behind its day, week, month and hour buckets, and `LocalTime`, an instant as that
//! zone's clocks show it. The zone database is compiled into the binary (chrono-tz): no file is
//! read at run time, so every instance answers the same whatever the host has installed.
//!
//! Rules followed everywhere:
//! - A local day starts at the first instant its date shows: midnight, or the end of the gap when
//!   the clocks jump over midnight. A day is 23, 24 or 25 hours long (23.5 or 24.5 at Lord Howe).
//! - An hour bucket starts wherever the clocks show a whole hour; when they are set back, the
//!   repeated hour is a bucket of its own, with its own offset. An hour the clocks jump into the
//!   middle of starts at the jump.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Bucket, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Zone(Tz);

impl Default for Zone {
    fn default() -> Self {
        Self::UTC
    }
}

/// Every offset in use is a multiple of this, so bucket boundaries fall on it (in UTC too).
const OFFSET_STEP_MINUTES: i64 = 15;

impl Zone {
    pub const UTC: Self = Self(Tz::UTC);

    /// `tz=`: an IANA name, exactly as the database spells it (`Europe/Berlin`); default UTC.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None => Ok(Self::UTC),
            Some(name) => name.parse::<Tz>().map(Self).map_err(|_| {
                FieldError::new(
                    "tz",
                    "must be an IANA time zone name such as Europe/Berlin or UTC",
                )
            }),
        }
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub(crate) fn is_utc(self) -> bool {
        self == Self::UTC
    }

    /// `t` as the zone's clocks show it.
    pub fn local(self, t: DateTime<Utc>) -> LocalTime {
        LocalTime(t.with_timezone(&self.0).fixed_offset())
    }

    /// The local date at `t`.
    pub fn date_of(self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.0).date_naive()
    }

    fn naive(self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.0).naive_local()
    }

    /// The instants whose local time is `naive`: one, two when the clocks were set back over it,
    /// or, when they jumped over it, the instant the jump ended (the first local time after it).
    fn instants(self, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
        let found: Vec<_> = match self.0.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => vec![t],
            chrono::LocalResult::Ambiguous(a, b) => vec![a, b],
            chrono::LocalResult::None => Vec::new(),
        };
        if !found.is_empty() {
            return found.into_iter().map(|t| t.to_utc()).collect();
        }
        // In a gap: the first local minute that exists is where the jump ended (transitions
        // fall on whole minutes; gaps last at most a few hours).
        let mut later = naive;
        for _ in 0..(48 * 60) {
            later += Duration::minutes(1);
            if let Some(t) = self.0.from_local_datetime(&later).earliest() {
                return vec![t.to_utc()];
            }
        }
        Vec::new()
    }

    /// The first instant of local date `d`.
    pub fn midnight(self, d: NaiveDate) -> DateTime<Utc> {
        self.first_instant(d.and_time(NaiveTime::MIN))
    }

    /// The first instant whose local time is `naive`, or the end of the jump over it.
    fn first_instant(self, naive: NaiveDateTime) -> DateTime<Utc> {
        self.instants(naive)
            .into_iter()
            .min()
            .unwrap_or_else(|| naive.and_utc())
    }

    /// The instant `days` days before `t` on the zone's clocks (the same local time, or the
    /// first instant after it when the clocks skipped it).
    pub(crate) fn days_before(self, t: DateTime<Utc>, days: i64) -> DateTime<Utc> {
        self.first_instant(self.naive(t) - Duration::days(days))
    }

    /// How long `[from, to)` looks on the zone's clocks.
    pub(crate) fn local_span(self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        self.naive(to) - self.naive(from)
    }

    /// The first instant after `now` that starts a local day.
    pub(crate) fn next_midnight(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.midnight(self.date_of(now) + Duration::days(1))
    }

    /// The start of the bucket `t` falls in.
    pub(crate) fn bucket_start(self, t: DateTime<Utc>, bucket: Bucket) -> DateTime<Utc> {
        let local = self.naive(t);
        let date = local.date();
        match bucket {
            Bucket::Day => self.midnight(date),
            Bucket::Week => self
                .midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday()))),
            Bucket::Month => self.midnight(date.with_day(1).unwrap_or(date)),
            Bucket::Hour => {
                let hour = date.and_time(NaiveTime::MIN) + Duration::hours(i64::from(local.hour()));
                // The latest instant showing that hour at or before `t`: in a repeated hour, the
                // second one for the second pass of the clocks.
                self.instants(hour)
                    .into_iter()
                    .filter(|s| *s <= t)
                    .max()
                    .unwrap_or(t)
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub(crate) fn next_bucket(self, start: DateTime<Utc>, bucket: Bucket) -> DateTime<Utc> {
        let date = self.naive(start).date();
        let next = match bucket {
            Bucket::Day => self.midnight(date + Duration::days(1)),
            Bucket::Week => self.midnight(date + Duration::days(7)),
            Bucket::Month => {
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                self.midnight(NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(date))
            }
            Bucket::Hour => {
                // Boundaries fall on quarter hours; the next one is at most two hours away.
                let step = Duration::minutes(OFFSET_STEP_MINUTES);
                let mut c = start + step;
                while self.bucket_start(c, Bucket::Hour) != c && c < start + Duration::hours(3) {
                    c += step;
                }
                c
            }
        };
        // Never at or before `start`, whatever the zone's rules, so a series always ends.
        next.max(start + Duration::minutes(OFFSET_STEP_MINUTES))
    }

    /// The buckets covering `[from, to)`: each start, the first at or before `from`.
    pub(crate) fn bucket_starts(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Bucket,
    ) -> Vec<DateTime<Utc>> {
        let mut starts = vec![self.bucket_start(from, bucket)];
        loop {
            let last = starts[starts.len() - 1];
            let next = self.next_bucket(last, bucket);
            if next >= to {
                return starts;
            }
            starts.push(next);
        }
    }
}

/// Written as its name, in the live state of cached answers.
impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>()
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("unknown time zone {name:?}")))
    }
}

/// An instant with the offset the zone's clocks had then. Ordered and compared as an instant;
/// written as RFC 3339 with that offset (`Z` when it is zero, as UTC answers always were).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(DateTime<FixedOffset>);

impl LocalTime {
    pub fn utc(self) -> DateTime<Utc> {
        self.0.to_utc()
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let zero = self.0.offset().local_minus_utc() == 0;
        s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, zero))
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DateTime::<FixedOffset>::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_instant;

    fn at(s: &str) -> DateTime<Utc> {
        parse_instant(s).expect(s)
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(Some(name)).expect(name)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect(s)
    }

    fn hours(z: Zone, day: &str) -> Vec<String> {
        let d = date(day);
        let (from, to) = (z.midnight(d), z.midnight(d + Duration::days(1)));
        z.bucket_starts(from, to, Bucket::Hour)
            .into_iter()
            .map(|t| {
                serde_json::to_value(z.local(t))
                    .expect("json")
                    .as_str()
                    .expect("str")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn unknown_zones_are_refused_naming_tz() {
        let e = Zone::parse(Some("Mars/Olympus_Mons")).expect_err("unknown");
        assert_eq!(e.field, "tz");
        assert!(
            Zone::parse(Some("europe/berlin")).is_err(),
            "names are exact"
        );
        assert_eq!(Zone::parse(None).expect("default"), Zone::UTC);
    }

    #[test]
    fn local_days_start_at_local_midnight_and_last_23_24_or_25_hours() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            berlin.midnight(date("2026-11-30")),
            at("2026-11-29T23:00:00Z")
        );
        assert_eq!(
            berlin.midnight(date("2026-07-01")),
            at("2026-06-30T22:00:00Z")
        );
        let length = |z: Zone, d: &str| {
            let d = date(d);
            (z.midnight(d + Duration::days(1)) - z.midnight(d)).num_minutes()
        };
        assert_eq!(length(berlin, "2026-03-29"), 23 * 60);
        assert_eq!(length(berlin, "2026-10-25"), 25 * 60);
        assert_eq!(length(berlin, "2026-10-26"), 24 * 60);
        let kathmandu = zone("Asia/Kathmandu");
        assert_eq!(
            kathmandu.midnight(date("2026-11-30")),
            at("2026-11-29T18:15:00Z")
        );
        assert_eq!(
            zone("Asia/Kolkata").midnight(date("2026-11-30")),
            at("2026-11-29T18:30:00Z")
        );
        assert_eq!(
            zone("America/St_Johns").midnight(date("2026-11-30")),
            at("2026-11-30T03:30:00Z")
        );
        // Lord Howe sets its clocks back half an hour on 5 April 2026.
        let lord_howe = zone("Australia/Lord_Howe");
        assert_eq!(length(lord_howe, "2026-04-05"), 24 * 60 + 30);
        assert_eq!(length(lord_howe, "2026-10-04"), 24 * 60 - 30);
        // Chatham (+13:45 in summer) ends DST on 5 April 2026.
        assert_eq!(
            zone("Pacific/Chatham").midnight(date("2026-01-10")),
            at("2026-01-09T10:15:00Z")
        );
        // Santiago skips midnight in September: the day starts when the clocks jump (01:00).
        let santiago = zone("America/Santiago");
        assert_eq!(
            santiago.midnight(date("2026-09-06")),
            at("2026-09-06T04:00:00Z")
        );
    }

    #[test]
    fn hour_buckets_follow_the_clocks_through_dst() {
        let berlin = zone("Europe/Berlin");
        let spring = hours(berlin, "2026-03-29");
        assert_eq!(spring.len(), 23);
        assert_eq!(spring[1], "2026-03-29T01:00:00+01:00");
        assert_eq!(spring[2], "2026-03-29T03:00:00+02:00");
        let autumn = hours(berlin, "2026-10-25");
        assert_eq!(autumn.len(), 25);
        assert_eq!(autumn[2], "2026-10-25T02:00:00+02:00");
        assert_eq!(autumn[3], "2026-10-25T02:00:00+01:00");
        // Half-hour zones: buckets start at half past the UTC hour.
        let kolkata = hours(zone("Asia/Kolkata"), "2026-11-30");
        assert_eq!(kolkata.len(), 24);
        assert_eq!(kolkata[0], "2026-11-30T00:00:00+05:30");
        // Lord Howe: back from 02:00 (+11) to 01:30 (+10:30); the hour from 01:00 lasts 90 minutes.
        let lh = zone("Australia/Lord_Howe");
        let day = lh.midnight(date("2026-04-05"));
        let starts = lh.bucket_starts(day, lh.midnight(date("2026-04-06")), Bucket::Hour);
        assert_eq!(starts.len(), 24);
        assert_eq!(starts[2] - starts[1], Duration::minutes(90));
        // And forward from 02:00 to 02:30 in October: that hour starts at the jump, 30 minutes long.
        let day = lh.midnight(date("2026-10-04"));
        let starts = lh.bucket_starts(day, lh.midnight(date("2026-10-05")), Bucket::Hour);
        assert_eq!(starts.len(), 24);
        assert_eq!(starts[3] - starts[2], Duration::minutes(30));
        assert_eq!(
            serde_json::to_value(lh.local(starts[2])).expect("json"),
            "2026-10-04T02:30:00+11:00"
        );
    }

    #[test]
    fn weeks_start_on_local_mondays_and_months_on_the_first() {
        let ny = zone("America/New_York");
        let t = at("2026-11-02T03:00:00Z"); // Sunday 1 November, 22:00 in New York
        assert_eq!(
            ny.bucket_start(t, Bucket::Week),
            ny.midnight(date("2026-10-26"))
        );
        assert_eq!(
            ny.bucket_start(t, Bucket::Month),
            ny.midnight(date("2026-11-01"))
        );
        assert_eq!(
            ny.bucket_start(t, Bucket::Day),
            ny.midnight(date("2026-11-01"))
        );
        let months = ny.bucket_starts(
            at("2026-01-15T00:00:00Z"),
            at("2026-04-01T00:00:00Z"),
            Bucket::Month,
        );
        assert_eq!(
            months,
            ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"].map(|d| ny.midnight(date(d)))
                [..3]
        );
    }

    #[test]
    fn times_carry_the_offset_and_utc_keeps_its_z() {
        let t = at("2026-07-01T10:00:00.5Z");
        let json = |z: Zone| serde_json::to_value(z.local(t)).expect("json");
        assert_eq!(json(Zone::UTC), "2026-07-01T10:00:00.500Z");
        assert_eq!(json(zone("Europe/Berlin")), "2026-07-01T12:00:00.500+02:00");
        let back: LocalTime = serde_json::from_value(json(zone("Asia/Kathmandu"))).expect("parse");
        assert_eq!(back.utc(), t);
    }
}
