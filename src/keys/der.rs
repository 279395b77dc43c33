//! Just enough DER reading for key handling: walk a SEQUENCE, read INTEGERs and OCTET STRINGs.
//! Used to turn PKCS#8 RSA keys into PKCS#1 (Flyte's `secret init` format) and to read the
//! modulus and exponent of an RSA public key for its JWK.

/// One TLV element: its tag and its content bytes.
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

/// Reads the next TLV from `input`, returning it and the rest.
pub(super) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The elements of a SEQUENCE's content.
pub(super) fn sequence_items(seq: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let (outer, _) = read_tlv(seq)?;
    if outer.tag != 0x30 {
        return None;
    }
    let mut items = Vec::new();
    let mut rest = outer.content;
    while !rest.is_empty() {
        let (tlv, r) = read_tlv(rest)?;
        items.push(tlv);
        rest = r;
    }
    Some(items)
}

/// An unsigned big-endian INTEGER without its leading zero bytes.
pub(super) fn unsigned(int: &[u8]) -> &[u8] {
    let mut i = int;
    while i.len() > 1 && i[0] == 0 {
        i = &i[1..];
    }
    i
}

/// Extracts the inner PKCS#1 `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`.
pub(super) fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let items = sequence_items(pkcs8)?;
    let key = items.get(2)?;
    (key.tag == 0x04).then(|| key.content.to_vec())
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`.
pub(super) fn rsa_public_components(pkcs1_public: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let items = sequence_items(pkcs1_public)?;
    let n = items.first().filter(|t| t.tag == 0x02)?;
    let e = items.get(1).filter(|t| t.tag == 0x02)?;
    Some((unsigned(n.content).to_vec(), unsigned(e.content).to_vec()))
}

/// A PKCS#1 `RSAPublicKey` (`SEQUENCE { n INTEGER, e INTEGER }`) from big-endian `n` and `e`.
pub(super) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    push_unsigned_integer(&mut body, n);
    push_unsigned_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    push_tlv(&mut out, 0x30, &body);
    out
}

/// A non-negative INTEGER: minimal, with a leading zero when the top bit is set.
fn push_unsigned_integer(out: &mut Vec<u8>, value: &[u8]) {
    let value = unsigned(value);
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    push_tlv(out, 0x02, &content);
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_public_key_round_trips() {
        let n: Vec<u8> = std::iter::once(0xC3).chain([7u8; 255]).collect();
        let der = rsa_public_key(&n, &[1, 0, 1]);
        let (n2, e2) = rsa_public_components(&der).unwrap();
        assert_eq!((n2, e2), (n, vec![1, 0, 1]));
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0A]);
    }
}
