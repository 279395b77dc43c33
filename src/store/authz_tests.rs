//! The authorization-state operations on both backends (see `tests` for how they run).
//! Times are small made-up unix seconds; the store takes every `now` from the caller.

use super::tests::{on_both_backends, open_store, run_postgres, run_sqlite, Behind};
use super::*;

on_both_backends!(
    code_is_single_use,
    code_race_has_one_winner,
    refresh_rotation_and_family_revocation,
    revoke_family_lists_access_tokens,
    revocation_never_misses_a_recorded_token,
    session_lifecycle,
    purge_removes_only_expired,
    authz_survives_restart,
);

pub(super) const ROUNDS: usize = 20;

pub(super) fn code(hash: &str, family: &str) -> AuthCodeRecord {
    AuthCodeRecord {
        code_hash: hash.into(),
        client_id: "flytectl".into(),
        redirect_uri: "http://localhost:53593/callback".into(),
        subject: "alice".into(),
        user_info: r#"{"name":"Alice","email":"alice@example.com"}"#.into(),
        scopes: vec!["all".into(), "offline".into()],
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        family_id: family.into(),
        auth_time: 100,
        expires_at: 1_000,
    }
}

pub(super) fn refresh(hash: &str, family: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.into(),
        family_id: family.into(),
        client_id: "flytectl".into(),
        subject: "alice".into(),
        user_info: r#"{"name":"Alice"}"#.into(),
        scopes: vec!["all".into()],
        auth_time: 100,
        expires_at: 5_000,
    }
}

fn session(id: &str) -> SessionRecord {
    SessionRecord {
        id_hash: id.into(),
        subject: "alice".into(),
        user_info: r#"{"name":"Alice"}"#.into(),
        csrf_token: format!("csrf-{id}"),
        created_at: 100,
        last_seen_at: 100,
        expires_at: 5_000,
        idp_refresh_token: None,
    }
}

pub(super) fn revoked(jti: &str, expires_at: i64, revoked_at: i64) -> RevokedToken {
    RevokedToken {
        jti: jti.into(),
        expires_at,
        revoked_at,
    }
}

pub(super) fn jtis(list: &[RevokedToken]) -> Vec<&str> {
    list.iter().map(|r| r.jti.as_str()).collect()
}

async fn code_is_single_use(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let behind = Behind::open(&t).await;
    let c = code("c1", "f1");
    store.insert_auth_code(&c).await.unwrap();
    let again = store.insert_auth_code(&code("c1", "f2")).await;
    assert_eq!(again, Err(StoreError::AlreadyExists));

    let first = store.redeem_auth_code("c1", 200).await.unwrap();
    assert_eq!(first, CodeRedemption::Fresh(c.clone()));
    let second = store.redeem_auth_code("c1", 201).await.unwrap();
    assert_eq!(second, CodeRedemption::Replayed(c));
    let unknown = store.redeem_auth_code("nope", 200).await;
    assert_eq!(unknown, Err(StoreError::NotFound));

    // No scopes and no PKCE challenge round-trip as empty.
    let bare = AuthCodeRecord {
        scopes: vec![],
        code_challenge: String::new(),
        ..code("c2", "f2")
    };
    store.insert_auth_code(&bare).await.unwrap();
    let redeemed = store.redeem_auth_code("c2", 200).await.unwrap();
    assert_eq!(redeemed, CodeRedemption::Fresh(bare));
    // A scope that would not survive being space-joined is refused, not mangled.
    for bad in ["a b", ""] {
        let c = AuthCodeRecord {
            scopes: vec!["all".into(), bad.into()],
            ..code("c3", "f3")
        };
        let err = store.insert_auth_code(&c).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{bad:?}");
        let r = RefreshTokenRecord {
            scopes: vec![bad.into()],
            ..refresh("r3", "f3")
        };
        let err = behind.insert_refresh_token(&r).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    store.close().await;
}

async fn code_race_has_one_winner(t: DatabaseTarget) {
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    for round in 0..ROUNDS {
        let hash = format!("race-{round}");
        a.insert_auth_code(&code(&hash, "f")).await.unwrap();
        let (ra, rb) = tokio::join!(
            a.redeem_auth_code(&hash, 200),
            b.redeem_auth_code(&hash, 200)
        );
        let fresh = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|r| matches!(r, CodeRedemption::Fresh(_)))
            .count();
        assert_eq!(fresh, 1, "round {round}");
    }
    a.close().await;
    b.close().await;
}

