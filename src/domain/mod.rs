//! Parsed types. Input from a request is turned into one of these once, at the edge,
//! and everything past the handler can rely on its rules holding. No I/O here.

pub(crate) mod action;
pub(crate) mod activity;
pub(crate) mod export;
pub(crate) mod field_error;
pub(crate) mod live_write;
pub(crate) mod pagination;
pub mod stats_query;
pub mod time_range;
pub mod zone;

pub use action::Action;
pub use activity::{Activity, ActivityPatch, NewActivity, WriteWindow};
pub(crate) use export::{ExportFormat, ExportParams, ExportQuery};
pub(crate) use field_error::FieldError;
pub use live_write::{LiveWrite, Neighbours, Snapshot, Touch};
pub use pagination::{Cursor, ListActivitiesQuery};
pub use stats_query::{Bucket, StatsQuery, TopUsersLimit};
pub use time_range::{DayPart, DaySplit, Pieces, TimeRange, parse_instant};
pub(crate) use time_range::{cut_at_midnights, start_of_quarter};
pub use zone::{LocalTime, Zone};
