//! `pdp-exchange-client keygen | serve`: see README.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use pdp_exchange_client::{Exchange, LISTINGS_TOPIC, Policy, serve};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

#[derive(Parser, Debug)]
#[command(about = "The reference data-exchange client of pdp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a new P-256 private key (PKCS#8 PEM) and prints its public key, which pdp's
    /// deployment configures for this exchange.
    Keygen {
        #[arg(long)]
        private_key: PathBuf,
    },
    /// Answers the listings naming this exchange until stopped.
    Serve {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        exchange_id: String,
        #[arg(long)]
        private_key: PathBuf,
        #[arg(long)]
        receipts_topic: String,
        #[arg(long)]
        trades_topic: String,
        /// Also buy one unit of each accepted listing as this organization.
        #[arg(long)]
        demo_buyer: Option<String>,
        /// Stop after answering this many listings.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keygen { private_key } => {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF)?;
            std::fs::write(&private_key, pem.as_bytes())
                .with_context(|| format!("writing {}", private_key.display()))?;
            print!("{}", key.verifying_key().to_public_key_pem(LineEnding::LF)?);
            Ok(())
        }
        Command::Serve {
            brokers,
            exchange_id,
            private_key,
            receipts_topic,
            trades_topic,
            demo_buyer,
            limit,
        } => {
            let pem = std::fs::read_to_string(&private_key)
                .with_context(|| format!("reading {}", private_key.display()))?;
            let exchange = Exchange {
                key: SigningKey::from_pkcs8_pem(&pem).context("the private key")?,
                id: exchange_id.clone(),
                receipts_topic,
                trades_topic,
            };
            let consumer: StreamConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &exchange_id)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()?;
            consumer.subscribe(&[LISTINGS_TOPIC])?;
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create()?;
            let policy = Policy { demo_buyer };
            let n = serve(&consumer, &producer, &exchange, &policy, limit).await?;
            eprintln!("answered {n} listings");
            Ok(())
        }
    }
}
