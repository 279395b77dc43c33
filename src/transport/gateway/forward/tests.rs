//! Tests of the forwarding helpers.

use super::*;

#[test]
fn grpc_timeouts() {
    let mut h = HeaderMap::new();
    h.insert("grpc-timeout", "250m".parse().unwrap());
    assert_eq!(
        deadline(&h, Protocol::Grpc),
        Some(Duration::from_millis(250))
    );
    h.insert("grpc-timeout", "3S".parse().unwrap());
    assert_eq!(
        deadline(&h, Protocol::GrpcWeb),
        Some(Duration::from_secs(3))
    );
    h.insert("grpc-timeout", "3x".parse().unwrap());
    assert_eq!(deadline(&h, Protocol::Grpc), None);
    h.insert("connect-timeout-ms", "1500".parse().unwrap());
    assert_eq!(
        deadline(&h, Protocol::Connect),
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn message_limit_and_framing() {
    let msg = |n: usize| {
        let mut b = vec![0u8];
        b.extend((n as u32).to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, n));
        Bytes::from(b)
    };
    assert_eq!(grpc_messages(&msg(10), 10).unwrap().unwrap().len(), 10);
    assert!(matches!(
        grpc_messages(&msg(11), 10),
        Err(CallError::TooLarge)
    ));
    assert!(matches!(
        grpc_messages(&Bytes::from_static(&[0, 0, 0]), 10),
        Err(CallError::Malformed(_))
    ));
    assert_eq!(grpc_messages(&Bytes::new(), 10).unwrap(), None);
}

#[test]
fn own_cookies_are_not_forwarded() {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        "flyte_session=s; a=1; __Host-flyte_csrf=c; b=2"
            .parse()
            .unwrap(),
    );
    h.insert("x-csrf-token", "c".parse().unwrap());
    strip_own_cookies(&mut h);
    assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
    assert!(h.get("x-csrf-token").is_none());
}