async fn refresh_rotation_and_family_revocation(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let behind = Behind::open(&t).await;
    let t1 = refresh("t1", "fam");
    behind.insert_refresh_token(&t1).await.unwrap();
    let dup = behind.insert_refresh_token(&refresh("t1", "other")).await;
    assert_eq!(dup, Err(StoreError::AlreadyExists));
    let fresh = Found {
        record: t1.clone(),
        used: false,
        used_at: None,
        family_revoked: false,
    };
    assert_eq!(store.find_refresh_token("t1").await, Ok(fresh));
    // Rotated: the successor is in the same family; presenting t1 again is reuse.
    let rotate = Spend::RefreshToken("t1".into());
    let got = store
        .spend_and_issue(&rotate, 200, &issuance("fam", "j1", Some("t2")))
        .await;
    assert_eq!(got, Ok(IssueOutcome::Issued));
    let reuse = store
        .spend_and_issue(&rotate, 300, &issuance("fam", "j2", Some("t2b")))
        .await;
    assert_eq!(reuse, Ok(IssueOutcome::AlreadyUsed));
    let used = store.find_refresh_token("t1").await.unwrap();
    assert_eq!((used.used, used.used_at), (true, Some(200)));
    assert_eq!(
        store.find_refresh_token("nope").await,
        Err(StoreError::NotFound)
    );

    // Another family is untouched by the revocation below.
    behind
        .insert_refresh_token(&refresh("g1", "other"))
        .await
        .unwrap();
    store.revoke_family("fam", 300).await.unwrap();
    // The unused successor and the used t1 alike.
    for hash in ["t2", "t1"] {
        let found = store.find_refresh_token(hash).await.unwrap();
        assert!(found.family_revoked, "{hash}");
        let spend = Spend::RefreshToken(hash.into());
        let got = store
            .spend_and_issue(&spend, 400, &issuance("fam", "j3", Some("t4")))
            .await;
        assert_eq!(got, Ok(IssueOutcome::FamilyRevoked), "{hash}");
    }
    // A token stored into the family after it was revoked (a racing refresh) is dead too.
    behind
        .insert_refresh_token(&refresh("t3", "fam"))
        .await
        .unwrap();
    assert!(store.find_refresh_token("t3").await.unwrap().family_revoked);
    let other = store
        .spend_and_issue(
            &Spend::RefreshToken("g1".into()),
            400,
            &issuance("other", "k1", None),
        )
        .await;
    assert_eq!(other, Ok(IssueOutcome::Issued));
    store.close().await;
}

