//! The reference data-exchange client (see README.md): reads pdp's listings, answers each listing
//! naming this exchange with a signed receipt, and reports trades, signed. Self-contained on
//! purpose: an exchange's team copies this crate, not pdp.

use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// Where pdp publishes listings (第二十四条).
pub const LISTINGS_TOPIC: &str = "pdp.exchange.listings";
pub const LISTED: &str = "pdp.products.product.listed";
pub const UPDATED: &str = "pdp.products.product.updated";
pub const DELISTED: &str = "pdp.products.product.delisted";
pub const ACCEPTED: &str = "pdp.exchange.listing.accepted";
pub const REJECTED: &str = "pdp.exchange.listing.rejected";
pub const TRADE: &str = "pdp.exchange.trade.completed";

/// One exchange: its id in pdp's configuration, its signing key and its topics.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub id: String,
    pub key: SigningKey,
    pub receipts_topic: String,
    pub trades_topic: String,
}

/// A listing event as read from `pdp.exchange.listings`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingEvent {
    /// `pdp.products.product.listed`, `.updated` or `.delisted`.
    pub event_type: String,
    /// The product's tenant (`ce_tenant`): what a receipt and a trade name back.
    pub tenant: String,
    /// The `ProductListing` message as JSON.
    pub data: Value,
}

impl ListingEvent {
    /// Reads a record's CloudEvents headers and JSON value.
    pub fn from_record(headers: &[(String, String)], payload: &[u8]) -> anyhow::Result<Self> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("the record has no {name} header"))
        };
        Ok(Self {
            event_type: header("ce_type")?,
            tenant: header("ce_tenant")?,
            data: serde_json::from_slice(payload).context("the record's value is no JSON")?,
        })
    }

    pub fn field(&self, name: &str) -> &str {
        self.data[name].as_str().unwrap_or_default()
    }
}

/// A record this exchange sends pdp.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    /// The record key: the product or trade id.
    pub key: String,
    pub headers: Vec<(&'static str, String)>,
    pub data: Value,
}

/// JSON with object members sorted by name, no whitespace: what is signed.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort();
            let inner: Vec<String> = names
                .into_iter()
                .map(|n| format!("{}:{}", Value::String(n.clone()), canonical(&members[n])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

impl Exchange {
    /// `data` with its `signature`: ES256 over the canonical JSON of the rest.
    pub fn sign(&self, mut data: Value) -> Value {
        if let Value::Object(members) = &mut data {
            members.remove("signature");
        }
        let signature: Signature = self.key.sign(canonical(&data).as_bytes());
        data["signature"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()));
        data
    }

    fn record(&self, topic: &str, ty: &str, tenant: &str, subject: &str, data: Value) -> Outgoing {
        let headers = vec![
            ("ce_specversion", "1.0".to_string()),
            ("ce_id", uuid::Uuid::now_v7().to_string()),
            ("ce_source", format!("/exchanges/{}", self.id)),
            ("ce_type", ty.to_string()),
            ("ce_subject", subject.to_string()),
            (
                "ce_time",
                Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("ce_tenant", tenant.to_string()),
            ("content-type", "application/json".to_string()),
        ];
        Outgoing {
            topic: topic.to_string(),
            key: subject.to_string(),
            headers,
            data: self.sign(data),
        }
    }

    /// The receipt of `listing`: accepted under `Ok(listing id)`, or rejected with `Err(reason)`.
    pub fn receipt(&self, listing: &ListingEvent, answer: Result<String, String>) -> Outgoing {
        let product = listing.field("product_id");
        let (ty, listing_id, reason) = match answer {
            Ok(id) => (ACCEPTED, id, String::new()),
            Err(reason) => (REJECTED, String::new(), reason),
        };
        let data = json!({
            "product_id": product,
            "exchange_id": self.id,
            "exchange_listing_id": listing_id,
            "reason": reason,
        });
        self.record(&self.receipts_topic, ty, &listing.tenant, product, data)
    }

    /// A trade of `quantity` units of the listed product to `buyer` for `amount_fen`.
    pub fn trade(
        &self,
        listing: &ListingEvent,
        trade_id: &str,
        buyer: &str,
        quantity: u32,
        amount_fen: i64,
        at: DateTime<Utc>,
    ) -> Outgoing {
        let data = json!({
            "trade_id": trade_id,
            "exchange_id": self.id,
            "product_id": listing.field("product_id"),
            "buyer_organization": buyer,
            "quantity": quantity,
            // proto3 JSON writes 64-bit integers as strings.
            "amount_fen": amount_fen.to_string(),
            "trade_time": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        self.record(&self.trades_topic, TRADE, &listing.tenant, trade_id, data)
    }
}

/// What `serve` does with each listing naming this exchange.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Buy one unit of each accepted listing at its price as this organization (a demonstration
    /// and what pdp's tests use); `None` sells nothing.
    pub demo_buyer: Option<String>,
}

/// What to send for one listing event: nothing unless it names this exchange and is `listed`.
pub fn answer(exchange: &Exchange, policy: &Policy, listing: &ListingEvent) -> Vec<Outgoing> {
    if listing.field("exchange_id") != exchange.id || listing.event_type != LISTED {
        return Vec::new();
    }
    let product = listing.field("product_id").to_string();
    if product.is_empty() {
        return vec![exchange.receipt(listing, Err("the listing names no product".into()))];
    }
    let short: String = product
        .chars()
        .rev()
        .take(8)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let mut out = vec![exchange.receipt(listing, Ok(format!("{}-{short}", exchange.id)))];
    if let Some(buyer) = &policy.demo_buyer {
        let price = listing.data["price"]["amount_fen"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| listing.data["price"]["amount_fen"].as_i64())
            .unwrap_or(0);
        let trade_id = format!("{}-{}", exchange.id, uuid::Uuid::now_v7());
        out.push(exchange.trade(listing, &trade_id, buyer, 1, price, Utc::now()));
    }
    out
}

/// Sends `record` and waits until the broker has it.
pub async fn send(producer: &FutureProducer, record: &Outgoing) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(&record.data)?;
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let r = FutureRecord::to(&record.topic)
        .key(&record.key)
        .payload(&payload)
        .headers(headers);
    producer
        .send(r, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow!("sending to {}: {e}", record.topic))?;
    Ok(())
}

/// Reads listings from `consumer` and answers them, until `limit` listings naming this exchange
/// were answered (`None`: forever). Commits after each answer is sent: a crash answers again,
/// which pdp takes as the same receipt.
pub async fn serve(
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    exchange: &Exchange,
    policy: &Policy,
    limit: Option<usize>,
) -> anyhow::Result<usize> {
    let mut answered = 0;
    while limit.is_none_or(|l| answered < l) {
        let message = consumer.recv().await?;
        let headers: Vec<(String, String)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let listing = ListingEvent::from_record(&headers, message.payload().unwrap_or_default());
        match listing {
            Ok(listing) => {
                let out = answer(exchange, policy, &listing);
                for record in &out {
                    send(producer, record).await?;
                }
                answered += usize::from(!out.is_empty());
            }
            Err(e) => eprintln!("skipping a record that is no listing: {e}"),
        }
        consumer.commit_message(&message, rdkafka::consumer::CommitMode::Sync)?;
    }
    Ok(answered)
}
