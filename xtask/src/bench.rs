//! Benchmarks: see BENCHMARKS.md.

use anyhow::{Result, bail};

pub fn run(which: &str, smoke: bool) -> Result<()> {
    let _ = smoke;
    match which {
        "all" => Ok(()),
        other => bail!("unknown benchmark `{other}`"),
    }
}
