//! `fuzz-seeds DIR`: write every target's seeds to `DIR/<target>/seed-<i>`
//! (the starting corpus of `bench/fuzz.sh`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        std::process::exit(2);
    };
    for t in byzscale_fuzzing::TARGETS {
        let d = dir.join(t.name);
        std::fs::create_dir_all(&d)?;
        for (i, s) in (t.seeds)().iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), s)?;
        }
    }
    Ok(())
}
