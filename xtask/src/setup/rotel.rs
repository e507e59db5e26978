//! rotel, the OpenTelemetry collector the end-to-end tests put between kspan and the receiver:
//! the pinned PyPI release in a venv under the target directory (the version, the venv and the
//! binary's place are the harness's, `kspan_e2e::rotel`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use kspan_e2e::rotel::{agent_path, venv_dir, ROTEL_VERSION};

use crate::{command, paths};

/// Installs rotel unless the pinned version is already in the venv with its binary linked.
pub fn ensure() -> Result<()> {
    let venv = venv_dir(&paths::target_dir());
    if installed(&venv).as_deref() == Some(ROTEL_VERSION) {
        return Ok(());
    }
    println!(
        "setup: installing rotel {ROTEL_VERSION} from PyPI into {}: the end-to-end tests send through this collector",
        venv.display()
    );
    install(&venv).with_context(|| {
        format!(
            "cannot install rotel {ROTEL_VERSION} (PyPI) into {}",
            venv.display()
        )
    })
}

/// The rotel version in the venv, if the venv's Python has one and its binary is linked and runs.
fn installed(venv: &Path) -> Option<String> {
    if !command::succeeds(Command::new(agent_path(venv)).arg("--version")) {
        return None;
    }
    command::stdout_of(Command::new(python(venv)).args([
        "-c",
        "import importlib.metadata as m; print(m.version('rotel'))",
    ]))
    .ok()
    .map(|version| version.trim().to_owned())
}

fn install(venv: &Path) -> Result<()> {
    if !python(venv).is_file() {
        let python3 = command::find_on_path("python3")
            .context("python3 is not on PATH: install Python 3 (with its venv module)")?;
        command::run(Command::new(python3).arg("-m").arg("venv").arg(venv)).context(
            "creating the venv (on Debian, `apt-get install python3-venv` adds the venv module)",
        )?;
    }
    command::run(Command::new(python(venv)).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("rotel=={ROTEL_VERSION}"),
    ]))?;
    // pip leaves the binary inside the package, under a path naming the Python version: link it
    // to the one place the tests look.
    let inside = command::stdout_of(Command::new(python(venv)).args([
        "-c",
        "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
    ]))?;
    let inside = PathBuf::from(inside.trim());
    let link = agent_path(venv);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&inside, &link)
        .with_context(|| format!("linking {} to {}", link.display(), inside.display()))?;
    match installed(venv) {
        Some(version) if version == ROTEL_VERSION => Ok(()),
        other => bail!(
            "after pip install, {} does not run as rotel {ROTEL_VERSION} (found {other:?})",
            link.display()
        ),
    }
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}
