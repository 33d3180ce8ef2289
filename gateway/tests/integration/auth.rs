//! Token verification: JWKS keys (RS256, ES256) and the dev key, and every way a token is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use pdp_gateway::auth::{Audience, AuthError, Claims, DevKey, JwtAuthenticator};
use rsa::traits::PublicKeyParts;

const ISS: &str = "https://sso.hlj.example/realms/pdp";
const AUD: &str = "pdp-gateway";

struct Keys {
    es: EncodingKey,
    rs: EncodingKey,
    jwks: String,
}

fn keys() -> Keys {
    let es = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point = es.public_key().to_encoded_point(false);
    let rs = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let jwks = serde_json::json!({"keys": [
        {
            "kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        },
        {
            "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(rs.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(rs.e().to_bytes_be()),
        },
    ]});
    Keys {
        es: EncodingKey::from_ec_der(es.to_pkcs8_der().unwrap().as_bytes()),
        rs: EncodingKey::from_rsa_der(
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&rs)
                .unwrap()
                .as_bytes(),
        ),
        jwks: jwks.to_string(),
    }
}

fn claims() -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "u-1".into(),
        org: "harbin-bureau".into(),
        roles: vec!["city_bureau".into()],
        tenant: "230100".parse().unwrap(),
        division: None,
        iss: ISS.into(),
        aud: AUD.into(),
        exp: now + 600,
        nbf: Some(now - 1),
        iat: now,
    }
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[test]
fn jwks_tokens_verify_and_every_bad_token_is_refused_with_its_reason() {
    let k = keys();
    let auth = JwtAuthenticator::from_jwks(&k.jwks, ISS, AUD).unwrap();

    // One set of claims: two calls of `claims()` may fall in different seconds.
    let valid = claims();
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-1", &k.es, &valid))
            .unwrap(),
        valid
    );
    assert_eq!(
        auth.verify(&sign(Algorithm::RS256, "rsa-1", &k.rs, &valid))
            .unwrap(),
        valid
    );

    let mut c = claims();
    c.exp = chrono::Utc::now().timestamp() - 3600;
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-1", &k.es, &c)),
        Err(AuthError::Expired)
    );

    let mut c = claims();
    c.nbf = Some(chrono::Utc::now().timestamp() + 3600);
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-1", &k.es, &c)),
        Err(AuthError::NotYetValid)
    );

    let mut c = claims();
    c.aud = "someone-else".into();
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-1", &k.es, &c)),
        Err(AuthError::WrongAudience)
    );

    let mut c = claims();
    c.iss = "https://evil.example".into();
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-1", &k.es, &c)),
        Err(AuthError::WrongIssuer)
    );

    // Tampered: the payload of one token with the signature of another.
    let good = sign(Algorithm::ES256, "ec-1", &k.es, &claims());
    let mut forged_claims = claims();
    forged_claims.roles = vec!["provincial_bureau".into()];
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(auth.verify(&tampered), Err(AuthError::BadSignature));

    // Unsigned.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{forged_payload}.");
    assert_eq!(
        auth.verify(&unsigned),
        Err(AuthError::Algorithm("RS256 and ES256"))
    );

    // A symmetric token against public keys (the classic key-confusion attack).
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(k.jwks.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        auth.verify(&hs),
        Err(AuthError::Algorithm("RS256 and ES256"))
    );

    // A key the JWKS does not hold.
    let other = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let other = EncodingKey::from_ec_der(other.to_pkcs8_der().unwrap().as_bytes());
    assert_eq!(
        auth.verify(&sign(Algorithm::ES256, "ec-9", &other, &claims())),
        Err(AuthError::UnknownKey("ec-9".into()))
    );

    assert!(matches!(
        auth.verify("not-a-token"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn dev_tokens_survive_a_restart_and_foreign_ones_do_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = DevKey::load_or_create(dir.path()).unwrap();
    let token = key.issue(
        "dev-user",
        "org-dev",
        &["operator".to_string()],
        &"230100".parse().unwrap(),
        chrono::Duration::hours(1),
    );
    let reloaded = DevKey::load_or_create(dir.path()).unwrap();
    let claims = JwtAuthenticator::dev(&reloaded).verify(&token).unwrap();
    assert_eq!(claims.sub, "dev-user");
    assert_eq!(claims.roles, vec!["operator"]);

    let elsewhere = tempfile::tempdir().unwrap();
    let other = DevKey::load_or_create(elsewhere.path()).unwrap();
    assert_eq!(
        JwtAuthenticator::dev(&other).verify(&token),
        Err(AuthError::BadSignature)
    );

    let expired = key.issue(
        "u",
        "o",
        &[],
        &"230100".parse().unwrap(),
        chrono::Duration::hours(-2),
    );
    assert_eq!(
        JwtAuthenticator::dev(&key).verify(&expired),
        Err(AuthError::Expired)
    );
}

/// Serves whatever `doc` holds at any path, as an identity provider's JWKS endpoint.
async fn jwks_endpoint(doc: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/realms/pdp/certs", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let body = doc.lock().unwrap().clone();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_jwks_url_is_fetched_at_start_and_followed_when_keys_rotate() {
    let old = keys();
    let new = keys();
    let doc = std::sync::Arc::new(std::sync::Mutex::new(old.jwks.clone()));
    let url = jwks_endpoint(doc.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let auth = JwtAuthenticator::from_jwks_url(
        &url,
        ISS,
        AUD,
        std::time::Duration::from_millis(100),
        stop.clone(),
    )
    .await
    .unwrap();
    let before = sign(Algorithm::ES256, "ec-1", &old.es, &claims());
    let after = sign(Algorithm::ES256, "ec-1", &new.es, &claims());
    assert!(auth.verify(&before).is_ok());
    assert_eq!(auth.verify(&after).unwrap_err(), AuthError::BadSignature);

    // The provider rotates its key under the same id.
    *doc.lock().unwrap() = new.jwks.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while auth.verify(&after).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not followed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(auth.verify(&before).unwrap_err(), AuthError::BadSignature);

    // A broken document keeps the keys in hand.
    *doc.lock().unwrap() = "{\"keys\": []}".into();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(auth.verify(&after).is_ok());
    stop.cancel();

    let refused = JwtAuthenticator::from_jwks_url(
        "http://127.0.0.1:9/nothing",
        ISS,
        AUD,
        std::time::Duration::from_secs(60),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("127.0.0.1:9"), "{refused}");
}

#[tokio::test]
async fn a_token_with_an_unknown_key_id_brings_the_next_jwks_fetch_forward() {
    let old = keys();
    let doc = std::sync::Arc::new(std::sync::Mutex::new(old.jwks.clone()));
    let url = jwks_endpoint(doc.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    // A refresh far away: only the unknown key id can bring the new key in.
    let auth = JwtAuthenticator::following(
        &url,
        ISS,
        AUD,
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_millis(100),
        stop.clone(),
    )
    .await
    .unwrap();
    let new = keys();
    *doc.lock().unwrap() = new.jwks.replace("\"ec-1\"", "\"ec-2\"");
    let token = sign(Algorithm::ES256, "ec-2", &new.es, &claims());
    assert_eq!(
        auth.verify(&token).unwrap_err(),
        AuthError::UnknownKey("ec-2".into())
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while auth.verify(&token).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key was not fetched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.cancel();
}

#[test]
fn an_audience_list_is_accepted_and_a_token_living_too_long_is_not() {
    let k = keys();
    let auth = JwtAuthenticator::from_jwks(&k.jwks, ISS, AUD).unwrap();
    let mut listed = claims();
    listed.aud = Audience::Many(vec!["account".into(), AUD.into()]);
    let token = sign(Algorithm::ES256, "ec-1", &k.es, &listed);
    assert_eq!(
        auth.verify(&token).unwrap().sub,
        "u-1",
        "Keycloak's aud list"
    );
    listed.aud = Audience::Many(vec!["account".into()]);
    let token = sign(Algorithm::ES256, "ec-1", &k.es, &listed);
    assert_eq!(auth.verify(&token), Err(AuthError::WrongAudience));

    let mut long = claims();
    long.exp = long.iat + 7 * 24 * 3600;
    let token = sign(Algorithm::ES256, "ec-1", &k.es, &long);
    assert_eq!(
        auth.verify(&token),
        Err(AuthError::TooLong {
            lives: 7 * 24 * 3600,
            max: 24 * 3600
        })
    );
    let strict = JwtAuthenticator::from_jwks(&k.jwks, ISS, AUD)
        .unwrap()
        .with_max_lifetime(300);
    let token = sign(Algorithm::ES256, "ec-1", &k.es, &claims());
    assert!(matches!(
        strict.verify(&token),
        Err(AuthError::TooLong { lives: 600, .. })
    ));
}

#[test]
fn in_dev_another_hmac_algorithm_is_refused_naming_the_dev_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = DevKey::load_or_create(dir.path()).unwrap();
    let mut dev = claims();
    dev.iss = DevKey::ISSUER.into();
    dev.aud = DevKey::AUDIENCE.into();
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &dev,
        &EncodingKey::from_secret(b"whatever"),
    )
    .unwrap();
    let err = JwtAuthenticator::dev(&key).verify(&hs384).unwrap_err();
    assert_eq!(err, AuthError::Algorithm("HS256, the dev key's"));
    assert!(err.to_string().contains("HS256"), "{err}");
}
