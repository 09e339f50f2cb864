//! Binary codec tests: round trips, truncation, corruption, framing errors
//! and allocation bounds.

mod common;
use common::*;
use fedsearch_protocol::*;

#[test]
fn update_round_trip_f32_is_exact() {
    for mode in [FederationMode::Shared, FederationMode::Personal] {
        let u = update(mode, 42);
        let bytes = encode_update(&u, Encoding::F32);
        assert_eq!(decode_update(&bytes).unwrap(), u);
        assert_eq!(peek_encoding(&bytes).unwrap(), Encoding::F32);
    }
}

#[test]
fn update_round_trip_f16_within_half_precision() {
    let u = update(FederationMode::Shared, 7);
    let f32_len = encode_update(&u, Encoding::F32).len();
    let bytes = encode_update(&u, Encoding::F16);
    assert!(bytes.len() < f32_len * 7 / 10, "f16 payloads should be about half the size");
    let back = decode_update(&bytes).unwrap();
    assert_eq!(back.client_id, u.client_id);
    assert_eq!(back.dp, u.dp);
    for (a, b) in u.tensors.iter().zip(&back.tensors) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.shape, b.shape);
        for (x, y) in a.data.iter().zip(&b.data) {
            // f16 has an 11-bit significand: relative error <= 2^-11, plus
            // subnormal absolute error near zero.
            assert!((x - y).abs() <= x.abs() * 4.9e-4 + 6.0e-8, "{x} vs {y}");
        }
    }
}

#[test]
fn global_model_round_trip() {
    for mode in [FederationMode::Shared, FederationMode::Personal] {
        let mut m = model(mode);
        let bytes = encode_global_model(&m, Encoding::F32);
        assert_eq!(decode_global_model(&bytes).unwrap(), m);
        m.doc_ids = None;
        let bytes = encode_global_model(&m, Encoding::F16);
        // identity/zero weights are exactly representable in f16
        assert_eq!(decode_global_model(&bytes).unwrap(), m);
    }
}

#[test]
fn every_truncated_prefix_is_an_error() {
    let u = update(FederationMode::Shared, 1);
    let bytes = encode_update(&u, Encoding::F16);
    for len in 0..bytes.len() {
        assert!(decode_update(&bytes[..len]).is_err(), "prefix {len} decoded");
        assert!(decode_update_ignoring_checksum(&bytes[..len]).is_err(), "prefix {len} parsed");
    }
    let m = model(FederationMode::Shared);
    let bytes = encode_global_model(&m, Encoding::F32);
    for len in 0..bytes.len() {
        assert!(decode_global_model(&bytes[..len]).is_err(), "prefix {len} decoded");
    }
}

#[test]
fn random_flipped_bytes_never_panic_and_are_detected() {
    let u = update(FederationMode::Shared, 9);
    let good = encode_update(&u, Encoding::F32);
    let mut rng = Rng(1234);
    for i in 0..3000 {
        let mut bad = good.clone();
        let flips = 1 + rng.below(4);
        for _ in 0..flips {
            let pos = rng.below(bad.len());
            bad[pos] ^= 1 << rng.below(8);
        }
        // With the checksum every corruption must be rejected.
        assert!(decode_update(&bad).is_err(), "iteration {i}: corruption not detected");
        // Without it, the parser must still not panic.
        let _ = decode_update_ignoring_checksum(&bad);
        let _ = decode_global_model_ignoring_checksum(&bad);
    }
    // Fully random garbage, including a valid header.
    for _ in 0..2000 {
        let len = rng.below(200);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if len >= 8 && rng.below(2) == 0 {
            buf[..4].copy_from_slice(&MAGIC);
            buf[4..6].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
            buf[6] = 1 + rng.below(2) as u8;
            buf[7] = rng.below(2) as u8;
        }
        let _ = decode_update(&buf);
        let _ = decode_update_ignoring_checksum(&buf);
        let _ = decode_global_model_ignoring_checksum(&buf);
    }
}

#[test]
fn wrong_magic_version_kind_encoding_are_typed_errors() {
    let u = update(FederationMode::Shared, 2);
    let good = encode_update(&u, Encoding::F32);

    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(decode_update(&b), Err(ProtocolError::BadMagic { .. })));

    let mut b = good.clone();
    b[4..6].copy_from_slice(&99u16.to_le_bytes());
    assert_eq!(decode_update(&b), Err(ProtocolError::UnsupportedVersion { found: 99, supported: SCHEMA_VERSION }));

    assert!(matches!(decode_global_model(&good), Err(ProtocolError::WrongKind { expected: "global model", found: 1 })));

    let mut b = good.clone();
    b[7] = 9;
    assert_eq!(decode_update(&b), Err(ProtocolError::UnknownEncoding(9)));

    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(matches!(decode_update(&b), Err(ProtocolError::ChecksumMismatch { .. })));

    let mut b = good;
    b.truncate(b.len() - 4); // drop checksum
    b.push(0); // one extra body byte
    let c = crc(&b);
    b.extend_from_slice(&c.to_le_bytes());
    assert_eq!(decode_update(&b), Err(ProtocolError::TrailingBytes(1)));
}

