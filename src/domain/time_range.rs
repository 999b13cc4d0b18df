//! `TimeRange`: a half-open UTC interval `[from, to)` as the statistics endpoints take it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc};

use super::{FieldError, Zone};

/// Longest range a statistics request may ask for.
pub(crate) const MAX_RANGE_DAYS: i64 = 366;
/// Range used when a request names neither end.
pub(crate) const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// Parses RFC 3339 (`2026-11-29T10:15:00Z`) or a bare date (`2026-11-29`, UTC midnight).
pub fn parse_instant(raw: &str) -> Result<DateTime<Utc>, String> {
    parse_instant_in(raw, Zone::UTC)
}

/// Like `parse_instant`, a bare date being the first instant of that date in `zone`.
pub(crate) fn parse_instant_in(raw: &str, zone: Zone) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    parse_date(raw)
        .map(|d| zone.midnight(d))
        .ok_or_else(|| "must be an RFC 3339 timestamp or a YYYY-MM-DD date".to_owned())
}

/// A `YYYY-MM-DD` date of years 1 to 9999, as RFC 3339 allows: chrono would also read
/// `+262142-12-31`, the last date it can hold, and a day after it cannot be counted.
pub(crate) fn parse_date(raw: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|d| (1..=9999).contains(&d.year()))
}

/// A range cut at UTC midnights. `[whole_from, whole_to)` is made of whole UTC days, which the
/// statistics read from the daily rollups; `[from, whole_from)` and `[whole_to, to)` are the
/// partial days at the edges, read from `activities`. With no whole day inside the range,
/// `whole_from = whole_to = to` and the first edge is the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySplit {
    pub(crate) whole_from: DateTime<Utc>,
    pub(crate) whole_to: DateTime<Utc>,
}

impl DaySplit {
    /// The whole days as dates, `[first, end)`; empty when there are none.
    pub(crate) fn days(&self) -> (NaiveDate, NaiveDate) {
        (self.whole_from.date_naive(), self.whole_to.date_naive())
    }
}

