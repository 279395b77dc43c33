//! Single use of exchanged tokens on both backends (see `tests` for how they run).

use super::tests::{on_both_backends, open_store, run_postgres, run_sqlite};
use super::*;

on_both_backends!(
    an_exchanged_token_is_remembered_until_it_expires,
    a_replay_race_across_instances_has_one_winner,
    a_burst_of_tokens_each_presented_four_times_has_one_winner_each,
);

async fn an_exchanged_token_is_remembered_until_it_expires(t: DatabaseTarget) {
    let store = open_store(&t).await;
    assert!(store.remember_exchanged_token("a", 200, 100).await.unwrap());
    // Presented again while remembered: refused, and the row is unchanged.
    assert!(!store.remember_exchanged_token("a", 900, 150).await.unwrap());
    assert!(!store.remember_exchanged_token("a", 900, 199).await.unwrap());
    // Another token is independent.
    assert!(store.remember_exchanged_token("b", 300, 150).await.unwrap());
    // Purged once expired: only `a` (expires_at 200 <= 250).
    assert_eq!(store.purge_expired(250, 0).await.unwrap(), 1);
    assert!(!store.remember_exchanged_token("b", 900, 250).await.unwrap());
    // An expired row that was not purged yet is taken over.
    assert!(store.remember_exchanged_token("b", 900, 300).await.unwrap());
    assert!(!store.remember_exchanged_token("b", 900, 301).await.unwrap());
    store.close().await;
}

/// Two instances on one database (two replicas): of 16 concurrent presentations of one token
/// exactly one is accepted.
async fn a_replay_race_across_instances_has_one_winner(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tries.spawn(async move {
            s.remember_exchanged_token("raced", 1_000, 10)
                .await
                .unwrap()
        });
    }
    let won = tries.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1);
    a.close().await;
    b.close().await;
}

/// A burst on one instance: 16 tokens, each presented 4 times at once; each is accepted
/// exactly once, and all are remembered afterwards.
async fn a_burst_of_tokens_each_presented_four_times_has_one_winner_each(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let mut tries = tokio::task::JoinSet::new();
    for round in 0..4 {
        for token in 0..16 {
            let s = store.clone();
            tries.spawn(async move {
                let id = format!("burst-{token}");
                let won = s.remember_exchanged_token(&id, 1_000, 10).await.unwrap();
                (token, round, won)
            });
        }
    }
    let mut winners = [0; 16];
    for (token, _, won) in tries.join_all().await {
        winners[token] += usize::from(won);
    }
    assert_eq!(winners, [1; 16]);
    for token in 0..16 {
        let id = format!("burst-{token}");
        assert!(!store
            .remember_exchanged_token(&id, 1_000, 11)
            .await
            .unwrap());
    }
    store.close().await;
}
