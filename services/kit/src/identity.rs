//! The verified caller, carried from the gateway to the services in signed gRPC metadata.
//!
//! The gateway authenticates a token, builds an [`Identity`] and signs it with a key it shares
//! with the services (HMAC-SHA256). Services accept no other form of identity: a call without a
//! valid signature, or with one older than the configured age, is refused with UNAUTHENTICATED
//! before any handler runs.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

use crate::clock::Clock;

pub const IDENTITY_HEADER: &str = "x-pdp-identity";
pub const SIGNATURE_HEADER: &str = "x-pdp-identity-signature";

/// A tenant: the province or one of its prefecture-level divisions, by its six-digit GB/T 2260
/// administrative code. Which codes exist is the gateway's business; here only the form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantCode(String);

impl TenantCode {
    /// Heilongjiang Province itself (黑龙江省).
    pub const PROVINCE: &'static str = "230000";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn province() -> Self {
        Self(Self::PROVINCE.to_string())
    }

    pub fn is_province(&self) -> bool {
        self.0 == Self::PROVINCE
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("tenant code `{0}` is not a six-digit GB/T 2260 code")]
pub struct InvalidTenantCode(pub String);

impl FromStr for TenantCode {
    type Err = InvalidTenantCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(InvalidTenantCode(s.to_string()))
        }
    }
}

impl TryFrom<String> for TenantCode {
    type Error = InvalidTenantCode;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<TenantCode> for String {
    fn from(value: TenantCode) -> Self {
        value.0
    }
}

impl fmt::Display for TenantCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Who: the token's subject.
    pub subject: String,
    /// The organization the subject acts for (a bureau, provider unit, operator…).
    pub organization: String,
    /// Role ids as the authorization policy names them.
    pub roles: Vec<String>,
    /// The tenant the call is made in.
    pub tenant: TenantCode,
    /// The GB/T 2260 division of the organization when the token names one: the tenant's own
    /// code or, for a county's organization, the county's (served by its city's tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<TenantCode>,
}

/// The roles of the regulation a caller acts in (R-ROLE-1..7), and those the gateway derives.
/// Tokens and the authorization policy name them by [`Role::as_str`]; services and the gateway's
/// policy share this one list, so that a role the policy names and no service knows (or the
/// reverse) cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// 省数据局 (R-ROLE-1).
    ProvincialBureau,
    /// A city's data bureau (R-ROLE-2).
    CityBureau,
    /// 数据提供单位 (R-ROLE-3).
    Provider,
    /// 运营机构 (R-ROLE-4).
    Operator,
    /// 开发利用主体 (R-ROLE-5).
    Developer,
    /// The supervising departments (R-ROLE-6).
    Supervisor,
    Auditor,
    /// An outside expert a bureau names to evaluate a selection's applications (评审专家);
    /// bureau staff named so keep their own role.
    Evaluator,
    /// An organization that buys products on a data exchange (数据产品需方, 第二十四条): it calls
    /// what its trades entitle it to.
    Buyer,
    /// Derived: an operator's organization while one of its agreements in the tenant is ACTIVE
    /// (R-AGR-3). Granted by the gateway from the agreements, never by a token.
    AuthorizedOperator,
    /// Derived: the provincial bureau's reading of every city (R-ROLE-1).
    Supervision,
    /// Derived: a caller without a token (R-ROLE-7).
    Public,
}

impl Role {
    /// Every role: those a token may carry ([`Role::ISSUED`]) first, then the derived ones.
    pub const ALL: [Role; 12] = [
        Role::ProvincialBureau,
        Role::CityBureau,
        Role::Provider,
        Role::Operator,
        Role::Developer,
        Role::Supervisor,
        Role::Auditor,
        Role::Evaluator,
        Role::Buyer,
        Role::AuthorizedOperator,
        Role::Supervision,
        Role::Public,
    ];

    /// The roles a token may carry.
    pub const ISSUED: &'static [Role] = Self::ALL.split_at(9).0;

    /// The data bureaus: the province's and the cities'.
    pub const BUREAU: [Role; 2] = [Role::ProvincialBureau, Role::CityBureau];