fn start_of_day(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The UTC quarter hour `t` falls in: every offset in use is a multiple of 15 minutes, so every
/// local midnight and hour starts on one (migration 11).
pub(crate) fn start_of_quarter(t: DateTime<Utc>) -> DateTime<Utc> {
    start_of_day(t) + Duration::minutes(15 * i64::from(quarter_of_day(t)))
}

/// The number of `t`'s quarter hour within its UTC day, 0 to 95.
fn quarter_of_day(t: DateTime<Utc>) -> u32 {
    t.hour() * 4 + t.minute() / 15
}

/// `[from, to)` cut at UTC midnights, in order: one span per UTC day it touches.
pub(crate) fn cut_at_midnights(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> {
    let next_midnight = |t: DateTime<Utc>| start_of_day(t) + Duration::days(1);
    std::iter::successors(Some(from), move |&lo| Some(next_midnight(lo)))
        .take_while(move |&lo| lo < to)
        .map(move |lo| (lo, to.min(next_midnight(lo))))
}

/// `t` if `start_of` leaves it as it is, else the next such start, `step` later.
fn at_or_after(
    t: DateTime<Utc>,
    start_of: fn(DateTime<Utc>) -> DateTime<Utc>,
    step: Duration,
) -> DateTime<Utc> {
    let start = start_of(t);
    if start == t { t } else { start + step }
}

/// How a range is read (docs/rollups.md, "Quarter hours"): whole UTC days from the daily rollups,
/// the whole quarter hours of the partial days from the quarter-hour ones, and only what is left,
/// less than a quarter hour at either end, from `activities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    /// Whole days, `[first, end)`.
    pub(crate) days: (NaiveDate, NaiveDate),
    /// Spans of whole quarter hours outside the whole days, `[from, to)`.
    pub(crate) quarters: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Spans shorter than a quarter hour, read from the events.
    pub(crate) raw: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The whole quarter hours `[lo, hi)` of one UTC day that a range covers outside its whole
/// days (quarter q starts 15·q minutes after the day's UTC midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPart {
    pub(crate) day: NaiveDate,
    pub(crate) lo: u8,
    pub(crate) hi: u8,
}

impl DayPart {
    fn at(&self, quarter: u8) -> DateTime<Utc> {
        self.day.and_time(NaiveTime::MIN).and_utc() + Duration::minutes(15 * i64::from(quarter))
    }

    pub(crate) fn from(&self) -> DateTime<Utc> {
        self.at(self.lo)
    }

    pub(crate) fn to(&self) -> DateTime<Utc> {
        self.at(self.hi)
    }

    /// As a quarter mask of the per-user day rollups (bit q, counted from the left, is quarter q).
    pub(crate) fn mask(&self) -> String {
        let (lo, hi) = (usize::from(self.lo), usize::from(self.hi));
        format!(
            "{}{}{}",
            "0".repeat(lo),
            "1".repeat(hi - lo),
            "0".repeat(96 - hi)
        )
    }

    /// Whether the part runs from its day's start to a local midnight of `zone`, or from one to
    /// its day's end: the parts the local days of a zone are made of, which may be stored
    /// (migration 12). Any other cut (a range from 22:07) is not, so what is stored is bounded by
    /// the offsets zones use, not by the ranges clients ask for.
    pub(crate) fn is_local_day_edge(&self, zone: Zone) -> bool {
        let is_midnight = |t: DateTime<Utc>| zone.midnight(zone.date_of(t)) == t;
        (self.lo == 0 && self.hi < 96 && is_midnight(self.to()))
            || (self.hi == 96 && self.lo > 0 && is_midnight(self.from()))
    }
}

impl Pieces {
    fn add_edge(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) {
        if from >= to {
            return;
        }
        let (first, end) = (
            at_or_after(from, start_of_quarter, Duration::minutes(15)),
            start_of_quarter(to),
        );
        if first >= end {
            self.raw.push((from, to));
            return;
        }
        self.quarters.push((first, end));
        if from < first {
            self.raw.push((from, first));
        }
        if end < to {
            self.raw.push((end, to));
        }
    }

    /// The quarters of `quarters` cut at UTC midnights: at most one part per day, in date order.
    pub(crate) fn day_parts(&self) -> Vec<DayPart> {
        self.quarters
            .iter()
            .flat_map(|&(from, to)| cut_at_midnights(from, to))
            .map(|(lo, hi)| {
                let first = quarter_of_day(lo);
                let quarters = ((hi - lo).num_minutes() / 15) as u32;
                DayPart {
                    day: lo.date_naive(),
                    lo: first as u8,
                    hi: (first + quarters) as u8,
                }
            })
            .collect()
    }

    /// Starts and ends of `spans` as two arrays, the way the queries take them.
    pub(crate) fn unzip(
        spans: &[(DateTime<Utc>, DateTime<Utc>)],
    ) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
        spans.iter().copied().unzip()
    }
}

