//! The data exchanges of the deployment and what makes their answers trustworthy: each receipt
//! and trade carries the exchange's ES256 signature over the canonical JSON of its data
//! (`proto/pdp/exchange/v1/events.proto` says how an exchange makes it). Nothing unsigned,
//! unknown or altered is applied.

use std::collections::HashMap;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use pdp_kit::config::ExchangeConfig;
use serde_json::Value;

/// Why an exchange's event is not applied (it is parked with this reason).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unverified {
    #[error("no exchange `{0}` is configured")]
    UnknownExchange(String),
    #[error("exchange `{0}` has no public key configured: its events cannot be verified")]
    NoKey(String),
    #[error("the event's data names no exchange_id")]
    NoExchange,
    #[error("the event is unsigned (no `signature`)")]
    Unsigned,
    #[error("`signature` is not base64 of a 64-byte ES256 signature")]
    Malformed,
    #[error("the signature does not verify with exchange `{0}`'s key")]
    BadSignature(String),
}

#[derive(Debug)]
struct Exchange {
    config: ExchangeConfig,
    key: Option<VerifyingKey>,
}

/// The configured exchanges, by id, with their keys read once.
#[derive(Debug, Default)]
pub struct Exchanges {
    by_id: HashMap<String, Exchange>,
}

impl Exchanges {
    /// Reads each exchange's PEM key; one that does not read stops the service at start, where
    /// the configuration is fixed, rather than parking every event of that exchange later.
    pub fn new(configs: &[ExchangeConfig]) -> anyhow::Result<Self> {
        let mut by_id = HashMap::new();
        for c in configs {
            let key =
                if c.public_key.trim().is_empty() {
                    None
                } else {
                    Some(VerifyingKey::from_public_key_pem(c.public_key.trim()).map_err(|e| {
                    anyhow::anyhow!(
                        "products.exchanges `{}`: public_key is no PEM P-256 public key: {e}",
                        c.id
                    )
                })?)
                };
            let exchange = Exchange {
                config: c.clone(),
                key,
            };
            by_id.insert(c.id.clone(), exchange);
        }
        Ok(Self { by_id })
    }

    pub fn get(&self, id: &str) -> Option<&ExchangeConfig> {
        self.by_id.get(id).map(|e| &e.config)
    }

    pub fn all(&self) -> impl Iterator<Item = &ExchangeConfig> {
        let mut all: Vec<_> = self.by_id.values().map(|e| &e.config).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.into_iter()
    }

    /// The topics the exchanges answer on.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .by_id
            .values()
            .flat_map(|e| {
                [
                    e.config.receipts_topic.clone(),
                    e.config.trades_topic.clone(),
                ]
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The exchange that signed `data`, when its signature verifies.
    pub fn verify(&self, data: &Value) -> Result<&ExchangeConfig, Unverified> {
        let id = data
            .get("exchange_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Unverified::NoExchange)?;
        let exchange = self
            .by_id
            .get(id)
            .ok_or_else(|| Unverified::UnknownExchange(id.to_string()))?;
        let key = exchange
            .key
            .as_ref()
            .ok_or_else(|| Unverified::NoKey(id.to_string()))?;
        let signature = data
            .get("signature")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Unverified::Unsigned)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| Unverified::Malformed)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| Unverified::Malformed)?;
        key.verify(signing_input(data).as_bytes(), &signature)
            .map_err(|_| Unverified::BadSignature(id.to_string()))?;
        Ok(&exchange.config)
    }
}

/// What an exchange signs: its event's data without `signature`, as canonical JSON.
pub fn signing_input(data: &Value) -> String {
    let mut unsigned = data.clone();
    if let Value::Object(members) = &mut unsigned {
        members.remove("signature");
    }
    canonical(&unsigned)
}

/// JSON with object members sorted by name and no whitespace (RFC 8785 for the strings, integers
/// and booleans proto3 JSON holds), whatever order the parser kept.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(&members[name.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    use serde_json::json;

    use super::*;

    fn exchange(key: &SigningKey) -> Exchanges {
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        Exchanges::new(&[ExchangeConfig {
            id: "hlj-dex".into(),
            name: "Heilongjiang data exchange".into(),
            receipts_topic: "r".into(),
            trades_topic: "t".into(),
            public_key: pem,
        }])
        .unwrap()
    }

    fn signed(key: &SigningKey, mut data: Value) -> Value {
        let signature: Signature = key.sign(signing_input(&data).as_bytes());
        data["signature"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()));
        data
    }

    #[test]
    fn canonical_json_sorts_members_at_every_depth() {
        let v = json!({"b": 1, "a": {"d": [true, "x\"y"], "c": null}});
        assert_eq!(canonical(&v), r#"{"a":{"c":null,"d":[true,"x\"y"]},"b":1}"#);
    }

    #[test]
    fn only_the_configured_exchanges_signature_over_this_very_data_verifies() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let exchanges = exchange(&key);
        let trade = json!({"trade_id": "t1", "exchange_id": "hlj-dex", "amount_fen": "300"});
        let good = signed(&key, trade.clone());
        assert_eq!(exchanges.verify(&good).unwrap().id, "hlj-dex");

        let mut altered = good.clone();
        altered["amount_fen"] = json!("3");
        assert_eq!(
            exchanges.verify(&altered),
            Err(Unverified::BadSignature("hlj-dex".into()))
        );
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        assert!(matches!(
            exchanges.verify(&signed(&other, trade.clone())),
            Err(Unverified::BadSignature(_))
        ));
        assert_eq!(exchanges.verify(&trade), Err(Unverified::Unsigned));
        let mut elsewhere = good;
        elsewhere["exchange_id"] = json!("sh-dex");
        assert_eq!(
            exchanges.verify(&elsewhere),
            Err(Unverified::UnknownExchange("sh-dex".into()))
        );
    }
}
