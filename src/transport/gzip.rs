//! Bounded gzip inflation of request bodies, for Connect's `content-encoding: gzip` and for
//! the gateway's authorization decision on compressed gRPC and Connect messages: a small
//! compressed body must not become an unbounded allocation.

use std::io::Read;

/// Why a body could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GunzipError {
    /// Not a valid gzip stream.
    Invalid,
    /// More than the allowed bytes once inflated.
    TooLarge,
}

/// Inflates `body`, reading at most `max` bytes of output (one more to tell "too large").
pub(crate) fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::new();
    match flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
    {
        Err(_) => Err(GunzipError::Invalid),
        Ok(n) if n > max => Err(GunzipError::TooLarge),
        Ok(_) => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_within_the_limit_and_refuses_past_it() {
        assert_eq!(gunzip(&gz(b"hello"), 5).unwrap(), b"hello");
        assert_eq!(gunzip(&gz(&[0; 1000]), 999), Err(GunzipError::TooLarge));
        assert_eq!(gunzip(b"not gzip", 1000), Err(GunzipError::Invalid));
    }
}
