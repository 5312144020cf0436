//! Writes the seed inputs of every fuzz target to `fuzz/corpus/<target>/seed-<crc>`, where
//! `cargo fuzz run` starts from and the replay test reads them. Existing files are kept; a
//! seed already there (same name, same bytes) is not written again.
//!
//! `cargo run -p ledge-fuzz --example write_seeds`

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in ledge_fuzz::TARGETS {
        let directory = corpus.join(target.name);
        std::fs::create_dir_all(&directory)?;
        let seeds = (target.seeds)();
        for seed in &seeds {
            let name = format!("seed-{:08x}-{}", crc32c::crc32c(seed), seed.len());
            std::fs::write(directory.join(name), seed)?;
        }
        println!("{}: {} seeds", target.name, seeds.len());
    }
    Ok(())
}
