//! What a statistics request asks for, with defaults resolved, so that two requests that mean
//! the same thing (parameters in another order, a default written out) are equal values and
//! share one cache entry.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use uuid::Uuid;

use super::FieldError;
use super::pagination::parse_bounded;
use super::time_range::parse_date;
use super::{Action, TimeRange, Zone};

/// The common part of every statistics request: a range, an optional action, and the zone whose
/// days, buckets and clocks the answer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub range: TimeRange,
    pub action: Option<Action>,
    pub zone: Zone,
}

/// The raw query string of a statistics request; each endpoint reads the fields it uses.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct StatsParams {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) bucket: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) date: Option<String>,
    pub(crate) tz: Option<String>,
}

impl StatsQuery {
    pub(crate) fn parse(p: &StatsParams, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let (zone, action) = zone_and_action(p, &mut errors);
        let range = TimeRange::parse(p.from.as_deref(), p.to.as_deref(), now, zone)
            .map_err(|e| errors.extend(e))
            .ok();
        match (range, action) {
            (Some(range), Some(action)) if errors.is_empty() => Ok(Self {
                range,
                action,
                zone,
            }),
            _ => Err(errors),
        }
    }

    /// The canonical text of this query, used in cache keys.
    pub(crate) fn canonical(&self) -> String {
        format!(
            "from={}&to={}&action={}{}",
            self.range.from().timestamp_micros(),
            self.range.to().timestamp_micros(),
            self.action.as_ref().map_or("", |a| a.as_str()),
            zone_suffix(self.zone)
        )
    }
}

/// `tz` and `action`, which every statistic takes; what is wrong with them goes to `errors` (the
/// zone falls back to UTC so that the other parameters are still checked against something).
fn zone_and_action(
    p: &StatsParams,
    errors: &mut Vec<FieldError>,
) -> (Zone, Option<Option<Action>>) {
    let zone = Zone::parse(p.tz.as_deref())
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    let action = p
        .action
        .as_deref()
        .map(Action::parse)
        .transpose()
        .map_err(|m| errors.push(FieldError::new("action", m)))
        .ok();
    (zone, action)
}

/// `&tz=<name>` for a zone other than UTC: UTC entries keep the keys they always had.
pub(crate) fn zone_suffix(zone: Zone) -> String {
    if zone.is_utc() {
        String::new()
    } else {
        format!("&tz={}", zone.name())
    }
}

/// Width of one time-series point; calendar-aligned in UTC (weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

impl Bucket {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None | Some("day") => Ok(Self::Day),
            Some("hour") => Ok(Self::Hour),
            Some("week") => Ok(Self::Week),
            Some("month") => Ok(Self::Month),
            Some(_) => Err(FieldError::new(
                "bucket",
                "must be one of hour, day, week, month",
            )),
        }
    }

    /// The name the API and cache keys use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// `limit` of top-users: 1 to 100, default 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopUsersLimit(pub i64);

impl TopUsersLimit {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        raw.map_or(Ok(10), |l| parse_bounded(l, 1, 100))
            .map(Self)
            .map_err(|m| FieldError::new("limit", m))
    }
}

/// The day active-users is asked about, in the zone whose midnights bound its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveUsersDay {
    pub date: NaiveDate,
    pub zone: Zone,
}

impl ActiveUsersDay {
    /// `date` (default: today in `zone`); `zone` already parsed from `tz`.
    pub(crate) fn parse(
        raw: Option<&str>,
        zone: Zone,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldError> {
        let date = match raw {
            None => zone.date_of(now),
            Some(d) => {
                parse_date(d).ok_or_else(|| FieldError::new("date", "must be a YYYY-MM-DD date"))?
            }
        };
        Ok(Self { date, zone })
    }

    /// The `date`, `tz` and `action` of an active-users request, every error reported at once.
    pub(crate) fn parse_request(
        p: &StatsParams,
        now: DateTime<Utc>,
    ) -> Result<(Self, Option<Action>), Vec<FieldError>> {
        let mut errors = Vec::new();
        let (zone, action) = zone_and_action(p, &mut errors);
        let day = Self::parse(p.date.as_deref(), zone, now)
            .map_err(|e| errors.push(e))
            .ok();
        match (day, action) {
            (Some(day), Some(action)) if errors.is_empty() => Ok((day, action)),
            _ => Err(errors),
        }
    }

    /// The `days` local days ending with `date`: from the midnight `days - 1` days before it to
    /// the one after it.
    pub(crate) fn window(self, days: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.zone.midnight(self.date - Duration::days(days - 1)),
            self.zone.midnight(self.date + Duration::days(1)),
        )
    }

    /// The 30-day window, the widest one counted, as a range for cache invalidation.
    pub(crate) fn month_range(self) -> TimeRange {
        let (from, to) = self.window(30);
        TimeRange::new(from, to).unwrap_or_else(|_| unreachable!("a 30-day window is always valid"))
    }
}

/// Parses a `user_id` from the path of `/stats/users/{user_id}`.
pub(crate) fn parse_user_id(raw: &str) -> Result<Uuid, FieldError> {
    Uuid::parse_str(raw).map_err(|_| FieldError::new("user_id", "must be a UUID"))
}
