//! The CI short version of the fuzz campaigns: every target's function over every file of its
//! checked-in corpus (seeds, minimized coverage, past crashes), over its seeds as built now, and
//! over seeded pseudo-random mutations of them. No instrumentation, so it runs in `cargo test`.
//! A failure names the corpus file or the case seed; `LEDGE_FUZZ_REPLAY_CASES=<n>` runs more
//! cases per target.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::{TARGETS, Target};

/// Pseudo-random inputs per target in the default run: with the corpora, the whole replay takes
/// 3-5 s in a debug build on the loaded 2-core machine.
const REPLAY_CASES_DEFAULT: u64 = 4_000;

/// Largest input the mutator builds; libFuzzer's default `-max_len` is 4096.
const INPUT_BYTES_MAX: usize = 4_096;

fn corpus_files(target: &Target) -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target.name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `input` through `target`, naming `what` if an oracle fails.
fn replay(target: &Target, input: &[u8], what: &dyn Fn() -> String) {
    if catch_unwind(AssertUnwindSafe(|| (target.run)(input))).is_err() {
        panic!(
            "{} failed on {} ({} bytes: {:02x?})",
            target.name,
            what(),
            input.len(),
            &input[..input.len().min(256)]
        );
    }
}

#[test]
fn every_corpus_file_replays() {
    for target in TARGETS {
        let files = corpus_files(target);
        assert!(
            files.len() >= 5,
            "{}: corpus has {} files; run `cargo run -p ledge-fuzz --example write_seeds`",
            target.name,
            files.len()
        );
        for file in files {
            let input = std::fs::read(&file).unwrap();
            replay(target, &input, &|| file.display().to_string());
        }
    }
}

// The oracles only bite on inputs a decoder accepts: each target's seeds must be accepted, or
// the replay would exercise nothing but error paths.
#[test]
fn seeds_are_accepted_and_replay() {
    use ledge_protocol::{DecodeLimits, validate_batch_records};

    for target in TARGETS {
        let seeds = (target.seeds)();
        assert!(seeds.len() >= 5, "{}: {} seeds", target.name, seeds.len());
        for (index, seed) in seeds.iter().enumerate() {
            replay(target, seed, &|| format!("seed {index}"));
            let accepted = match target.name {
                "kafka_request" => {
                    ledge_node::kafka::codec::decode_request(bytes::Bytes::copy_from_slice(seed))
                        .is_ok()
                }
                "record_batch" => ledge_protocol::BatchIter::new(seed).all(|item| {
                    item.is_ok_and(|(_, batch)| {
                        validate_batch_records(batch, &DecodeLimits::default()).is_ok()
                    })
                }),
                "native_frame" => {
                    ledge_protocol::wire::decode_request(bytes::Bytes::copy_from_slice(seed))
                        .is_ok()
                        || seed.first().is_some_and(|&selector| {
                            let api = ledge_protocol::wire::ApiKey::ALL
                                [usize::from(selector) % ledge_protocol::wire::ApiKey::ALL.len()];
                            ledge_protocol::wire::decode_response(
                                api,
                                bytes::Bytes::copy_from_slice(&seed[1..]),
                            )
                            .is_ok()
                        })
                        || ledge_protocol::wire::replica::ReplicaFetchRequest::decode_bounded(
                            bytes::Bytes::copy_from_slice(seed),
                            &Default::default(),
                        )
                        .is_ok()
                        || ledge_protocol::wire::replica::ReplicaFetchResponse::decode_bounded(
                            bytes::Bytes::copy_from_slice(seed),
                            &Default::default(),
                        )
                        .is_ok()
                }
                "consumer_protocol" => {
                    ledge_node::groups::consumer_protocol::decode_subscription(seed).is_ok()
                        || ledge_node::groups::consumer_protocol::decode_assignment(seed).is_ok()
                }
                "storage_files" => storage_file_accepted(seed),
                "sasl" => crate::sasl::accepted(seed),
                "plugin_output" => plugin_output_accepted(seed),
                "config_toml" => ledge_node::config::NodeConfig::from_toml(
                    &String::from_utf8_lossy(seed),
                    crate::config_toml::ORIGIN,
                )
                .is_ok(),
                other => panic!("add {other} to seeds_are_accepted_and_replay"),
            };
            assert!(
                accepted,
                "{} seed {index} is refused by its decoder",
                target.name
            );
        }
    }
}

/// Whether the decoder `plugin_output` picks for `seed` accepts it.
fn plugin_output_accepted(seed: &[u8]) -> bool {
    crate::plugin_output::accepted(seed)
}

/// Whether the loader `storage_files` picks for `seed` accepts it.
fn storage_file_accepted(seed: &[u8]) -> bool {
    use ledge_node::storage::{checkpoint, leader_epoch, producers, recovery, segment};

    let Some((&selector, content)) = seed.split_first() else {
        return false;
    };
    match selector % 4 {
        0 => checkpoint::Checkpoint::decode(content).is_ok(),
        1 => leader_epoch::LeaderEpochCache::decode(content).is_ok(),
        2 => producers::ProducerStates::decode_snapshot(content)
            .is_some_and(|states| !states.is_empty()),
        _ => {
            let header = segment::SEGMENT_HEADER_BYTES as usize;
            segment::check_segment_header(content).is_ok()
                && recovery::scan(
                    &content[header..],
                    segment::SEGMENT_HEADER_BYTES,
                    0,
                    false,
                    &mut |_, _, _| Ok(()),
                )
                .stop
                    == recovery::ScanStop::End
        }
    }
}

#[test]
fn mutated_inputs_hold_the_oracles() {
    let cases = std::env::var("LEDGE_FUZZ_REPLAY_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(REPLAY_CASES_DEFAULT);
    for (number, target) in TARGETS.iter().enumerate() {
        let mut pool = (target.seeds)();
        pool.extend(
            corpus_files(target)
                .iter()
                .map(|file| std::fs::read(file).unwrap()),
        );
        for case in 0..cases {
            let case_seed = (number as u64) << 32 | case;
            let input = mutate(&mut SplitMix64(case_seed), &pool);
            replay(target, &input, &|| format!("case seed {case_seed:#x}"));
        }
    }
}

/// A pseudo-random input: a pool entry with a few byte-level mutations of the kinds libFuzzer
/// makes (flip, set to an interesting value, insert, erase, splice, truncate), or plain noise.
fn mutate(rng: &mut SplitMix64, pool: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(16) == 0 {
        let length = rng.below(256);
        return (0..length).map(|_| rng.next() as u8).collect();
    }
    let mut input = pool[rng.below(pool.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 if at < input.len() => {
                const INTERESTING: [u8; 6] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];
                input[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
            3 if at < input.len() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            4 => {
                let donor = &pool[rng.below(pool.len())];
                let from = rng.below(donor.len() + 1);
                let end = (from + rng.below(32)).min(donor.len());
                input.splice(at..at, donor[from..end].iter().copied());
            }
            _ => input.truncate(at),
        }
    }
    input.truncate(INPUT_BYTES_MAX);
    input
}

/// SplitMix64: a fixed, portable generator, so a case seed replays on any machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        (self.next() % bound as u64) as usize
    }
}
