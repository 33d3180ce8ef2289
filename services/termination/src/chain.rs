//! The hash chain of a tenant's audit archive: each record's hash covers the record and the hash
//! of the one before it, so that altering, removing or reordering a record breaks every link
//! after it; signed checkpoints ([`crate::checkpoint`]) pin the chain at points anyone can hold.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The hash the first record of a chain follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One archived audit record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecord {
    pub tenant: String,
    /// Its position in the tenant's chain, from 1.
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub time: DateTime<Utc>,
    pub archived_at: DateTime<Utc>,
    pub source: String,
    pub operation: String,
    pub target: String,
    pub subject: String,
    pub organization: String,
    pub outcome: String,
    /// The record as it arrived (JSON text): the hash covers these exact bytes.
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

impl ArchivedRecord {
    /// The hex SHA-256 of this record's content after `prev_hash`: every field, each with its
    /// length, so that no two different records hash alike by shifting bytes between fields;
    /// the position and instants as big-endian integers (microseconds).
    pub fn content_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(self.seq.to_be_bytes());
        h.update(self.time.timestamp_micros().to_be_bytes());
        h.update(self.archived_at.timestamp_micros().to_be_bytes());
        for field in [
            &self.tenant,
            &self.event_id,
            &self.event_type,
            &self.source,
            &self.operation,
            &self.target,
            &self.subject,
            &self.organization,
            &self.outcome,
            &self.data,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Links this record after `prev_hash`: sets its `prev_hash` and `hash`.
    pub fn link(mut self, prev_hash: &str) -> Self {
        self.hash = self.content_hash(prev_hash);
        self.prev_hash = prev_hash.to_string();
        self
    }
}

/// Why a record does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// Walks a chain from a trusted point (genesis, or a verified checkpoint), record by record, and
/// stops at the first that does not verify.
#[derive(Debug, Clone)]
pub struct Walk {
    next_seq: i64,
    hash: String,
    checked: i64,
    broken: Option<Broken>,
}

impl Walk {
    /// From the trusted hash at `seq` (0 and [`GENESIS`] for the chain's start).
    pub fn after(seq: i64, hash: &str) -> Self {
        Self {
            next_seq: seq + 1,
            hash: hash.to_string(),
            checked: 0,
            broken: None,
        }
    }

    /// Checks the next record; false once the chain is broken.
    pub fn record(&mut self, r: &ArchivedRecord) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let fail = |seq, reason: String| Some(Broken { seq, reason });
        self.broken = if r.seq != self.next_seq {
            fail(
                self.next_seq,
                format!(
                    "record {} is missing: the next record held is {}",
                    self.next_seq, r.seq
                ),
            )
        } else if r.prev_hash != self.hash {
            fail(
                r.seq,
                format!(
                    "record {} does not follow record {}: the hash it links to is not that \
                     record's",
                    r.seq,
                    r.seq - 1
                ),
            )
        } else if r.content_hash(&self.hash) != r.hash {
            fail(
                r.seq,
                format!("record {}: its content does not match its hash", r.seq),
            )
        } else {
            None
        };
        if self.broken.is_none() {
            self.hash = r.hash.clone();
            self.next_seq += 1;
            self.checked += 1;
        }
        self.broken.is_none()
    }

    /// Checks that the chain reached `seq` with `hash` (a checkpoint, or the chain's head).
    pub fn reaches(&mut self, seq: i64, hash: &str, what: &str) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if self.next_seq - 1 != seq {
            self.broken = Some(Broken {
                seq: self.next_seq.min(seq + 1).max(1),
                reason: format!(
                    "{what} names record {seq}, but the chain held ends at record {}",
                    self.next_seq - 1
                ),
            });
        } else if self.hash != hash {
            self.broken = Some(Broken {
                seq,
                reason: format!(
                    "{what} at record {seq} holds another hash: records up to it were rewritten"
                ),
            });
        }
        self.broken.is_none()
    }

    /// Marks the chain broken at `seq` for `reason` (a bad signature on the way).
    pub fn fail(&mut self, seq: i64, reason: String) {
        if self.broken.is_none() {
            self.broken = Some(Broken { seq, reason });
        }
    }

    /// Records verified so far.
    pub fn checked(&self) -> i64 {
        self.checked
    }

    /// The position and hash the walk has verified up to.
    pub fn position(&self) -> (i64, &str) {
        (self.next_seq - 1, &self.hash)
    }

    pub fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64) -> ArchivedRecord {
        let at = DateTime::from_timestamp(1_790_000_000 + seq, 0).unwrap();
        ArchivedRecord {
            tenant: "230100".into(),
            seq,
            event_id: format!("e{seq}"),
            event_type: "pdp.gateway.request.audited".into(),
            time: at,
            archived_at: at,
            source: "gateway".into(),
            operation: "/pdp.planning.v1.PlanService/GetPlan".into(),
            target: format!("r{seq}"),
            subject: "u".into(),
            organization: "o".into(),
            outcome: "allow 200".into(),
            data: format!("{{\"n\":{seq}}}"),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn chain(n: i64) -> Vec<ArchivedRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let r = record(seq).link(&prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    fn walk(records: &[ArchivedRecord]) -> Walk {
        let mut w = Walk::after(0, GENESIS);
        for r in records {
            w.record(r);
        }
        w
    }

    #[test]
    fn an_intact_chain_verifies_to_its_end() {
        let c = chain(5);
        let mut w = walk(&c);
        assert_eq!(w.broken(), None);
        assert_eq!(w.checked(), 5);
        assert!(w.reaches(5, &c[4].hash, "the head"));
    }

    #[test]
    fn an_altered_record_is_named() {
        let mut c = chain(5);
        c[2].outcome = "deny 403".into();
        assert_eq!(walk(&c).broken().unwrap().seq, 3);
    }

    #[test]
    fn an_altered_record_with_its_hash_recomputed_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].subject = "someone else".into();
        c[2].hash = c[2].content_hash(&c[1].hash);
        let broken = walk(&c).broken().cloned().unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("does not follow"), "{broken:?}");
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_its_checkpoint() {
        let original = chain(5);
        let mut c = original.clone();
        c[1].target = "forged".into();
        let mut prev = c[0].hash.clone();
        for r in c.iter_mut().skip(1) {
            *r = r.clone().link(&prev);
            prev = r.hash.clone();
        }
        let mut w = walk(&c);
        assert_eq!(w.broken(), None, "the links alone hold");
        assert!(!w.reaches(5, &original[4].hash, "checkpoint"));
        assert_eq!(w.broken().unwrap().seq, 5);
    }

    #[test]
    fn a_deleted_or_reordered_record_is_named() {
        let mut c = chain(5);
        c.remove(2);
        let broken = walk(&c).broken().cloned().unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("missing"), "{broken:?}");

        let mut c = chain(5);
        c.swap(1, 2);
        let (a, b) = (c[1].seq, c[2].seq);
        c[1].seq = b;
        c[2].seq = a;
        assert_eq!(walk(&c).broken().unwrap().seq, 2);
    }

    #[test]
    fn a_truncated_tail_is_caught_by_the_head() {
        let c = chain(5);
        let mut w = walk(&c[..4]);
        assert!(!w.reaches(5, &c[4].hash, "the chain's head"));
    }

    #[test]
    fn fields_cannot_trade_bytes() {
        let mut a = record(1);
        let mut b = record(1);
        a.subject = "ab".into();
        a.organization = "c".into();
        b.subject = "a".into();
        b.organization = "bc".into();
        assert_ne!(a.content_hash(GENESIS), b.content_hash(GENESIS));
    }
}
