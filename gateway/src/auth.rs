//! Authentication: bearer JWTs, verified against the province's JWKS (RS256, ES256) in a cluster,
//! or against the dev key of `pdp dev` (HS256, a random secret kept in the data directory so that
//! tokens survive a restart).
//!
//! Every refusal says why (expired, not yet valid, wrong audience, wrong issuer, bad signature,
//! unsupported algorithm — `alg: none` included — or malformed), and no refused token reaches a
//! service.

use std::path::Path;
use std::sync::{Arc, RwLock};

use actix_web::HttpRequest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use pdp_kit::identity::{Identity, TenantCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use tokio_util::sync::CancellationToken;

use crate::Authenticator;

/// The claims pdp reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// The organization the subject acts for.
    pub org: String,
    /// Role ids, as the authorization policy names them.
    pub roles: Vec<String>,
    /// The subject's own tenant.
    pub tenant: TenantCode,
    /// The organization's GB/T 2260 division, county level allowed (`230102`): the gateway
    /// checks that the tenant serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<TenantCode>,
    pub iss: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub iat: i64,
}

/// `aud`: one audience or a list of them (RFC 7519 §4.1.3; Keycloak issues lists).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(value: &str) -> Self {
        Self::One(value.to_string())
    }
}

/// The longest a token may live (`exp - iat`) unless configuration says otherwise: a token that
/// leaks stops working within a day.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token algorithm is not accepted ({0} only; never none)")]
    Algorithm(&'static str),
    #[error("token lives {lives} s (exp - iat); at most {max} s are accepted")]
    TooLong { lives: i64, max: i64 },
    #[error("token signed with an unknown key `{0}`")]
    UnknownKey(String),
    #[error("token is malformed: {0}")]
    Malformed(String),
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => Self::Algorithm(JWKS_ALGORITHMS),
            _ => Self::Malformed(e.to_string()),
        }
    }
}

const JWKS_ALGORITHMS: &str = "RS256 and ES256";
const DEV_ALGORITHMS: &str = "HS256, the dev key's";

/// A JWKS key: its id and the one algorithm it may verify.
type JwksKey = (Option<String>, Algorithm, DecodingKey);

enum Keys {
    /// Replaced whole when the identity provider's JWKS is fetched again (key rotation).
    Jwks(RwLock<Arc<Vec<JwksKey>>>),
    Dev(DecodingKey),
}

/// The RS256 and ES256 keys of a JWKS document.
fn parse_jwks(jwks: &str) -> Result<Vec<JwksKey>, String> {
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.common.key_algorithm {
            Some(jsonwebtoken::jwk::KeyAlgorithm::RS256) => Algorithm::RS256,
            Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => Algorithm::ES256,
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            },
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key: {e}"))?;
        keys.push((jwk.common.key_id.clone(), alg, key));
    }
    if keys.is_empty() {
        return Err("JWKS has no RS256 or ES256 key".into());
    }
    Ok(keys)
}

/// Seconds of clock difference allowed between the identity provider and the gateway.
const LEEWAY: i64 = 30;

/// Tokens verified already, so that a caller's next requests skip the signature check: an RS256
/// or ES256 verification costs tens of microseconds, a lookup well under one. Keyed by the whole
/// token, so that a token with one byte changed is verified afresh; an entry serves until the
/// token's own expiry (with the same leeway), and all are forgotten when the keys change.
#[derive(Default)]
struct VerifiedTokens {
    entries: RwLock<std::collections::HashMap<Box<str>, Claims>>,
}

impl VerifiedTokens {
    /// Enough for every caller active within a token's lifetime; beyond it, the expired go first.
    const CAPACITY: usize = 10_000;

    fn get(&self, token: &str, now: i64) -> Option<Claims> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(token)
            .filter(|claims| now <= claims.exp + LEEWAY)
            .cloned()
    }

    fn insert(&self, token: &str, claims: &Claims, now: i64) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= Self::CAPACITY {
            entries.retain(|_, claims| now <= claims.exp + LEEWAY);
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
        }
        entries.insert(token.into(), claims.clone());
    }

    fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// Verifies bearer tokens.
pub struct JwtAuthenticator {
    keys: Keys,
    verified: VerifiedTokens,
    issuer: String,
    audience: String,
    /// `exp - iat` at most, in seconds (configuration may lower or raise it after start).
    max_lifetime: std::sync::atomic::AtomicI64,
    /// Woken when a token names a key id the JWKS in hand lacks: the provider may have rotated
    /// its keys, so the JWKS URL is fetched again without waiting for the next refresh.
    unknown_key: Arc<tokio::sync::Notify>,
}

