//! Encoding alone: runs the encode bench (`otel/benches/encode.rs`) and reads the figures it
//! writes, so the report shows the hand-written encoder beside its prost baseline.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use super::results::EncodingRun;
use crate::{
    command::{self, Profile},
    paths,
};

/// Runs the encode bench with `profile`'s optimisation (the dev build runs one batch of each,
/// as `cargo test --benches` does) and reads its figures.
pub fn measure(profile: Profile, out_dir: &Path) -> Result<EncodingRun> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let json = out_dir.join("encode.json");
    let mut bench = Command::new(env!("CARGO"));
    bench.current_dir(paths::workspace_root());
    bench.arg(match profile {
        Profile::Release => "bench",
        Profile::Dev => "test",
    });
    bench
        .args(["-p", "kspan-otel", "--bench", "encode", "--", "--json"])
        .arg(&json);
    command::run(&mut bench)?;
    let text = fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not the encode bench's figures", json.display()))
}