async fn revoke_family_lists_access_tokens(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let behind = Behind::open(&t).await;
    behind
        .record_access_token("fam", "j1", 2_000)
        .await
        .unwrap();
    behind.record_access_token("fam", "j0", 900).await.unwrap(); // expired by 1000
    behind
        .record_access_token("fam", "j2", 3_000)
        .await
        .unwrap();
    behind
        .record_access_token("fam", "j2", 3_000)
        .await
        .unwrap(); // a retry: no error
    behind
        .record_access_token("other", "k1", 2_000)
        .await
        .unwrap();

    let want = vec![revoked("j1", 2_000, 1_000), revoked("j2", 3_000, 1_000)];
    assert_eq!(store.revoke_family("fam", 1_000).await.unwrap(), want);
    // Idempotent: the same jtis, still with the first revocation time.
    assert_eq!(store.revoke_family("fam", 1_100).await.unwrap(), want);
    assert!(store
        .revoke_family("empty", 1_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.revoked_tokens_since(0, 1_000).await.unwrap(), want);

    // Single revocations (RFC 7009); a repeat keeps the first time.
    store.revoke_access_token("s1", 4_000, 1_200).await.unwrap();
    store.revoke_access_token("s1", 4_000, 1_300).await.unwrap();
    store.revoke_access_token("s0", 1_250, 1_250).await.unwrap();
    let since = |since, now| store.revoked_tokens_since(since, now);
    assert_eq!(
        jtis(&since(0, 1_000).await.unwrap()),
        ["j1", "j2", "s1", "s0"]
    );
    assert_eq!(jtis(&since(1_001, 1_000).await.unwrap()), ["s1", "s0"]);
    assert_eq!(
        since(1_200, 1_240).await.unwrap(),
        [revoked("s1", 4_000, 1_200), revoked("s0", 1_250, 1_250)]
    );
    // Expired entries are left out: j1 at 2000, s0 at 1250.
    assert_eq!(jtis(&since(0, 2_000).await.unwrap()), ["j2", "s1"]);
    assert!(since(1_301, 1_000).await.unwrap().is_empty());

    // A token recorded into the family after its revocation is listed at once, stamped with
    // the later of the family's revocation and the database's clock (here the database's:
    // the made-up times are in 1970).
    behind
        .record_access_token("fam", "j3", 5_000)
        .await
        .unwrap();
    let late = since(1_301, 1_000).await.unwrap();
    assert_eq!(jtis(&late), ["j3"]);
    assert!(late[0].revoked_at > 1_600_000_000, "{late:?}");
    // A caller's clock ahead of the database's: the family's revocation time is used.
    let ahead = 4_000_000_000;
    store.revoke_family("future", ahead).await.unwrap();
    behind
        .record_access_token("future", "f1", ahead + 60)
        .await
        .unwrap();
    let listed = store.revoked_tokens_since(ahead, ahead).await.unwrap();
    assert_eq!(listed, [revoked("f1", ahead + 60, ahead)]);
    // `other` was never revoked.
    assert!(!jtis(&since(0, 0).await.unwrap()).contains(&"k1"));
    store.close().await;
}

async fn revocation_never_misses_a_recorded_token(t: DatabaseTarget) {
    // Replica A records an access token into a family while replica B revokes it: however
    // they interleave, the jti ends up revoked.
    let (a, b) = (open_store(&t).await, open_store(&t).await);
    let behind = Behind::open(&t).await;
    for round in 0..ROUNDS {
        let (family, jti) = (format!("fam-{round}"), format!("jti-{round}"));
        let (recorded, revoked) = tokio::join!(
            behind.record_access_token(&family, &jti, 9_000),
            b.revoke_family(&family, 1_000)
        );
        recorded.unwrap();
        revoked.unwrap();
        let listed = a.revoked_tokens_since(0, 1_000).await.unwrap();
        assert!(jtis(&listed).contains(&jti.as_str()), "round {round}");
    }
    a.close().await;
    b.close().await;
}

async fn session_lifecycle(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let mut s = session("s1");
    store.create_session(&s).await.unwrap();
    assert_eq!(
        store.create_session(&session("s1")).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(store.get_session("s1").await.unwrap(), s);

    store.touch_session("s1", 150).await.unwrap();
    s.last_seen_at = 150;
    assert_eq!(store.get_session("s1").await.unwrap(), s);
    // A replica with a slower clock does not move it back.
    store.touch_session("s1", 140).await.unwrap();
    assert_eq!(store.get_session("s1").await.unwrap(), s);

    let sealed = vec![0u8, 1, 2, 255, 0];
    let update = |token| store.update_session_idp_refresh_token("s1", token);
    update(Some(sealed.as_slice())).await.unwrap();
    s.idp_refresh_token = Some(sealed.clone());
    assert_eq!(store.get_session("s1").await.unwrap(), s);
    update(Some(&[])).await.unwrap();
    assert_eq!(
        store.get_session("s1").await.unwrap().idp_refresh_token,
        Some(vec![])
    );
    update(None).await.unwrap();
    s.idp_refresh_token = None;
    assert_eq!(store.get_session("s1").await.unwrap(), s);

    for missing in [
        store.get_session("nope").await.map(drop),
        store.touch_session("nope", 200).await,
        store
            .update_session_idp_refresh_token("nope", Some(&sealed))
            .await,
    ] {
        assert_eq!(missing, Err(StoreError::NotFound));
    }
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.get_session("s1").await, Err(StoreError::NotFound));
    store.delete_session("s1").await.unwrap(); // idempotent
    assert_eq!(
        store.touch_session("s1", 200).await,
        Err(StoreError::NotFound)
    );
    store.close().await;
}

async fn purge_removes_only_expired(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let behind = Behind::open(&t).await;
    let now = 1_000;
    let codes = [("c_old", now), ("c_new", now + 1)];
    for (hash, expires_at) in codes {
        let c = AuthCodeRecord {
            expires_at,
            ..code(hash, "cf")
        };
        store.insert_auth_code(&c).await.unwrap();
    }
    for (hash, expires_at) in [("r_old", now), ("r_new", 2_000)] {
        let r = RefreshTokenRecord {
            expires_at,
            ..refresh(hash, "rev")
        };
        behind.insert_refresh_token(&r).await.unwrap();
    }
    store.revoke_family("rev", 500).await.unwrap();
    store.revoke_family("gone", 500).await.unwrap(); // nothing refers to it
    behind.record_access_token("x", "a_old", 900).await.unwrap();
    behind
        .record_access_token("y", "a_new", 2_000)
        .await
        .unwrap();
    store.revoke_access_token("v_old", now, 10).await.unwrap();
    store.revoke_access_token("v_new", 3_000, 10).await.unwrap();
    let sessions = [
        ("s_abs", now, 990),      // absolute expiry reached
        ("s_idle", 5_000, 699),   // 699 + 300 < 1000
        ("s_edge", 5_000, 700),   // 700 + 300 == 1000: not yet idle
        ("s_live", 5_000, 1_000), // in use
    ];
    for (id, expires_at, last_seen_at) in sessions {
        let s = SessionRecord {
            expires_at,
            last_seen_at,
            ..session(id)
        };
        store.create_session(&s).await.unwrap();
    }

    // 1 code, 1 refresh token, 1 access token, 1 revocation, 2 sessions, families x and gone.
    assert_eq!(store.purge_expired(now, 300).await.unwrap(), 8);
    assert_eq!(store.purge_expired(now, 300).await.unwrap(), 0);

    assert_eq!(
        store.redeem_auth_code("c_old", now).await,
        Err(StoreError::NotFound)
    );
    let kept = store.redeem_auth_code("c_new", now).await.unwrap();
    assert!(matches!(kept, CodeRedemption::Fresh(_)));
    assert_eq!(
        store.find_refresh_token("r_old").await,
        Err(StoreError::NotFound)
    );
    // Family `rev` still has a token, so its revocation is kept.
    let r_new = store.find_refresh_token("r_new").await.unwrap();
    assert!(r_new.family_revoked);
    assert_eq!(
        jtis(&store.revoked_tokens_since(0, 0).await.unwrap()),
        ["v_new"]
    );
    // a_new's record survived: revoking its family finds it; a_old's did not.
    let y = store.revoke_family("y", now).await.unwrap();
    assert_eq!(y, [revoked("a_new", 2_000, now)]);
    assert!(store.revoke_family("x", 0).await.unwrap().is_empty());
    for (id, _, _) in sessions {
        let present = store.get_session(id).await.is_ok();
        assert_eq!(present, ["s_edge", "s_live"].contains(&id), "{id}");
    }

    // A zero idle limit means none: only the absolute expiry counts.
    let idle = SessionRecord {
        last_seen_at: 0,
        ..session("s_idle2")
    };
    store.create_session(&idle).await.unwrap();
    // Family x (just re-created by its revocation, and empty) goes again.
    assert_eq!(store.purge_expired(now, 0).await.unwrap(), 1);
    assert!(store.get_session("s_idle2").await.is_ok());
    assert_eq!(store.purge_expired(now, 300).await.unwrap(), 1);
    assert_eq!(
        store.get_session("s_idle2").await,
        Err(StoreError::NotFound)
    );
    store.close().await;
}

async fn authz_survives_restart(t: DatabaseTarget) {
    let store = open_store(&t).await;
    let behind = Behind::open(&t).await;
    store.insert_auth_code(&code("used", "f1")).await.unwrap();
    store.insert_auth_code(&code("unused", "f2")).await.unwrap();
    store.redeem_auth_code("used", 200).await.unwrap();
    behind
        .insert_refresh_token(&refresh("r1", "f1"))
        .await
        .unwrap();
    behind
        .insert_refresh_token(&refresh("r2", "f2"))
        .await
        .unwrap();
    behind.record_access_token("f1", "j1", 2_000).await.unwrap();
    store.revoke_family("f1", 300).await.unwrap();
    store.revoke_access_token("j9", 2_000, 310).await.unwrap();
    let mut s = session("s1");
    s.idp_refresh_token = Some(b"sealed".to_vec());
    store.create_session(&s).await.unwrap();
    store.close().await;

    let store = open_store(&t).await;
    let used = store.redeem_auth_code("used", 400).await.unwrap();
    assert_eq!(used, CodeRedemption::Replayed(code("used", "f1")));
    let unused = store.redeem_auth_code("unused", 400).await.unwrap();
    assert_eq!(unused, CodeRedemption::Fresh(code("unused", "f2")));
    let r1 = store.find_refresh_token("r1").await.unwrap();
    assert!(r1.family_revoked);
    let r2 = store.find_refresh_token("r2").await.unwrap();
    let fresh = Found {
        record: refresh("r2", "f2"),
        used: false,
        used_at: None,
        family_revoked: false,
    };
    assert_eq!(r2, fresh);
    assert_eq!(
        store.revoked_tokens_since(0, 400).await.unwrap(),
        [revoked("j1", 2_000, 300), revoked("j9", 2_000, 310)]
    );
    assert_eq!(store.get_session("s1").await.unwrap(), s);
    store.close().await;
}

pub(super) fn issuance(family: &str, jti: &str, refresh_hash: Option<&str>) -> Issuance {
    Issuance {
        family_id: family.into(),
        jti: jti.into(),
        jti_expires_at: 9_000,
        refresh: refresh_hash.map(|h| refresh(h, family)),
    }
}
