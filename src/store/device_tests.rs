//! The device authorization grant on both backends (see `tests` for how they
//! run). Times are made up around `T`, far in the future: an insert compares the expiry of a
//! code holding the same user code with the database's clock.

use super::tests::{on_both_backends, open_store, run_postgres, run_sqlite};
use super::*;

on_both_backends!(
    device_approval_is_taken_once,
    device_denial,
    device_pending_and_slow_down,
    device_expiry,
    device_user_code_collision,
    device_poll_race_has_one_winner,
    device_decision_race_has_one_winner,
    purge_removes_expired_device_codes,
    device_survives_restart,
);

const T: i64 = 4_000_000_000;
const ROUNDS: usize = 20;

fn device(hash: &str, user_code: &str) -> DeviceCodeRecord {
    DeviceCodeRecord {
        device_code_hash: hash.into(),
        user_code: user_code.into(),
        client_id: "flytectl".into(),
        scopes: vec!["all".into(), "offline".into()],
        interval_secs: 5,
        expires_at: T + 600,
    }
}

fn approval(family: &str) -> DeviceApproval {
    DeviceApproval {
        subject: "alice".into(),
        user_info: r#"{"name":"Alice","email":"alice@example.com"}"#.into(),
        family_id: family.into(),
        auth_time: T + 20,
    }
}

/// Inserts a code and approves it at `T + 30`.
async fn approved(store: &Arc<dyn Store>, d: &DeviceCodeRecord, family: &str) {
    store.insert_device_code(d).await.unwrap();
    let a = approval(family);
    store
        .decide_device_code(&d.user_code, Some(&a), T + 30)
        .await
        .unwrap();
}

