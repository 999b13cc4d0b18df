//! How one cached answer is stored: what a HIT serves (the entity tag and the body) first, then
//! what live updates need (docs/cache.md, "Live ingest"), which a HIT never parses.
//!
//! ```text
//! version (16 hex) | etag (16 hex) | body length (u32, big endian) | body | meta length (u32) | meta JSON | state
//! ```
//!
//! `version` changes with every rewrite of the entry, so a live update can replace exactly the
//! value it read (compare-and-set on the first 16 bytes) without comparing kilobytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::Snapshot;

pub(crate) const VERSION_LEN: usize = 16;
const ETAG_LEN: usize = 16;

/// A serialized answer and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload {
    pub(crate) body: Vec<u8>,
    pub(crate) etag: String,
}

impl Payload {
    pub(crate) fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        Self {
            etag: hex::encode(&digest[..ETAG_LEN / 2]),
            body,
        }
    }
}

/// Which creates an entry already includes: those its snapshot saw, and every create the write
/// log holds up to `seq` (applied when it was stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) snapshot: Snapshot,
    pub(crate) seq: u64,
}

impl Meta {
    /// Must the create logged at `seq` by transaction `xid` still be applied to this entry?
    pub(crate) fn lacks(&self, seq: u64, xid: u64) -> bool {
        seq > self.seq && !self.snapshot.sees(xid)
    }
}

/// An entry with everything it is stored with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) payload: Payload,
    /// Absent for an answer that cannot be updated live; a create then removes it.
    pub(crate) live: Option<(Meta, Vec<u8>)>,
}

impl Entry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let body = &self.payload.body;
        let meta = self
            .live
            .as_ref()
            .and_then(|(meta, _)| serde_json::to_vec(meta).ok())
            .unwrap_or_default();
        let state = self.live.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
        let mut out =
            Vec::with_capacity(VERSION_LEN + ETAG_LEN + 8 + body.len() + meta.len() + state.len());
        out.extend_from_slice(hex::encode(rand::random::<[u8; VERSION_LEN / 2]>()).as_bytes());
        out.extend_from_slice(self.payload.etag.as_bytes());
        push_len(&mut out, body.len());
        out.extend_from_slice(body);
        push_len(&mut out, meta.len());
        out.extend_from_slice(&meta);
        out.extend_from_slice(state);
        out
    }

    /// The whole entry; `None` for anything malformed, which counts as absent.
    pub(crate) fn decode(raw: &[u8]) -> Option<Self> {
        let payload = Self::decode_payload(raw)?;
        let rest = raw.get(VERSION_LEN + ETAG_LEN + 4 + payload.body.len()..)?;
        let meta_len = read_len(rest)?;
        let meta = rest.get(4..4 + meta_len)?;
        let state = rest.get(4 + meta_len..)?;
        let live = if meta.is_empty() {
            None
        } else {
            Some((serde_json::from_slice(meta).ok()?, state.to_vec()))
        };
        Some(Self { payload, live })
    }

    /// Only what a HIT serves.
    pub(crate) fn decode_payload(raw: &[u8]) -> Option<Payload> {
        let etag = std::str::from_utf8(raw.get(VERSION_LEN..VERSION_LEN + ETAG_LEN)?).ok()?;
        let len = read_len(raw.get(VERSION_LEN + ETAG_LEN..)?)?;
        let start = VERSION_LEN + ETAG_LEN + 4;
        Some(Payload {
            etag: etag.to_owned(),
            body: raw.get(start..start + len)?.to_vec(),
        })
    }
}

/// The version an encoded entry starts with.
pub(crate) fn version_of(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().min(VERSION_LEN)]
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn read_len(raw: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = raw.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_stored_form() {
        let entry = Entry {
            payload: Payload::new(br#"{"events":3}"#.to_vec()),
            live: Some((
                Meta {
                    snapshot: Snapshot {
                        xmin: 5,
                        xmax: 9,
                        xip: vec![6],
                    },
                    seq: 41,
                },
                br#"{"kind":"x"}"#.to_vec(),
            )),
        };
        let raw = entry.encode();
        assert_eq!(Entry::decode(&raw), Some(entry.clone()));
        assert_eq!(Entry::decode_payload(&raw), Some(entry.payload.clone()));
        assert_ne!(
            version_of(&raw),
            version_of(&entry.encode()),
            "every encoding is a new version"
        );
        let plain = Entry {
            payload: entry.payload,
            live: None,
        };
        assert_eq!(Entry::decode(&plain.encode()), Some(plain));
        assert_eq!(Entry::decode(b"short"), None);
        assert_eq!(Entry::decode_payload(&raw[..40]), None, "truncated");
    }

    #[test]
    fn an_entry_lacks_only_creates_it_neither_saw_nor_caught_up_with() {
        let meta = Meta {
            snapshot: Snapshot {
                xmin: 100,
                xmax: 110,
                xip: vec![105],
            },
            seq: 7,
        };
        assert!(meta.lacks(8, 105), "running when computed, logged after");
        assert!(meta.lacks(8, 120), "began after the snapshot");
        assert!(!meta.lacks(8, 99), "seen by the snapshot");
        assert!(!meta.lacks(7, 120), "caught up with when stored");
    }
}