    /// The bureaus and those who read on their behalf, the supervisors and auditors: who see
    /// every row of their tenant, drafts and all.
    pub const STAFF: [Role; 4] = [
        Role::ProvincialBureau,
        Role::CityBureau,
        Role::Supervisor,
        Role::Auditor,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProvincialBureau => "provincial_bureau",
            Self::CityBureau => "city_bureau",
            Self::Provider => "provider",
            Self::Operator => "operator",
            Self::Developer => "developer",
            Self::Supervisor => "supervisor",
            Self::Auditor => "auditor",
            Self::Evaluator => "evaluator",
            Self::Buyer => "buyer",
            Self::AuthorizedOperator => "authorized_operator",
            Self::Supervision => "supervision",
            Self::Public => "public",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether only the gateway grants it (a token that claims it gets nothing by it).
    pub fn is_derived(self) -> bool {
        !Self::ISSUED.contains(&self)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Identity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r == role.as_str())
    }

    /// Whether the caller holds any of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.has(*role))
    }
}

/// What is signed: the identity's fields and when (`iat`, seconds), side by side. Spelled out
/// rather than `#[serde(flatten)]`, which goes through an intermediate map on both sides.
#[derive(Serialize)]
struct ClaimsToSign<'a> {
    subject: &'a str,
    organization: &'a str,
    roles: &'a [String],
    tenant: &'a TenantCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    division: Option<&'a TenantCode>,
    iat: i64,
}

#[derive(Deserialize)]
struct SignedClaims {
    subject: String,
    organization: String,
    roles: Vec<String>,
    tenant: TenantCode,
    #[serde(default)]
    division: Option<TenantCode>,
    iat: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("no identity: the call did not come through the gateway")]
    Missing,
    #[error("identity signature does not verify")]
    BadSignature,
    #[error("identity is malformed: {0}")]
    Malformed(String),
    #[error("identity expired: signed {age_secs}s ago, at most {max_secs}s allowed")]
    Expired { age_secs: i64, max_secs: i64 },
}

/// Signs and verifies identities with the shared key.
#[derive(Clone)]
pub struct IdentityKey {
    /// The MAC keyed once (its padded key blocks hashed), cloned for each use.
    mac: Hmac<Sha256>,
    max_age: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKey")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl IdentityKey {
    pub fn new(key: &[u8], max_age: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
            max_age,
            clock,
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    /// Writes the identity and its signature into outgoing metadata.
    pub fn sign_into(&self, identity: &Identity, metadata: &mut MetadataMap) {
        let (payload, signature) = self.sign(identity, self.clock.now().timestamp());
        metadata.insert(IDENTITY_HEADER, ascii(&payload));
        metadata.insert(SIGNATURE_HEADER, ascii(&signature));
    }

    fn sign(&self, identity: &Identity, iat: i64) -> (String, String) {
        let claims = ClaimsToSign {
            subject: &identity.subject,
            organization: &identity.organization,
            roles: &identity.roles,
            tenant: &identity.tenant,
            division: identity.division.as_ref(),
            iat,
        };
        let json = serde_json::to_vec(&claims).expect("identity serializes");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (payload, signature)
    }

    /// Reads and checks the identity of an incoming call.
    pub fn verify(&self, metadata: &MetadataMap) -> Result<Identity, IdentityError> {
        let payload = header(metadata, IDENTITY_HEADER)?;
        let signature = header(metadata, SIGNATURE_HEADER)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| IdentityError::BadSignature)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| IdentityError::BadSignature)?;

        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let claims: SignedClaims =
            serde_json::from_slice(&json).map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let age = self.clock.now().timestamp() - claims.iat;
        // A little slack for clocks that disagree between pods.
        if age > self.max_age.num_seconds() || age < -30 {
            return Err(IdentityError::Expired {
                age_secs: age,
                max_secs: self.max_age.num_seconds(),
            });
        }
        Ok(Identity {
            subject: claims.subject,
            organization: claims.organization,
            roles: claims.roles,
            tenant: claims.tenant,
            division: claims.division,
        })
    }
}

fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Result<&'a str, IdentityError> {
    metadata
        .get(name)
        .ok_or(IdentityError::Missing)?
        .to_str()
        .map_err(|e| IdentityError::Malformed(e.to_string()))
}

fn ascii(value: &str) -> MetadataValue<Ascii> {
    value.parse().expect("base64url is valid metadata")
}

/// A tonic interceptor that refuses calls without a valid identity and hands the verified one to
/// handlers through the request extensions (see [`caller`]).
#[derive(Debug, Clone)]
pub struct RequireIdentity(pub IdentityKey);

