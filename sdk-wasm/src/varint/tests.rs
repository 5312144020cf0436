use super::*;

// Known encodings from the protobuf spec (zigzag), which Kafka uses unchanged.
#[test]
fn known_encodings_round_trip() {
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
        let mut input = encoded;
        assert_eq!(read_varint(&mut input), Ok(value));
        assert!(input.is_empty());
    }
    for value in [0, -1, 1, i64::MAX, i64::MIN, 1_700_000_000_000] {
        let mut out = Vec::new();
        write_varlong(&mut out, value);
        let mut input = &out[..];
        assert_eq!(read_varlong(&mut input), Ok(value));
        assert!(input.is_empty());
    }
}

// Truncation, too many bytes and excess high bits are all rejected, never wrapped.
#[test]
fn malformed_varints_are_rejected() {
    assert_eq!(read_varint(&mut &[][..]), Err(VarintError::Truncated));
    assert_eq!(read_varint(&mut &[0x80][..]), Err(VarintError::Truncated));
    assert_eq!(
        read_varint(&mut &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..]),
        Err(VarintError::Overflow)
    );
    // A fifth byte with bits above the 32nd.
    assert_eq!(
        read_varint(&mut &[0xff, 0xff, 0xff, 0xff, 0x1f][..]),
        Err(VarintError::Overflow)
    );
    assert_eq!(
        read_varlong(&mut &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03][..]),
        Err(VarintError::Overflow)
    );
}
