use super::*;
use proptest::prelude::*;

// Known encodings from the protobuf spec (zigzag), which Kafka uses unchanged.
#[test]
fn known_encodings() {
    let cases: [(i32, &[u8]); 7] = [
        (0, &[0x00]),
        (-1, &[0x01]),
        (1, &[0x02]),
        (-64, &[0x7f]),
        (64, &[0x80, 0x01]),
        (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
    ];
    for (value, encoded) in cases {
        let mut out = Vec::new();
        write_varint(&mut out, value);
        assert_eq!(out, encoded, "{value}");
        assert_eq!(varint_len(value), encoded.len());
        let mut input = encoded;
        assert_eq!(read_varint(&mut input), Ok(value));
        assert!(input.is_empty());
    }
}

// Truncation, too many bytes and excess high bits are all rejected, never wrapped.
#[test]
fn malformed_varints_are_rejected() {
    assert_eq!(read_varint(&mut &[][..]), Err(VarintError::Truncated));
    assert_eq!(read_varint(&mut &[0x80][..]), Err(VarintError::Truncated));
    let six_bytes = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    assert_eq!(read_varint(&mut &six_bytes[..]), Err(VarintError::Overflow));
    // A fifth byte above 0x0f sets bits beyond 32.
    let wide = [0xff, 0xff, 0xff, 0xff, 0x1f];
    assert_eq!(read_varint(&mut &wide[..]), Err(VarintError::Overflow));
    let mut eleven = [0x80u8; 11];
    eleven[10] = 0;
    assert_eq!(read_varlong(&mut &eleven[..]), Err(VarintError::Overflow));
    // A tenth byte above 0x01 sets bits beyond 64.
    let mut wide_long = [0xffu8; 10];
    wide_long[9] = 0x02;
    assert_eq!(
        read_varlong(&mut &wide_long[..]),
        Err(VarintError::Overflow)
    );
    wide_long[9] = 0x01;
    assert_eq!(read_varlong(&mut &wide_long[..]), Ok(i64::MIN));
}

proptest! {
    // Every i32 and i64 survives a write/read round trip and the length helpers agree.
    #[test]
    fn round_trip(value32 in any::<i32>(), value64 in any::<i64>()) {
        let mut out = Vec::new();
        write_varint(&mut out, value32);
        prop_assert_eq!(out.len(), varint_len(value32));
        write_varlong(&mut out, value64);
        prop_assert_eq!(out.len(), varint_len(value32) + varlong_len(value64));
        let mut input = &out[..];
        prop_assert_eq!(read_varint(&mut input), Ok(value32));
        prop_assert_eq!(read_varlong(&mut input), Ok(value64));
        prop_assert!(input.is_empty());
    }
}