impl tonic::service::Interceptor for RequireIdentity {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        match self.0.verify(request.metadata()) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Ok(request)
            }
            Err(err) => {
                tracing::warn!(error = %err, "call refused without a valid identity");
                Err(tonic::Status::unauthenticated(err.to_string()))
            }
        }
    }
}

/// The verified caller of a request that passed [`RequireIdentity`].
pub fn caller<T>(request: &tonic::Request<T>) -> Result<&Identity, tonic::Status> {
    request
        .extensions()
        .get::<Identity>()
        .ok_or_else(|| tonic::Status::unauthenticated(IdentityError::Missing.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use tonic::service::Interceptor;

    fn harbin_operator() -> Identity {
        Identity {
            subject: "u-1".into(),
            organization: "org-7".into(),
            roles: vec!["operator".into()],
            tenant: "230100".parse().unwrap(),
            division: None,
        }
    }

    fn key(secret: &[u8], clock: &ManualClock) -> IdentityKey {
        IdentityKey::new(secret, Duration::seconds(300), Arc::new(clock.clone()))
    }

    fn now() -> ManualClock {
        ManualClock::at("2026-03-02T08:00:00Z".parse().unwrap())
    }

    #[test]
    fn signed_identity_round_trips_through_the_interceptor() {
        let clock = now();
        let key = key(b"shared", &clock);
        let mut request = tonic::Request::new(());
        key.sign_into(&harbin_operator(), request.metadata_mut());
        let request = RequireIdentity(key.clone()).call(request).unwrap();
        assert_eq!(caller(&request).unwrap(), &harbin_operator());
        // A county organization's division travels signed with the rest.
        let county = Identity {
            division: Some("230102".parse().unwrap()),
            ..harbin_operator()
        };
        let mut request = tonic::Request::new(());
        key.sign_into(&county, request.metadata_mut());
        let request = RequireIdentity(key).call(request).unwrap();
        assert_eq!(caller(&request).unwrap(), &county);
    }

    #[test]
    fn unsigned_or_tampered_or_foreign_or_stale_identities_are_refused() {
        let clock = now();
        let key = key(b"shared", &clock);

        let bare = tonic::Request::new(());
        let status = RequireIdentity(key.clone()).call(bare).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);

        let mut md = MetadataMap::new();
        key.sign_into(&harbin_operator(), &mut md);
        let mut forged = harbin_operator();
        forged.roles = vec!["provincial_bureau".into()];
        let (payload, _) = key.sign(&forged, clock.now().timestamp());
        md.insert(IDENTITY_HEADER, ascii(&payload));
        assert_eq!(key.verify(&md), Err(IdentityError::BadSignature));

        let other = IdentityKey::new(b"other", Duration::seconds(300), Arc::new(clock.clone()));
        let mut md = MetadataMap::new();
        other.sign_into(&harbin_operator(), &mut md);
        assert_eq!(key.verify(&md), Err(IdentityError::BadSignature));

        let mut md = MetadataMap::new();
        key.sign_into(&harbin_operator(), &mut md);
        clock.advance(Duration::seconds(301));
        assert!(matches!(
            key.verify(&md),
            Err(IdentityError::Expired { .. })
        ));
    }

    fn signed(key: &IdentityKey, identity: &Identity) -> MetadataMap {
        let mut md = MetadataMap::new();
        key.sign_into(identity, &mut md);
        md
    }

    #[test]
    fn the_signed_payload_keeps_its_wire_form() {
        // Gateways and services of different releases meet during a rolling upgrade.
        let clock = now();
        let md = signed(&key(b"shared", &clock), &harbin_operator());
        let payload = URL_SAFE_NO_PAD
            .decode(md.get(IDENTITY_HEADER).unwrap().to_str().unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({
                "subject": "u-1",
                "organization": "org-7",
                "roles": ["operator"],
                "tenant": "230100",
                "iat": clock.now().timestamp(),
            })
        );
    }

    #[test]
    fn tenant_codes_have_six_digits() {
        assert!("230100".parse::<TenantCode>().is_ok());
        assert!("23010".parse::<TenantCode>().is_err());
        assert!("23010a".parse::<TenantCode>().is_err());
        assert!(serde_json::from_str::<TenantCode>("\"2301000\"").is_err());
    }
}
