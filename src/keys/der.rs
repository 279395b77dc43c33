//! Just enough DER reading for key handling: walk a SEQUENCE, read INTEGERs and OCTET STRINGs.
//! Used to turn PKCS#8 RSA keys into PKCS#1 (Flyte's `secret init` format) and to read the
//! modulus and exponent of an RSA public key for its JWK.

/// One TLV element: its tag and its content bytes.
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

/// Reads the next TLV from `input`, returning it and the rest.
pub fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
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
pub fn sequence_items(seq: &[u8]) -> Option<Vec<Tlv<'_>>> {
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
pub fn unsigned(int: &[u8]) -> &[u8] {
    let mut i = int;
    while i.len() > 1 && i[0] == 0 {
        i = &i[1..];
    }
    i
}

/// Extracts the inner PKCS#1 `RSAPrivateKey` from a PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let items = sequence_items(pkcs8)?;
    let key = items.get(2)?;
    (key.tag == 0x04).then(|| key.content.to_vec())
}

/// `(n, e)` of a PKCS#1 `RSAPublicKey`.
pub fn rsa_public_components(pkcs1_public: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let items = sequence_items(pkcs1_public)?;
    let n = items.first().filter(|t| t.tag == 0x02)?;
    let e = items.get(1).filter(|t| t.tag == 0x02)?;
    Some((unsigned(n.content).to_vec(), unsigned(e.content).to_vec()))
}
