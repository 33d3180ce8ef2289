//! The rate-limit contract, on both limiters: in the process, and in the real Redis shared by
//! two gateway replicas.

use std::time::Duration;

use pdp_gateway::limits::{Admission, Limit, LocalLimiter, RateLimiter, RedisLimiter};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn key() -> String {
    format!("test:{}", uuid::Uuid::now_v7().simple())
}

const LIMIT: Limit = Limit {
    per_second: 2.0,
    burst: 3,
};

async fn a_burst_then_refusals_then_refill(first: &dyn RateLimiter, second: &dyn RateLimiter) {
    let key = key();
    // The burst is shared, whichever replica answers.
    assert_eq!(first.admit(&key, LIMIT).await, Admission::Admitted);
    assert_eq!(second.admit(&key, LIMIT).await, Admission::Admitted);
    assert_eq!(first.admit(&key, LIMIT).await, Admission::Admitted);
    let Admission::Limited(wait) = second.admit(&key, LIMIT).await else {
        panic!("the fourth request within the burst must be limited");
    };
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        first.admit(&key, LIMIT).await,
        Admission::Admitted,
        "refilled after the wait"
    );
    let other = self::key();
    assert_eq!(
        first.admit(&other, LIMIT).await,
        Admission::Admitted,
        "buckets are per key"
    );
}

#[tokio::test]
async fn local_limiter() {
    let limiter = LocalLimiter::default();
    a_burst_then_refusals_then_refill(&limiter, &limiter).await;
}

#[tokio::test]
async fn redis_limiter_shared_by_two_replicas() {
    let a = RedisLimiter::connect(&redis_url())
        .await
        .expect("Redis answers (see README)");
    let b = RedisLimiter::connect(&redis_url())
        .await
        .expect("Redis answers (see README)");
    a_burst_then_refusals_then_refill(&a, &b).await;
}

mod idempotency {
    use std::time::Duration;

    use pdp_gateway::idempotency::{
        Answer, Claim, IdempotencyStore, LocalIdempotency, RedisIdempotency,
    };

    /// How long a claimed request may run in these tests.
    const RUNS: Duration = Duration::from_secs(60);

    async fn a_key_replays_its_first_answer(
        first: &dyn IdempotencyStore,
        second: &dyn IdempotencyStore,
    ) {
        let key = super::key();
        let answer = Answer {
            status: 200,
            body: br#"{"id":"w-1"}"#.to_vec(),
        };
        assert_eq!(first.claim(&key, "body-a", RUNS).await.unwrap(), Claim::New);
        assert_eq!(
            second.claim(&key, "body-a", RUNS).await.unwrap(),
            Claim::Running,
            "a retry while the first runs is told so, on any replica"
        );
        first.complete(&key, "body-a", Some(answer.clone())).await;
        assert_eq!(
            second.claim(&key, "body-a", RUNS).await.unwrap(),
            Claim::Replay(answer)
        );
        assert_eq!(
            second.claim(&key, "body-b", RUNS).await.unwrap(),
            Claim::Mismatch,
            "the same key with another body"
        );
        // A request that failed on our side releases its key: the retry runs.
        let other = super::key();
        assert_eq!(first.claim(&other, "x", RUNS).await.unwrap(), Claim::New);
        first.complete(&other, "x", None).await;
        assert_eq!(second.claim(&other, "x", RUNS).await.unwrap(), Claim::New);
        // A gateway that died mid-request never completes its claim: once the request could no
        // longer be running, a retry runs instead of being told to wait for the rest of the day.
        let orphan = super::key();
        let short = Duration::from_millis(300);
        assert_eq!(first.claim(&orphan, "y", short).await.unwrap(), Claim::New);
        assert_eq!(
            second.claim(&orphan, "y", short).await.unwrap(),
            Claim::Running
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(second.claim(&orphan, "y", short).await.unwrap(), Claim::New);
        // A completed answer is kept for the day, whatever the claim's hold was.
        second
            .complete(
                &orphan,
                "y",
                Some(Answer {
                    status: 200,
                    body: b"{}".to_vec(),
                }),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            first.claim(&orphan, "y", short).await.unwrap(),
            Claim::Replay(_)
        ));
    }

    #[tokio::test]
    async fn in_the_process() {
        let store = LocalIdempotency::default();
        a_key_replays_its_first_answer(&store, &store).await;
    }

    #[tokio::test]
    async fn in_redis_shared_by_two_replicas() {
        let a = RedisIdempotency::connect(&super::redis_url())
            .await
            .expect("Redis answers (see README)");
        let b = RedisIdempotency::connect(&super::redis_url())
            .await
            .expect("Redis answers (see README)");
        a_key_replays_its_first_answer(&a, &b).await;
    }
}
