//! murmur2 against Kafka's own vectors, and key placement.

use super::*;

/// Kafka's `UtilsTest.testMurmur2` vectors (the same values appear in sarama, franz-go and
/// librdkafka test suites, generated with the JVM client), plus the empty key.
const KAFKA_VECTORS: &[(&[u8], i32)] = &[
    (b"21", -973_932_308),
    (b"foobar", -790_332_482),
    (&[12, 42, 56, 24, 109, 111], 274_204_207),
    (b"a-little-bit-long-string", -985_981_536),
    (b"a-little-bit-longer-string", -1_486_304_829),
    (
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58_897_971,
    ),
    (b"abc", 479_470_107),
    (b"", 275_646_681),
];

#[test]
fn murmur2_matches_kafka() {
    for (input, expected) in KAFKA_VECTORS {
        assert_eq!(murmur2(input), *expected, "murmur2({input:?})");
    }
}

// Goal: placement is Kafka's `to_positive(murmur2) % n`, and a count of 0 cannot divide by 0.
#[test]
fn keys_land_where_kafka_puts_them() {
    // to_positive(-973932308) = 1173551340; 1173551340 % 3 = 0, % 7 = 6.
    assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
    assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
    assert_eq!(partition_for_key(b"21", 0), 0);
    assert_eq!(partition_for_key(b"21", 1), 0);
}