impl TimeRange {
    /// Builds a range from optional `from`/`to` parameters with the contract's defaults:
    /// `to` = the next local midnight, `from` = the local midnight 30 days before it. Bare dates
    /// are local midnights; the 366-day limit counts local days (a year across a DST change is
    /// a year, not a year and an hour).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
        zone: Zone,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut parse = |name: &str, raw: Option<&str>| {
            raw.and_then(|r| {
                parse_instant_in(r, zone)
                    .map_err(|m| errors.push(FieldError::new(name, m)))
                    .ok()
            })
        };
        let from = parse("from", from);
        let to = parse("to", to);
        if !errors.is_empty() {
            return Err(errors);
        }
        let to = to.unwrap_or_else(|| zone.next_midnight(now));
        let from = from.unwrap_or_else(|| zone.days_before(to, DEFAULT_RANGE_DAYS));
        Self::checked(from, to, zone.local_span(from, to))
            .map_err(|m| vec![FieldError::new("from", m)])
    }

    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, String> {
        Self::checked(from, to, to - from)
    }

    /// `length` is the range's length as the clocks of its zone show it.
    fn checked(from: DateTime<Utc>, to: DateTime<Utc>, length: Duration) -> Result<Self, String> {
        if from >= to {
            return Err("must be earlier than `to`".into());
        }
        if length > Duration::days(MAX_RANGE_DAYS) {
            return Err(format!("the range may span at most {MAX_RANGE_DAYS} days"));
        }
        Ok(Self { from, to })
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// The range cut at UTC midnights: the whole days inside it and the partial days at its ends.
    pub(crate) fn split_days(&self) -> DaySplit {
        let first = at_or_after(self.from, start_of_day, Duration::days(1));
        let end = start_of_day(self.to);
        if first >= end {
            // No whole day inside: everything is edge, read from the activities themselves.
            return DaySplit {
                whole_from: self.to,
                whole_to: self.to,
            };
        }
        DaySplit {
            whole_from: first,
            whole_to: end,
        }
    }

    /// The range cut for the rollups: whole days, whole quarter hours around them, the rest.
    pub(crate) fn pieces(&self) -> Pieces {
        let split = self.split_days();
        let mut pieces = Pieces {
            days: split.days(),
            quarters: Vec::new(),
            raw: Vec::new(),
        };
        pieces.add_edge(self.from, split.whole_from);
        pieces.add_edge(split.whole_to, self.to);
        pieces
    }

    /// Every UTC date that overlaps the range.
    pub(crate) fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let first = self.from.date_naive();
        let last = (self.to - Duration::microseconds(1)).date_naive();
        first.iter_days().take_while(move |d| *d <= last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_instant(s).expect(s)
    }

    #[test]
    fn defaults_to_thirty_days_ending_at_the_next_midnight() {
        let r = TimeRange::parse(None, None, at("2026-11-29T10:15:00Z"), Zone::UTC).expect("valid");
        assert_eq!(r.to(), at("2026-11-30"));
        assert_eq!(r.from(), at("2026-10-31"));
    }

    #[test]
    fn rejects_empty_reversed_and_overlong_ranges() {
        let now = at("2026-11-29T00:00:00Z");
        for (from, to) in [
            ("2026-01-02", "2026-01-01"),
            ("2026-01-01", "2026-01-01"),
            ("2025-01-01", "2026-01-03"),
        ] {
            assert!(
                TimeRange::parse(Some(from), Some(to), now, Zone::UTC).is_err(),
                "{from}..{to}"
            );
        }
        assert!(TimeRange::parse(Some("2025-01-01"), Some("2026-01-02"), now, Zone::UTC).is_ok());
        assert!(TimeRange::parse(Some("yesterday"), None, now, Zone::UTC).is_err());
    }

    #[test]
    fn splits_whole_days_from_partial_edges() {
        let cases = [
            // (from, to, whole_from, whole_to)
            ("2026-11-01", "2026-11-03", "2026-11-01", "2026-11-03"),
            (
                "2026-11-01T12:00:00Z",
                "2026-11-03T06:00:00Z",
                "2026-11-02",
                "2026-11-03",
            ),
            // Less than a whole day, or a day-long range across midnight: all edge.
            (
                "2026-11-01T12:00:00Z",
                "2026-11-01T13:00:00Z",
                "2026-11-01T13:00:00Z",
                "2026-11-01T13:00:00Z",
            ),
            (
                "2026-11-01T12:00:00Z",
                "2026-11-02T12:00:00Z",
                "2026-11-02T12:00:00Z",
                "2026-11-02T12:00:00Z",
            ),
        ];
        for (from, to, whole_from, whole_to) in cases {
            let split = TimeRange::new(at(from), at(to))
                .expect("valid")
                .split_days();
            assert_eq!(
                (split.whole_from, split.whole_to),
                (at(whole_from), at(whole_to)),
                "{from}..{to}"
            );
        }
    }

    #[test]
    fn cuts_partial_days_into_whole_quarter_hours_and_short_raw_spans() {
        let r =
            TimeRange::new(at("2026-11-01T22:40:00Z"), at("2026-11-04T02:10:00Z")).expect("valid");
        let p = r.pieces();
        assert_eq!(
            p.days,
            (at("2026-11-02").date_naive(), at("2026-11-04").date_naive())
        );
        assert_eq!(
            p.quarters,
            [
                (at("2026-11-01T22:45:00Z"), at("2026-11-02")),
                (at("2026-11-04"), at("2026-11-04T02:00:00Z"))
            ]
        );
        assert_eq!(
            p.raw,
            [
                (at("2026-11-01T22:40:00Z"), at("2026-11-01T22:45:00Z")),
                (at("2026-11-04T02:00:00Z"), at("2026-11-04T02:10:00Z"))
            ]
        );
        let parts = p.day_parts();
        assert_eq!(
            parts,
            [
                DayPart {
                    day: at("2026-11-01").date_naive(),
                    lo: 91,
                    hi: 96
                },
                DayPart {
                    day: at("2026-11-04").date_naive(),
                    lo: 0,
                    hi: 8
                }
            ]
        );
        assert_eq!(parts[0].mask(), format!("{}11111", "0".repeat(91)));
        assert_eq!(
            parts[1].mask(),
            format!("{}{}", "1".repeat(8), "0".repeat(88))
        );
        assert_eq!(
            (parts[0].from(), parts[0].to()),
            (at("2026-11-01T22:45:00Z"), at("2026-11-02"))
        );

        // Under a day across midnight: no whole day, whole quarters on both sides of it.
        let r =
            TimeRange::new(at("2026-11-01T21:15:00Z"), at("2026-11-02T01:00:00Z")).expect("valid");
        let p = r.pieces();
        assert_eq!(p.days.0, p.days.1);
        assert_eq!(
            p.quarters,
            [(at("2026-11-01T21:15:00Z"), at("2026-11-02T01:00:00Z"))]
        );
        assert!(p.raw.is_empty());
        let parts = p.day_parts();
        assert_eq!(
            parts.iter().map(|p| (p.lo, p.hi)).collect::<Vec<_>>(),
            [(85, 96), (0, 4)]
        );

        // Inside one quarter: all raw.
        let r =
            TimeRange::new(at("2026-11-01T21:16:00Z"), at("2026-11-01T21:29:00Z")).expect("valid");
        assert_eq!(r.pieces().raw, [(r.from(), r.to())]);
        assert!(r.pieces().quarters.is_empty());
    }

    #[test]
    fn a_part_is_a_local_day_edge_only_where_the_zone_has_midnight() {
        let zone = |name: &str| Zone::parse(Some(name)).expect("zone");
        let part = |day: &str, lo: u8, hi: u8| DayPart {
            day: at(day).date_naive(),
            lo,
            hi,
        };
        // Kathmandu's midnight is 18:15 UTC (quarter 73).
        let kathmandu = zone("Asia/Kathmandu");
        assert!(part("2026-11-01", 73, 96).is_local_day_edge(kathmandu));
        assert!(part("2026-11-01", 0, 73).is_local_day_edge(kathmandu));
        assert!(!part("2026-11-01", 74, 96).is_local_day_edge(kathmandu));
        assert!(!part("2026-11-01", 10, 73).is_local_day_edge(kathmandu));
        assert!(!part("2026-11-01", 0, 96).is_local_day_edge(kathmandu));
        // Berlin's midnight moves with its clocks: 23:00 UTC in winter, 22:00 in summer.
        let berlin = zone("Europe/Berlin");
        assert!(part("2026-01-10", 92, 96).is_local_day_edge(berlin));
        assert!(part("2026-07-10", 88, 96).is_local_day_edge(berlin));
        assert!(!part("2026-07-10", 92, 96).is_local_day_edge(berlin));
        // UTC days have no parts that are edges of a local day.
        assert!(!part("2026-11-01", 0, 40).is_local_day_edge(Zone::UTC));
    }

    #[test]
    fn cuts_a_span_at_each_utc_midnight() {
        let cut: Vec<_> =
            cut_at_midnights(at("2026-11-01T22:40:00Z"), at("2026-11-03T02:00:00Z")).collect();
        assert_eq!(
            cut,
            [
                (at("2026-11-01T22:40:00Z"), at("2026-11-02")),
                (at("2026-11-02"), at("2026-11-03")),
                (at("2026-11-03"), at("2026-11-03T02:00:00Z")),
            ]
        );
        assert_eq!(
            cut_at_midnights(at("2026-11-02"), at("2026-11-02")).count(),
            0
        );
    }

    #[test]
    fn lists_each_overlapping_day_once() {
        let r = TimeRange::new(at("2026-11-01T12:00:00Z"), at("2026-11-03")).expect("valid");
        let days: Vec<_> = r.days().map(|d| d.to_string()).collect();
        assert_eq!(days, ["2026-11-01", "2026-11-02"]);
    }
}
