//! `--sandbox`: emulated destinations inside the process.

use ebb_core::project::Project;

pub async fn start(_project: &Project) -> anyhow::Result<()> {
    anyhow::bail!("--sandbox is not available yet")
}
