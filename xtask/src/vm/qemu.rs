//! Booting one guest in QEMU (software emulation) and watching its console until it powers
//! off, panics or runs out of time.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::console::{ConsoleEvent, ConsoleTail};
use crate::{command, probe_run::ProbeRun};

/// How long a panicking guest may go on printing its trace before QEMU is stopped.
const PANIC_GRACE: Duration = Duration::from_secs(5);

/// What to boot and where its output goes.
pub struct Guest<'a> {
    /// Name in progress lines.
    pub name: &'a str,
    /// The bzImage.
    pub kernel: &'a Path,
    /// The gzipped cpio initramfs.
    pub initrd: &'a Path,
    /// Attach modes `/init` runs, in order.
    pub modes: &'a [ProbeRun],
    /// Where `console.log`, `qemu.stderr` and `results.serial` go.
    pub run_dir: &'a Path,
    /// Longest the guest may run.
    pub timeout: Duration,
}

/// How a guest's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// `/init` ran every mode and powered off.
    PoweredOff,
    /// Out of time: QEMU was killed.
    Timeout,
    /// The kernel panicked.
    Panic,
    /// QEMU exited without the guest saying it was done.
    QemuExited(ExitStatus),
}

/// What the host saw of one guest.
pub struct GuestRun {
    /// How it ended.
    pub end: GuestEnd,
    /// From starting QEMU to `/init`'s first line.
    pub boot_to_init: Option<Duration>,
    /// The guest's own uptime when `/init` started.
    pub guest_uptime_at_init: Option<f64>,
    /// From starting QEMU to its exit.
    pub wall: Duration,
    /// The last console lines.
    pub console_tail: Vec<String>,
    /// The full console output.
    pub console_log: PathBuf,
    /// The second serial port's output: the results stream.
    pub results_stream: PathBuf,
}

/// Boots `guest` and waits for it to end.
pub fn boot(guest: &Guest) -> Result<GuestRun> {
    fs::create_dir_all(guest.run_dir)
        .with_context(|| format!("cannot create {}", guest.run_dir.display()))?;
    let console_log = guest.run_dir.join("console.log");
    let results_stream = guest.run_dir.join("results.serial");
    let stderr_path = guest.run_dir.join("qemu.stderr");
    let stderr = fs::File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let mut log = fs::File::create(&console_log)
        .with_context(|| format!("cannot create {}", console_log.display()))?;

    let modes: Vec<&str> = guest.modes.iter().map(|mode| mode.as_str()).collect();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        "1024",
        // One vCPU: with two, Debian 6.1 guests under emulation on a loaded host now and then
        // livelocked in a soft lockup as tracepoints were enabled (both vCPUs stuck in the
        // kernel: once in CI, once in 44 guests of a 4-at-once stress run; none in 24 guests of
        // the same stress with one vCPU). Multi-CPU capture is tested on the host.
        "-smp",
        "1",
    ])
    .arg("-kernel")
    .arg(guest.kernel)
    .arg("-initrd")
    .arg(guest.initrd)
    // loglevel=5: warnings and their stack traces reach the console, boot chatter does not; a
    // soft lockup panics the guest at once (with the trace) instead of hanging to the timeout.
    .arg("-append")
    .arg(format!(
        "console=ttyS0 panic=-1 loglevel=5 softlockup_panic=1 kspan_modes={}",
        modes.join(",")
    ))
    // ttyS0: the console, read live; ttyS1: the results stream.
    .args(["-serial", "stdio", "-serial"])
    .arg(format!("file:{}", results_stream.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(stderr);
    let started = Instant::now();
    let mut child = qemu.spawn().with_context(|| {
        format!(
            "cannot start `{}` (`cargo xtask setup --vm` installs QEMU)",
            command::describe(&qemu)
        )
    })?;
    let lines = console_lines(&mut child)?;

    let mut tail = ConsoleTail::default();
    let mut boot_to_init = None;
    let mut guest_uptime_at_init = None;
    let mut powered_off = false;
    let mut deadline = started + guest.timeout;
    let mut timed_out = false;
    loop {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = !tail.panicked();
                // Killing a QEMU that already exited fails harmlessly.
                let _ = child.kill();
                break;
            }
        };
        writeln!(log, "{line}")
            .with_context(|| format!("cannot write {}", console_log.display()))?;
        match tail.push(line) {
            Some(ConsoleEvent::InitStarted { guest_uptime_secs }) => {
                let elapsed = started.elapsed();
                boot_to_init = Some(elapsed);
                guest_uptime_at_init = guest_uptime_secs;
                let uptime = guest_uptime_secs
                    .map(|secs| format!(", guest uptime {secs:.2} s"))
                    .unwrap_or_default();
                println!(
                    "[{}] /init running after {:.1} s{uptime}",
                    guest.name,
                    elapsed.as_secs_f64()
                );
            }
            Some(ConsoleEvent::ModeStarted(mode)) => {
                println!(
                    "[{}] {mode}: running ({:.1} s)",
                    guest.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Some(ConsoleEvent::ModeDone(mode)) => {
                println!(
                    "[{}] {mode}: results shipped ({:.1} s)",
                    guest.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Some(ConsoleEvent::PoweringOff) => powered_off = true,
            Some(ConsoleEvent::KernelPanic) => {
                println!(
                    "[{}] kernel panic ({:.1} s)",
                    guest.name,
                    started.elapsed().as_secs_f64()
                );
                deadline = deadline.min(Instant::now() + PANIC_GRACE);
            }
            None => {}
        }
    }
    let status = child.wait().context("cannot wait for QEMU")?;
    let wall = started.elapsed();
    let end = if tail.panicked() {
        GuestEnd::Panic
    } else if timed_out {
        GuestEnd::Timeout
    } else if powered_off && status.success() {
        GuestEnd::PoweredOff
    } else {
        tail.extend(qemu_stderr_tail(&stderr_path));
        GuestEnd::QemuExited(status)
    };
    Ok(GuestRun {
        end,
        boot_to_init,
        guest_uptime_at_init,
        wall,
        console_tail: tail.into_lines(),
        console_log,
        results_stream,
    })
}

/// QEMU's stdout, one console line at a time, from a reader thread (so the host can time out).
fn console_lines(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("QEMU has no stdout pipe")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buffer = Vec::new();
        // Ends at EOF (QEMU exited), on a read error, or when nobody listens any more.
        while reader
            .read_until(b'\n', &mut buffer)
            .is_ok_and(|read| read > 0)
        {
            let line = String::from_utf8_lossy(&buffer)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if sender.send(line).is_err() {
                break;
            }
            buffer.clear();
        }
    });
    Ok(receiver)
}

fn qemu_stderr_tail(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(|line| format!("qemu: {line}")).collect();
    lines[lines.len().saturating_sub(5)..].to_vec()
}