async fn device_approval_is_taken_once(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let d = device("d1", "WDJBMJHT");
    store.insert_device_code(&d).await.unwrap();
    assert_eq!(
        store.find_device_by_user_code("WDJBMJHT", T).await,
        Ok(d.clone())
    );
    let unknown = store.find_device_by_user_code("NOPE", T).await;
    assert_eq!(unknown, Err(StoreError::NotFound));
    assert_eq!(
        store.poll_device_code("d1", T + 5).await,
        Ok(DevicePoll::Pending)
    );

    let a = approval("fam");
    let decide = |approval| store.decide_device_code("WDJBMJHT", approval, T + 30);
    decide(Some(&a)).await.unwrap();
    // Decided: no longer found, and the decision is final.
    let found = store.find_device_by_user_code("WDJBMJHT", T + 30).await;
    assert_eq!(found, Err(StoreError::NotFound));
    assert_eq!(decide(Some(&a)).await, Err(StoreError::NotFound));
    assert_eq!(decide(None).await, Err(StoreError::NotFound));

    // Taken by the first poll (however soon after the previous one), then never again.
    let first = store.poll_device_code("d1", T + 6).await.unwrap();
    assert_eq!(first, DevicePoll::Approved(d.clone(), a));
    for now in [T + 6, T + 100] {
        let again = store.poll_device_code("d1", now).await;
        assert_eq!(again, Ok(DevicePoll::AlreadyUsed));
    }
    let unknown = store.poll_device_code("nope", T).await;
    assert_eq!(unknown, Err(StoreError::NotFound));

    // No scopes round-trip as empty; a scope that would not survive being space-joined is
    // refused.
    let bare = DeviceCodeRecord {
        scopes: vec![],
        ..device("d2", "BARE")
    };
    store.insert_device_code(&bare).await.unwrap();
    assert_eq!(store.find_device_by_user_code("BARE", T).await, Ok(bare));
    for bad in ["a b", ""] {
        let d = DeviceCodeRecord {
            scopes: vec!["all".into(), bad.into()],
            ..device("d3", "BAD")
        };
        let err = store.insert_device_code(&d).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    store.close().await;
}

async fn device_denial(t: DatabaseTarget) {
    let store = open_store(&t).await;
    store
        .insert_device_code(&device("d1", "DENY"))
        .await
        .unwrap();
    store
        .decide_device_code("DENY", None, T + 10)
        .await
        .unwrap();
    for now in [T + 11, T + 12] {
        assert_eq!(
            store.poll_device_code("d1", now).await,
            Ok(DevicePoll::Denied)
        );
    }
    let a = approval("fam");
    let late = store.decide_device_code("DENY", Some(&a), T + 20).await;
    assert_eq!(late, Err(StoreError::NotFound));
    let found = store.find_device_by_user_code("DENY", T + 20).await;
    assert_eq!(found, Err(StoreError::NotFound));
    let unknown = store.decide_device_code("NOPE", None, T).await;
    assert_eq!(unknown, Err(StoreError::NotFound));
    store.close().await;
}

async fn device_pending_and_slow_down(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let d = device("d1", "SLOW");
    store.insert_device_code(&d).await.unwrap();
    let interval = || async {
        let found = store.find_device_by_user_code("SLOW", T).await.unwrap();
        found.interval_secs
    };
    // (poll time, outcome, interval afterwards); the interval counts from the previous poll.
    let polls = [
        (T, DevicePoll::Pending, 5),        // the first poll is never too soon
        (T + 4, DevicePoll::SlowDown, 10),  // 4 < 5
        (T + 13, DevicePoll::SlowDown, 15), // 13 - 4 < 10
        (T + 28, DevicePoll::Pending, 15),  // 28 - 13 == 15
        (T + 28, DevicePoll::SlowDown, 20),
        (T + 48, DevicePoll::Pending, 20),
    ];
    for (now, want, want_interval) in polls {
        assert_eq!(store.poll_device_code("d1", now).await, Ok(want), "{now}");
        assert_eq!(interval().await, want_interval, "{now}");
    }
    // The approval hands back the grown interval.
    let a = approval("fam");
    store
        .decide_device_code("SLOW", Some(&a), T + 50)
        .await
        .unwrap();
    let taken = store.poll_device_code("d1", T + 50).await.unwrap();
    let grown = DeviceCodeRecord {
        interval_secs: 20,
        ..d
    };
    assert_eq!(taken, DevicePoll::Approved(grown, a));
    store.close().await;
}

async fn device_expiry(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let d = device("d1", "LATE");
    store.insert_device_code(&d).await.unwrap();
    let expiry = d.expires_at;
    assert!(store
        .find_device_by_user_code("LATE", expiry - 1)
        .await
        .is_ok());
    let found = store.find_device_by_user_code("LATE", expiry).await;
    assert_eq!(found, Err(StoreError::NotFound));
    assert_eq!(
        store.poll_device_code("d1", expiry).await,
        Ok(DevicePoll::Expired)
    );
    let a = approval("fam");
    let late = store.decide_device_code("LATE", Some(&a), expiry).await;
    assert_eq!(late, Err(StoreError::NotFound));
    // Approved in time but polled too late: expired, and a denial alike.
    approved(&store, &device("d2", "LATE2"), "fam").await;
    assert_eq!(
        store.poll_device_code("d2", expiry).await,
        Ok(DevicePoll::Expired)
    );
    store
        .insert_device_code(&device("d3", "LATE3"))
        .await
        .unwrap();
    store.decide_device_code("LATE3", None, T).await.unwrap();
    assert_eq!(
        store.poll_device_code("d3", expiry + 1).await,
        Ok(DevicePoll::Expired)
    );
    store.close().await;
}

async fn device_user_code_collision(t: DatabaseTarget) {
    let store = open_store(&t).await;
    store
        .insert_device_code(&device("d1", "ABCD"))
        .await
        .unwrap();
    let clash = store.insert_device_code(&device("d2", "ABCD")).await;
    assert_eq!(clash, Err(StoreError::AlreadyExists));
    let same_hash = store.insert_device_code(&device("d1", "EFGH")).await;
    assert_eq!(same_hash, Err(StoreError::AlreadyExists));
    assert_eq!(
        store.poll_device_code("d2", T).await,
        Err(StoreError::NotFound)
    );
    let found = store.find_device_by_user_code("EFGH", T).await;
    assert_eq!(found, Err(StoreError::NotFound));
    // Decided but unexpired still holds its user code.
    let a = approval("fam");
    store.decide_device_code("ABCD", Some(&a), T).await.unwrap();
    let clash = store.insert_device_code(&device("d3", "ABCD")).await;
    assert_eq!(clash, Err(StoreError::AlreadyExists));

    // A holder expired by the database's clock (1970) gives the user code up.
    let old = DeviceCodeRecord {
        expires_at: 1_000,
        ..device("old", "REUSE")
    };
    store.insert_device_code(&old).await.unwrap();
    let new = device("new", "REUSE");
    store.insert_device_code(&new).await.unwrap();
    assert_eq!(
        store.poll_device_code("old", 0).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.find_device_by_user_code("REUSE", T).await, Ok(new));
    store.close().await;
}

async fn device_poll_race_has_one_winner(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    for round in 0..ROUNDS {
        let (hash, user_code) = (format!("race-{round}"), format!("RACE{round}"));
        a.insert_device_code(&device(&hash, &user_code))
            .await
            .unwrap();
        // Two first polls at once: one is first, the other too soon after it.
        let (ra, rb) = tokio::join!(a.poll_device_code(&hash, T), b.poll_device_code(&hash, T));
        let mut pending = [ra.unwrap(), rb.unwrap()];
        pending.sort_by_key(|p| matches!(p, DevicePoll::Pending));
        assert_eq!(
            pending,
            [DevicePoll::SlowDown, DevicePoll::Pending],
            "round {round}"
        );

        let approval = approval(&format!("fam-{round}"));
        b.decide_device_code(&user_code, Some(&approval), T + 30)
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            a.poll_device_code(&hash, T + 40),
            b.poll_device_code(&hash, T + 40)
        );
        let mut outcomes = [ra.unwrap(), rb.unwrap()];
        outcomes.sort_by_key(|p| matches!(p, DevicePoll::Approved(..)));
        assert!(
            matches!(
                outcomes,
                [DevicePoll::AlreadyUsed, DevicePoll::Approved(..)]
            ),
            "round {round}: {outcomes:?}"
        );
    }
    a.close().await;
    b.close().await;
}

