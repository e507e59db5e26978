//! Debian's apt: installing tools and reading the package index, with `apt-get update` at most
//! once per xtask run.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::command;

/// apt-get with a memory of whether the package index was already refreshed in this run.
#[derive(Default)]
pub struct Apt {
    updated: bool,
}

impl Apt {
    /// Refreshes the package index unless this run already did.
    pub fn update_once(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        println!("running apt-get update: the package index may be missing or stale");
        command::run(Command::new("apt-get").args(["update", "-q"])).context(
            "apt-get update failed (it needs root and network access to the Debian mirrors)",
        )?;
        self.updated = true;
        Ok(())
    }

    /// Installs `packages` (after refreshing the index once).
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        self.update_once()?;
        command::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| {
            format!(
                "cannot install {} (apt-get install needs root)",
                packages.join(" ")
            )
        })
    }
}

/// Whether dpkg lists `package` as installed.
pub fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.ends_with(b"install ok installed"))
}