/// Reference CRC-32 (IEEE) so tests can forge well-formed frames.
fn crc(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// Builds a framed message (header + body + valid CRC).
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    b.push(kind);
    b.push(0);
    b.extend_from_slice(body);
    let c = crc(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

#[test]
fn huge_declared_lengths_error_without_allocating() {
    // string length 4 GiB
    let body = u32::MAX.to_le_bytes();
    assert!(matches!(
        decode_update(&frame(1, &body)),
        Err(ProtocolError::LengthTooLarge { what: "federation id", .. })
    ));

    // valid prefix then a tensor count of u32::MAX
    let mut body = Vec::new();
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(b"fed");
    body.extend_from_slice(&1u64.to_le_bytes()); // round
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(b"c"); // client
    body.extend_from_slice(&0u64.to_le_bytes()); // base
    body.extend_from_slice(&1u64.to_le_bytes()); // examples
    body.push(0); // mode
    body.extend_from_slice(&1f32.to_le_bytes());
    body.extend_from_slice(&1f32.to_le_bytes());
    body.extend_from_slice(&1e-5f64.to_le_bytes());
    body.extend_from_slice(&0f64.to_le_bytes());
    let header_len = body.len();
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_update(&frame(1, &body)), Err(ProtocolError::LengthTooLarge { what: "tensor count", .. })));

    // Many tiny tensors that do fit the bytes (9 wire bytes each: empty name, rank 0, one
    // value) would decode to ~10x their size: more than MAX_TENSORS is refused; MAX_TENSORS
    // such tensors decode (the cap, not the framing, refuses the larger count).
    for (count, refused) in [(MAX_TENSORS as usize + 1, true), (MAX_TENSORS as usize, false)] {
        body.truncate(header_len);
        body.extend_from_slice(&(count as u32).to_le_bytes());
        for _ in 0..count {
            body.extend_from_slice(&0u32.to_le_bytes()); // empty name
            body.push(0); // rank 0: one element
            body.extend_from_slice(&1f32.to_le_bytes());
        }
        match decode_update(&frame(1, &body)) {
            Err(ProtocolError::TooManyTensors { count: c, max }) if refused => {
                assert_eq!((c, max), (count as u64, MAX_TENSORS))
            }
            Ok(u) if !refused => assert_eq!(u.tensors.len(), count),
            other => panic!("{count} tensors: {other:?}"),
        }
    }

    // one tensor whose shape claims 2^32 × 2^32 × ... elements
    body.truncate(header_len);
    body.extend_from_slice(&1u32.to_le_bytes()); // one tensor
    body.extend_from_slice(&1u32.to_le_bytes());
    body.push(b'w');
    body.push(4); // rank
    for _ in 0..4 {
        body.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    assert!(matches!(decode_update(&frame(1, &body)), Err(ProtocolError::LengthTooLarge { what: "tensor data", .. })));

    // rank above the maximum
    body.truncate(header_len);
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.push(b'w');
    body.push(200);
    assert!(matches!(decode_update(&frame(1, &body)), Err(ProtocolError::TooManyDims { .. })));

    // doc id count too large in a global model
    let mut body = Vec::new();
    body.extend_from_slice(&0u32.to_le_bytes()); // empty id
    body.extend_from_slice(&0u64.to_le_bytes());
    body.push(0);
    body.extend_from_slice(&0u32.to_le_bytes()); // no tensors
    body.push(1);
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_global_model(&frame(2, &body)),
        Err(ProtocolError::LengthTooLarge { what: "doc id count", .. })
    ));
}

#[test]
fn invalid_utf8_and_mode_are_errors() {
    let mut body = Vec::new();
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&[0xff, 0xfe]);
    assert_eq!(decode_update(&frame(1, &body)), Err(ProtocolError::InvalidUtf8 { what: "federation id" }));
    let mut body = Vec::new();
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    body.push(7);
    assert_eq!(decode_global_model(&frame(2, &body)), Err(ProtocolError::UnknownMode(7)));
}