/// The shortest time between two fetches that unknown key ids ask for: a flood of tokens with a
/// made-up `kid` must not turn the gateway against the identity provider.
const MIN_REFETCH: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Verifies against a JWKS document; only its RS256 and ES256 keys are used.
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        Ok(Self {
            keys: Keys::Jwks(RwLock::new(Arc::new(parse_jwks(jwks)?))),
            verified: VerifiedTokens::default(),
            issuer: issuer.into(),
            audience: audience.into(),
            max_lifetime: std::sync::atomic::AtomicI64::new(MAX_TOKEN_LIFETIME_SECS),
            unknown_key: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Verifies against the JWKS published at `url`, fetched now (so that a wrong URL stops the
    /// start) and again every `refresh` until `shutdown`, so that the provider can rotate keys; a
    /// token naming an unknown key id brings the next fetch forward (at most one per 10 s).
    pub async fn from_jwks_url(
        url: &str,
        issuer: &str,
        audience: &str,
        refresh: std::time::Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        Self::following(url, issuer, audience, refresh, MIN_REFETCH, shutdown).await
    }

    /// [`Self::from_jwks_url`] with the shortest time between fetches that unknown key ids ask
    /// for set by the caller (tests).
    pub async fn following(
        url: &str,
        issuer: &str,
        audience: &str,
        refresh: std::time::Duration,
        min_refetch: std::time::Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let jwks = fetch_jwks(&client, url).await?;
        let auth = Arc::new(Self::from_jwks(&jwks, issuer, audience)?);
        let follower = auth.clone();
        let url = url.to_string();
        let unknown_key = auth.unknown_key.clone();
        tokio::spawn(async move {
            let mut fetched = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(fetched + refresh) => {}
                    _ = unknown_key.notified() => {
                        tokio::time::sleep_until(fetched + min_refetch.min(refresh)).await;
                    }
                }
                fetched = tokio::time::Instant::now();
                // A failed refresh keeps the keys in hand: tokens keep verifying while the
                // provider is briefly away.
                match fetch_jwks(&client, &url)
                    .await
                    .and_then(|j| follower.replace_jwks(&j))
                {
                    Ok(n) => tracing::debug!(keys = n, "JWKS refreshed"),
                    Err(err) => {
                        tracing::warn!(%url, error = %err, "JWKS refresh failed; keeping the keys in hand")
                    }
                }
            }
        });
        Ok(auth)
    }

    /// Replaces the JWKS keys (key rotation); returns how many are in use. A document without a
    /// usable key changes nothing.
    pub fn replace_jwks(&self, jwks: &str) -> Result<usize, String> {
        let Keys::Jwks(keys) = &self.keys else {
            return Err("the dev authenticator has no JWKS".into());
        };
        let parsed = parse_jwks(jwks)?;
        let n = parsed.len();
        *keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(parsed);
        // A token of a key that left the JWKS must not pass on the strength of an old check.
        self.verified.clear();
        Ok(n)
    }

    /// Verifies tokens of the dev issuer.
    pub fn dev(key: &DevKey) -> Self {
        Self {
            keys: Keys::Dev(DecodingKey::from_secret(&key.secret)),
            verified: VerifiedTokens::default(),
            issuer: DevKey::ISSUER.into(),
            audience: DevKey::AUDIENCE.into(),
            max_lifetime: std::sync::atomic::AtomicI64::new(MAX_TOKEN_LIFETIME_SECS),
            unknown_key: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Accepts tokens living at most `secs` (`exp - iat`).
    pub fn with_max_lifetime(self, secs: i64) -> Self {
        self.set_max_lifetime(secs);
        self
    }

    pub fn set_max_lifetime(&self, secs: i64) {
        self.max_lifetime
            .store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    fn accepted(&self) -> &'static str {
        match self.keys {
            Keys::Dev(_) => DEV_ALGORITHMS,
            Keys::Jwks(_) => JWKS_ALGORITHMS,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let cached = self.verified.get(token, now);
        pdp_kit::telemetry::metrics::GATEWAY_TOKEN_CACHE
            .with_label_values(&[if cached.is_some() { "hit" } else { "miss" }])
            .inc();
        if let Some(claims) = cached {
            return Ok(claims);
        }
        let claims = self.check(token)?;
        self.verified.insert(token, &claims, now);
        Ok(claims)
    }

    /// The signature and the claims, checked in full.
    fn check(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` and other unknown algorithms fail to parse as a header.
            ErrorKind::Json(_) if token_alg(token).is_some() => {
                AuthError::Algorithm(self.accepted())
            }
            _ => AuthError::from(e),
        })?;
        let current;
        let (alg, key) = match &self.keys {
            Keys::Dev(key) => (Algorithm::HS256, key),
            Keys::Jwks(keys) => {
                current = keys
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let found = current.iter().find(|(kid, alg, _)| {
                    *alg == header.alg && (header.kid.is_none() || *kid == header.kid)
                });
                match found {
                    Some((_, alg, key)) => (*alg, key),
                    None if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) => {
                        return Err(AuthError::Algorithm(JWKS_ALGORITHMS));
                    }
                    None => {
                        self.unknown_key.notify_one();
                        return Err(AuthError::UnknownKey(header.kid.unwrap_or_default()));
                    }
                }
            }
        };
        if header.alg != alg {
            return Err(AuthError::Algorithm(self.accepted()));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY as u64;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match AuthError::from(e) {
                AuthError::Algorithm(_) => AuthError::Algorithm(self.accepted()),
                other => other,
            })?
            .claims;
        let lives = claims.exp - claims.iat;
        let max = self.max_lifetime.load(std::sync::atomic::Ordering::Relaxed);
        if lives > max {
            return Err(AuthError::TooLong { lives, max });
        }
        Ok(claims)
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("JWKS {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("JWKS {url}: HTTP {}", response.status()));
    }
    response
        .text()
        .await
        .map_err(|e| format!("JWKS {url}: {e}"))
}

/// The `alg` a token claims, read without trusting it (to explain a refusal).
fn token_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value.get("alg")?.as_str().map(str::to_string)
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(
        &self,
        request: &HttpRequest,
        _tenant: &TenantCode,
    ) -> Result<Identity, String> {
        let token = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| AuthError::Missing.to_string())?;
        let claims = self.verify(token.trim()).map_err(|e| e.to_string())?;
        Ok(Identity {
            subject: claims.sub,
            organization: claims.org,
            roles: claims.roles,
            tenant: claims.tenant,
            division: claims.division,
        })
    }
}

/// The signing key of `pdp dev`, kept in the data directory.
pub struct DevKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevKey(********)")
    }
}

impl DevKey {
    pub const ISSUER: &'static str = "pdp-dev";
    pub const AUDIENCE: &'static str = "pdp";
    const FILE: &'static str = "dev-token.key";

    /// Loads the key of `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            secret: dev_secret(data_dir, Self::FILE)?,
        })
    }

    /// A token for front-end development.
    pub fn issue(
        &self,
        subject: &str,
        organization: &str,
        roles: &[String],
        tenant: &TenantCode,
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.into(),
            org: organization.into(),
            roles: roles.to_vec(),
            tenant: tenant.clone(),
            division: None,
            iss: Self::ISSUER.into(),
            aud: Self::AUDIENCE.into(),
            exp: now + ttl.num_seconds(),
            nbf: Some(now),
            iat: now,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .expect("HS256 signing cannot fail")
    }
}

/// A random 32-byte secret kept (base64, owner-only) in `data_dir/file`: made on first use, read
/// afterwards, so that what it signs survives a restart of `pdp dev`.
pub(crate) fn dev_secret(data_dir: &Path, file: &str) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(file);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(secret) = STANDARD.decode(text.trim())
        && secret.len() >= 32
    {
        return Ok(secret);
    }
    std::fs::create_dir_all(data_dir)?;
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    write_private(&path, &STANDARD.encode(&secret))?;
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "u-1".into(),
            org: "harbin-bureau".into(),
            roles: vec!["city_bureau".into()],
            tenant: "230100".parse().unwrap(),
            division: None,
            iss: DevKey::ISSUER.into(),
            aud: DevKey::AUDIENCE.into(),
            exp,
            nbf: None,
            iat: exp - 600,
        }
    }

    #[test]
    fn a_verified_token_serves_until_its_expiry_and_only_itself() {
        let cache = VerifiedTokens::default();
        cache.insert("token-a", &claims(1_000), 500);
        assert_eq!(cache.get("token-a", 1_000 + LEEWAY), Some(claims(1_000)));
        assert_eq!(cache.get("token-a", 1_001 + LEEWAY), None);
        assert_eq!(cache.get("token-b", 500), None);
        cache.clear();
        assert_eq!(cache.get("token-a", 500), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_first() {
        let cache = VerifiedTokens::default();
        for i in 0..VerifiedTokens::CAPACITY - 1 {
            cache.insert(&format!("old-{i}"), &claims(100), 50);
        }
        cache.insert("live", &claims(10_000), 50);
        cache.insert("newcomer", &claims(10_000), 5_000);
        assert!(cache.get("live", 5_000).is_some());
        assert!(cache.get("newcomer", 5_000).is_some());
        assert_eq!(cache.entries.read().unwrap().len(), 2);
    }

    #[test]
    fn a_dev_token_is_checked_once_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let key = DevKey::load_or_create(dir.path()).unwrap();
        let auth = JwtAuthenticator::dev(&key);
        let token = key.issue(
            "u-1",
            "org",
            &["operator".into()],
            &"230100".parse().unwrap(),
            chrono::Duration::minutes(5),
        );
        let first = auth.verify(&token).unwrap();
        assert_eq!(auth.verify(&token).unwrap(), first);
        // One character of the signature changed (not the last, whose low bits are padding).
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert_eq!(auth.verify(&forged), Err(AuthError::BadSignature));
    }
}
