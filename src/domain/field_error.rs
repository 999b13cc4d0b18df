//! A rule one field of a request broke: what parsing the request into domain values reports,
//! and what `ApiError::Validation` turns into a problem+json `errors` list.

use serde::Serialize;

/// One rule a field of the request broke.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
