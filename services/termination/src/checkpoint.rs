//! Checkpoints: the platform's Ed25519 signature over a tenant's chain at one record. Published
//! (`GET …/public/audit/checkpoints`), so that whoever keeps one can later show that no record up
//! to it was rewritten, even by someone holding the database.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// A regular checkpoint, or the anchor signed when the records up to it were purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    /// Records up to it were purged after their retention; the chain goes on from its hash.
    Anchor,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Regular => "REGULAR",
            Self::Anchor => "ANCHOR",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Regular, Self::Anchor]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tenant: String,
    pub seq: i64,
    pub hash: String,
    pub signed_at: DateTime<Utc>,
    pub kind: Kind,
    /// Base64 of the 64-byte signature over [`signing_input`].
    pub signature: String,
}

/// The exact bytes a checkpoint's signature covers.
pub fn signing_input(tenant: &str, seq: i64, hash: &str, signed_at: &DateTime<Utc>) -> String {
    format!(
        "pdp-audit-checkpoint/v1\n{tenant}\n{seq}\n{hash}\n{}",
        signed_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

impl Checkpoint {
    pub fn signing_input(&self) -> String {
        signing_input(&self.tenant, self.seq, &self.hash, &self.signed_at)
    }
}

/// The platform's archive key.
#[derive(Clone)]
pub struct ArchiveKey {
    key: SigningKey,
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("audit.signing_key: {0}")]
pub struct KeyError(String);

impl ArchiveKey {
    /// From a PEM PKCS#8 Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| KeyError(format!("not a PEM PKCS#8 Ed25519 private key ({e})")))
    }

    /// A new random key (dev, tests).
    pub fn generate() -> Self {
        Self {
            key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|pem| pem.to_string())
            .expect("an Ed25519 key encodes")
    }

    /// The public key: base64 of its 32 bytes.
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// The first 16 hex digits of the public key's SHA-256.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.key.verifying_key().as_bytes()))[..16].to_string()
    }

    pub fn sign(
        &self,
        tenant: &str,
        seq: i64,
        hash: &str,
        signed_at: DateTime<Utc>,
        kind: Kind,
    ) -> Checkpoint {
        // Signed at a whole second: the input shows seconds, and the stored instant equals it.
        let signed_at = DateTime::from_timestamp(signed_at.timestamp(), 0).unwrap_or(signed_at);
        let input = signing_input(tenant, seq, hash, &signed_at);
        Checkpoint {
            tenant: tenant.to_string(),
            seq,
            hash: hash.to_string(),
            signed_at,
            kind,
            signature: STANDARD.encode(self.key.sign(input.as_bytes()).to_bytes()),
        }
    }

    /// The signature of `bytes` (a handover manifest).
    pub fn sign_bytes(&self, bytes: &[u8]) -> [u8; 64] {
        self.key.sign(bytes).to_bytes()
    }

    /// Whether `checkpoint`'s signature is this key's over its content.
    pub fn verifies(&self, checkpoint: &Checkpoint) -> bool {
        verify(
            &self.key.verifying_key(),
            checkpoint.signing_input().as_bytes(),
            &checkpoint.signature,
        )
    }
}

/// Whether `signature` (base64) is `key`'s over `input`: what anyone holding the published
/// public key does.
pub fn verify(key: &VerifyingKey, input: &[u8], signature: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(input, &signature).is_ok()
}

/// Whether `signature` is the signature of the published key `public_key` (base64 of its 32
/// bytes) over `input`: what a holder of a checkpoint runs.
pub fn verify_published(public_key: &str, input: &str, signature: &str) -> bool {
    let key = STANDARD
        .decode(public_key)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
    key.is_some_and(|key| verify(&key, input.as_bytes(), signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_with_the_published_key_and_not_once_changed() {
        let key = ArchiveKey::generate();
        let at = DateTime::from_timestamp(1_790_000_000, 123).unwrap();
        let cp = key.sign("230100", 42, crate::chain::GENESIS, at, Kind::Regular);
        assert!(key.verifies(&cp));
        let public: [u8; 32] = STANDARD
            .decode(key.public_key())
            .unwrap()
            .try_into()
            .unwrap();
        let public = VerifyingKey::from_bytes(&public).unwrap();
        assert!(verify(
            &public,
            cp.signing_input().as_bytes(),
            &cp.signature
        ));
        let mut forged = cp.clone();
        forged.seq = 41;
        assert!(!key.verifies(&forged));
        assert!(!ArchiveKey::generate().verifies(&cp), "another key");
    }

    #[test]
    fn the_key_round_trips_through_pem() {
        let key = ArchiveKey::generate();
        let again = ArchiveKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        let err = ArchiveKey::from_pem("not a key").unwrap_err().to_string();
        assert!(err.contains("audit.signing_key"), "{err}");
    }
}
