//! A grant's one transaction on both backends: the code or refresh token spent and the new
//! tokens stored together, one winner of a race, no issuance past a family revocation.

use super::authz_tests::{code, issuance, jtis, refresh, ROUNDS};
use super::tests::{on_both_backends, open_store, run_postgres, run_sqlite, Behind};
use super::*;

on_both_backends!(
    a_grant_spends_and_stores_in_one_transaction,
    a_spend_race_has_one_winner_and_the_loser_stores_nothing,
    an_issuance_never_escapes_a_family_revocation,
);

async fn a_grant_spends_and_stores_in_one_transaction(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let c = code("c1", "fam");
    store.insert_auth_code(&c).await.unwrap();
    let found = store.find_auth_code("c1").await.unwrap();
    assert_eq!(
        found,
        Found {
            record: c.clone(),
            used: false,
            used_at: None,
            family_revoked: false
        }
    );
    assert_eq!(
        store.find_auth_code("nope").await,
        Err(StoreError::NotFound)
    );
    // Refused before anything is written: a refresh token of another family, a bad scope.
    let mut stray = issuance("fam", "j-stray", Some("r-stray"));
    stray.refresh.as_mut().unwrap().family_id = "other".into();
    let bad_scope = Issuance {
        refresh: Some(RefreshTokenRecord {
            scopes: vec!["a b".into()],
            ..refresh("r-bad", "fam")
        }),
        ..issuance("fam", "j-bad", None)
    };
    for bad in [stray, bad_scope] {
        let err = store
            .spend_and_issue(&Spend::AuthCode("c1".into()), 200, &bad)
            .await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    }
    assert!(!store.find_auth_code("c1").await.unwrap().used);

    let spend = Spend::AuthCode("c1".into());
    let got = store
        .spend_and_issue(&spend, 200, &issuance("fam", "j1", Some("r1")))
        .await;
    assert_eq!(got, Ok(IssueOutcome::Issued));
    assert!(store.find_auth_code("c1").await.unwrap().used);
    let r1 = store.find_refresh_token("r1").await.unwrap();
    assert_eq!(
        (r1.record, r1.used, r1.family_revoked),
        (refresh("r1", "fam"), false, false)
    );
    // The code again: nothing more is stored.
    let again = store
        .spend_and_issue(&spend, 201, &issuance("fam", "j2", Some("r2")))
        .await;
    assert_eq!(again, Ok(IssueOutcome::AlreadyUsed));
    assert_eq!(
        store.find_refresh_token("r2").await,
        Err(StoreError::NotFound)
    );

    // Rotation: r1 is spent, r3 takes its place.
    let rotate = Spend::RefreshToken("r1".into());
    let got = store
        .spend_and_issue(&rotate, 300, &issuance("fam", "j3", Some("r3")))
        .await;
    assert_eq!(got, Ok(IssueOutcome::Issued));
    assert!(store.find_refresh_token("r1").await.unwrap().used);
    let again = store
        .spend_and_issue(&rotate, 301, &issuance("fam", "j4", Some("r4")))
        .await;
    assert_eq!(again, Ok(IssueOutcome::AlreadyUsed));
    // A spend naming another family than the token's spends nothing.
    let wrong = store
        .spend_and_issue(
            &Spend::RefreshToken("r3".into()),
            302,
            &issuance("other", "j5", None),
        )
        .await;
    assert_eq!(wrong, Ok(IssueOutcome::AlreadyUsed));
    assert!(!store.find_refresh_token("r3").await.unwrap().used);

    // Only the issued access tokens were recorded: revoking lists j1 and j3.
    let listed = store.revoke_family("fam", 400).await.unwrap();
    assert_eq!(jtis(&listed), ["j1", "j3"]);
    let r3 = store.find_refresh_token("r3").await.unwrap();
    assert!(r3.family_revoked);
    // A revoked family gets nothing, whatever is spent.
    for spend in [Spend::RefreshToken("r3".into()), Spend::Nothing] {
        let got = store
            .spend_and_issue(&spend, 500, &issuance("fam", "j6", Some("r6")))
            .await;
        assert_eq!(got, Ok(IssueOutcome::FamilyRevoked), "{spend:?}");
    }
    assert_eq!(
        store.find_refresh_token("r6").await,
        Err(StoreError::NotFound)
    );
    // A device grant spends nothing: a fresh family is issued into.
    let got = store
        .spend_and_issue(&Spend::Nothing, 500, &issuance("dev", "d1", Some("rd")))
        .await;
    assert_eq!(got, Ok(IssueOutcome::Issued));
    assert!(!store.find_refresh_token("rd").await.unwrap().used);
    store.close().await;
}

async fn a_spend_race_has_one_winner_and_the_loser_stores_nothing(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    let behind = Behind::open(&t).await;
    for round in 0..ROUNDS {
        let (hash, family) = (format!("race-{round}"), format!("fam-{round}"));
        behind
            .insert_refresh_token(&refresh(&hash, &family))
            .await
            .unwrap();
        let spend = Spend::RefreshToken(hash.clone());
        let (na, nb) = (format!("a-{round}"), format!("b-{round}"));
        let (ia, ib) = (
            issuance(&family, &na, Some(&na)),
            issuance(&family, &nb, Some(&nb)),
        );
        let (ra, rb) = tokio::join!(
            a.spend_and_issue(&spend, 200, &ia),
            b.spend_and_issue(&spend, 200, &ib)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut outcomes = [ra, rb];
        outcomes.sort_by_key(|o| *o == IssueOutcome::Issued);
        assert_eq!(
            outcomes,
            [IssueOutcome::AlreadyUsed, IssueOutcome::Issued],
            "round {round}"
        );
        let loser = if ra == IssueOutcome::Issued { &nb } else { &na };
        assert_eq!(a.find_refresh_token(loser).await, Err(StoreError::NotFound));
    }
    a.close().await;
    b.close().await;
}

async fn an_issuance_never_escapes_a_family_revocation(t: DatabaseTarget) {
    // Replica A rotates a refresh token while replica B revokes its family: either A gets
    // nothing, or what A issued is revoked with the family.
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    let behind = Behind::open(&t).await;
    for round in 0..ROUNDS {
        let (hash, family) = (format!("t-{round}"), format!("fam-{round}"));
        let (jti, next) = (format!("jti-{round}"), format!("next-{round}"));
        behind
            .insert_refresh_token(&refresh(&hash, &family))
            .await
            .unwrap();
        let (spend, issue) = (
            Spend::RefreshToken(hash.clone()),
            issuance(&family, &jti, Some(&next)),
        );
        let (issued, revoked) = tokio::join!(
            a.spend_and_issue(&spend, 200, &issue),
            b.revoke_family(&family, 1_000)
        );
        revoked.unwrap();
        match issued.unwrap() {
            IssueOutcome::Issued => {
                let listed = a.revoked_tokens_since(0, 1_000).await.unwrap();
                assert!(jtis(&listed).contains(&jti.as_str()), "round {round}");
                assert!(a.find_refresh_token(&next).await.unwrap().family_revoked);
            }
            other => {
                assert_eq!(other, IssueOutcome::FamilyRevoked, "round {round}");
                assert_eq!(a.find_refresh_token(&next).await, Err(StoreError::NotFound));
            }
        }
    }
    a.close().await;
    b.close().await;
}
