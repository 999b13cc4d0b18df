//! `Action`: what a user did, as a short machine-readable name.

use serde::Serialize;

/// 1 to 64 characters of `a-z 0-9 _ . : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Action(String);

impl Action {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.chars().count() > 64 {
            return Err("must be 1 to 64 characters long".into());
        }
        if let Some(bad) = raw.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-'))
        }) {
            return Err(format!("may contain only a-z 0-9 _ . : - (found {bad:?})"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "page_view",
            "a",
            "checkout.completed",
            "ns:evt-1",
            &"x".repeat(64),
        ] {
            assert!(Action::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "Page", "has space", "ümlaut", &"x".repeat(65), "a/b"] {
            assert!(Action::parse(bad).is_err(), "{bad:?}");
        }
    }
}