async fn device_decision_race_has_one_winner(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    for round in 0..ROUNDS {
        let (hash, user_code) = (format!("race-{round}"), format!("RACE{round}"));
        a.insert_device_code(&device(&hash, &user_code))
            .await
            .unwrap();
        let approval = approval("fam");
        let (approve, deny) = tokio::join!(
            a.decide_device_code(&user_code, Some(&approval), T + 30),
            b.decide_device_code(&user_code, None, T + 30)
        );
        let polled = a.poll_device_code(&hash, T + 40).await.unwrap();
        match (approve, deny) {
            (Ok(()), Err(StoreError::NotFound)) => {
                assert!(matches!(polled, DevicePoll::Approved(..)), "round {round}")
            }
            (Err(StoreError::NotFound), Ok(())) => {
                assert_eq!(polled, DevicePoll::Denied, "round {round}")
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    a.close().await;
    b.close().await;
}

async fn purge_removes_expired_device_codes(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let old = DeviceCodeRecord {
        expires_at: T + 100,
        ..device("old", "OLD")
    };
    approved(&store, &old, "f_old").await;
    approved(&store, &device("new", "NEW"), "f_new").await;
    store
        .insert_device_code(&device("pending", "PEND"))
        .await
        .unwrap();
    // Revoked families, kept while a device code still refers to them.
    for family in ["f_old", "f_new"] {
        store.revoke_family(family, T).await.unwrap();
    }

    // The old code, then family f_old, which nothing refers to any more.
    assert_eq!(store.purge_expired(T + 100, 0).await.unwrap(), 2);
    assert_eq!(store.purge_expired(T + 100, 0).await.unwrap(), 0);
    assert_eq!(
        store.poll_device_code("old", T).await,
        Err(StoreError::NotFound)
    );
    let new = store.poll_device_code("new", T + 100).await.unwrap();
    assert!(matches!(new, DevicePoll::Approved(..)), "{new:?}");
    let pending = store.poll_device_code("pending", T + 100).await;
    assert_eq!(pending, Ok(DevicePoll::Pending));
    // At their expiry: both codes and family f_new.
    assert_eq!(store.purge_expired(T + 600, 0).await.unwrap(), 3);
    assert_eq!(
        store.poll_device_code("new", T).await,
        Err(StoreError::NotFound)
    );
    store.close().await;
}

async fn device_survives_restart(t: DatabaseTarget) {
    let store = open_store(&t).await;
    store
        .insert_device_code(&device("pending", "PEND"))
        .await
        .unwrap();
    assert_eq!(
        store.poll_device_code("pending", T).await,
        Ok(DevicePoll::Pending)
    );
    approved(&store, &device("approved", "APPR"), "f1").await;
    approved(&store, &device("taken", "TAKE"), "f2").await;
    store.poll_device_code("taken", T + 30).await.unwrap();
    store
        .insert_device_code(&device("denied", "DENY"))
        .await
        .unwrap();
    store.decide_device_code("DENY", None, T).await.unwrap();
    store.close().await;

    let store = open_store(&t).await;
    // The previous poll's time survived.
    let again = store.poll_device_code("pending", T + 1).await;
    assert_eq!(again, Ok(DevicePoll::SlowDown));
    let found = store.find_device_by_user_code("PEND", T).await.unwrap();
    assert_eq!(found.interval_secs, 10);
    let taken = store.poll_device_code("approved", T + 40).await.unwrap();
    assert_eq!(
        taken,
        DevicePoll::Approved(device("approved", "APPR"), approval("f1"))
    );
    let polls = [
        ("taken", DevicePoll::AlreadyUsed),
        ("denied", DevicePoll::Denied),
    ];
    for (hash, want) in polls {
        assert_eq!(
            store.poll_device_code(hash, T + 40).await,
            Ok(want),
            "{hash}"
        );
    }
    let clash = store.insert_device_code(&device("other", "PEND")).await;
    assert_eq!(clash, Err(StoreError::AlreadyExists));
    store.close().await;
}
