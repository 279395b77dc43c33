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
    assert_eq!(grpc_messages(&msg(10), 10).unwrap().unwrap().1.len(), 10);
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

#[test]
fn compressed_messages_are_inflated_for_the_decision_only_when_bindings_read_them() {
    use std::io::Write;
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let framed = |compressed: bool, m: &[u8]| {
        let mut b = vec![u8::from(compressed)];
        b.extend((m.len() as u32).to_be_bytes());
        b.extend_from_slice(m);
        Bytes::from(b)
    };
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    };
    let message = b"\x0a\x07project".as_slice();
    let read = |p, h: &HeaderMap, b: &Bytes, inflate| {
        first_message(p, h, b, 1000, inflate).map(|m| m.map(|m| m.into_owned()))
    };

    // gRPC: a gzip message with `grpc-encoding: gzip` is read inflated.
    let body = framed(true, &gz(message));
    let gzip = headers(&[("grpc-encoding", "gzip")]);
    assert_eq!(
        read(Protocol::Grpc, &gzip, &body, true).unwrap().unwrap(),
        message
    );
    // Without bindings nothing reads the message: no work, decided as before.
    assert_eq!(read(Protocol::Grpc, &gzip, &body, false).unwrap(), None);
    // An encoding flyteauth cannot read, or none named, is decided as an empty message.
    let snappy = headers(&[("grpc-encoding", "snappy")]);
    assert_eq!(read(Protocol::Grpc, &snappy, &body, true).unwrap(), None);
    assert_eq!(
        read(Protocol::Grpc, &HeaderMap::new(), &body, true).unwrap(),
        None
    );
    // Uncompressed messages are read as sent.
    let plain = framed(false, message);
    assert_eq!(
        read(Protocol::GrpcWeb, &HeaderMap::new(), &plain, true)
            .unwrap()
            .unwrap(),
        message
    );

    // Connect: `content-encoding: gzip` on the whole body.
    let body = Bytes::from(gz(message));
    let gzip = headers(&[("content-encoding", "gzip")]);
    assert_eq!(
        read(Protocol::Connect, &gzip, &body, true)
            .unwrap()
            .unwrap(),
        message
    );
    let identity = headers(&[("content-encoding", "identity")]);
    let plain = Bytes::from_static(b"\x0a\x07project");
    assert_eq!(
        read(Protocol::Connect, &identity, &plain, true)
            .unwrap()
            .unwrap(),
        message
    );

    // Bad gzip and a bomb past the limit are refused, not forwarded undecided.
    let bad = headers(&[("content-encoding", "gzip")]);
    assert!(matches!(
        read(
            Protocol::Connect,
            &bad,
            &Bytes::from_static(b"not gzip"),
            true
        ),
        Err(CallError::Malformed(_))
    ));
    let bomb = Bytes::from(gz(&[0; 5000]));
    assert!(matches!(
        read(Protocol::Connect, &bad, &bomb, true),
        Err(CallError::TooLarge)
    ));
}
