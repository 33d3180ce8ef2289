//! The reference client against the Kafka-compatible broker (`TEST_KAFKA_BROKERS`; a missing
//! broker fails, it never skips): a listing pdp publishes reaches it, and pdp verifies and reads
//! the receipt and trade it sends back.
#![allow(clippy::unwrap_used)] // a test that cannot go on should stop with a panic

use std::time::Duration;

use chrono::Utc;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use pdp_exchange_client::{Exchange, LISTINGS_TOPIC, Policy, serve};
use pdp_kit::config::ExchangeConfig;
use pdp_kit::events::{Event, EventLog, KafkaLog};
use pdp_products::exchange::Exchanges;
use pdp_proto::pdp::exchange::v1 as inbound;
use pdp_proto::pdp::products::v1 as api;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

#[tokio::test]
async fn a_listing_reaches_the_exchange_and_pdp_verifies_its_signed_answers() {
    let brokers = pdp_kit::testing::kafka_brokers();
    let id = pdp_kit::testing::unique("dex").replace('_', "-");
    let exchange = Exchange {
        id: id.clone(),
        key: SigningKey::random(&mut rand::rngs::OsRng),
        receipts_topic: format!("{id}.receipts"),
        trades_topic: format!("{id}.trades"),
    };
    // tansu holds an empty fetch for the whole wait (`events.fetch_wait_ms`).
    let log = KafkaLog::connect(&brokers, 1, 1)
        .unwrap()
        .with_fetch_wait_ms(100);
    for topic in [
        LISTINGS_TOPIC,
        &exchange.receipts_topic,
        &exchange.trades_topic,
    ] {
        log.create_topic(topic).await.unwrap();
    }
    // pdp's listing, as the products service writes it.
    let listing = api::ProductListing {
        product_id: "0193-product".into(),
        exchange_id: id.clone(),
        registration_code: "230100-2026-000001".into(),
        name: "Arrivals per stop".into(),
        price: Some(api::Price {
            amount_fen: 30,
            unit: api::PriceUnit::PerCall as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let harbin = "230100".parse().unwrap();
    let event = Event::typed(
        &harbin,
        api::PRODUCT_LISTED,
        "0193-product",
        Utc::now(),
        &listing,
    );
    log.publish(LISTINGS_TOPIC, &[event]).await.unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[LISTINGS_TOPIC]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let policy = Policy {
        demo_buyer: Some("91230100MA1BUYER01".into()),
    };
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        serve(&consumer, &producer, &exchange, &policy, Some(1)),
    )
    .await
    .expect("the listing reaches the exchange")
    .unwrap();
    assert_eq!(answered, 1);

    // What pdp's products service does with the answers: verify, then read.
    let verifier = Exchanges::new(&[ExchangeConfig {
        id: id.clone(),
        name: "test exchange".into(),
        receipts_topic: exchange.receipts_topic.clone(),
        trades_topic: exchange.trades_topic.clone(),
        public_key: exchange
            .key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }])
    .unwrap();
    let topics = [
        exchange.receipts_topic.as_str(),
        exchange.trades_topic.as_str(),
    ];
    let mut subscription = log.subscribe(&format!("{id}-pdp"), &topics).await.unwrap();
    let mut received = Vec::new();
    for _ in 0..30 {
        let batch = subscription
            .next_batch(10, Duration::from_secs(1))
            .await
            .unwrap();
        received.extend(batch.into_iter().map(|d| d.event));
        if received.len() >= 2 {
            break;
        }
    }
    assert_eq!(received.len(), 2, "{received:?}");
    for event in &received {
        assert_eq!(verifier.verify(&event.data).unwrap().id, id, "{event:?}");
        assert_eq!(event.tenant.as_str(), "230100");
    }
    let receipt = received
        .iter()
        .find_map(|e| e.data_of(inbound::LISTING_ACCEPTED).unwrap())
        .expect("an accepting receipt");
    assert_eq!(receipt.product_id, "0193-product");
    assert!(receipt.exchange_listing_id.starts_with(&id), "{receipt:?}");
    let trade = received
        .iter()
        .find_map(|e| e.data_of(inbound::TRADE_COMPLETED).unwrap())
        .expect("a trade");
    assert_eq!((trade.quantity, trade.amount_fen), (1, 30));
    // Changed on the way, it no longer verifies.
    let mut altered = received[0].data.clone();
    altered["product_id"] = serde_json::json!("another");
    assert!(verifier.verify(&altered).is_err());
}
