//! Benchmarks: see BENCHMARKS.md.

mod reload;

use anyhow::{Result, bail};

pub fn run(which: &str, smoke: bool) -> Result<()> {
    match which {
        "all" | "reload" => reload::run(smoke),
        other => bail!("unknown benchmark `{other}`"),
    }
}
