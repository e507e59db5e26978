//! Kernel timestamps (CLOCK_BOOTTIME, which keeps counting through suspend) to wall-clock time.

use std::time::{Duration, Instant, SystemTime};

use nix::time::{clock_gettime, ClockId};

/// How often the offset is measured again, so wall-clock steps (NTP, settimeofday) are followed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Converts CLOCK_BOOTTIME nanoseconds to UNIX time.
#[derive(Debug)]
pub struct BootClock {
    /// UNIX nanoseconds minus BOOTTIME nanoseconds.
    offset_ns: i128,
    measured_at: Instant,
}

impl BootClock {
    /// Measures the offset between the two clocks now.
    pub fn measure() -> nix::Result<Self> {
        Ok(Self {
            offset_ns: measure_offset()?,
            measured_at: Instant::now(),
        })
    }

    /// The wall-clock time of a kernel `bpf_ktime_get_boot_ns()` reading.
    pub fn wall_time(&mut self, boot_ns: u64) -> SystemTime {
        if self.measured_at.elapsed() > REFRESH_EVERY {
            match measure_offset() {
                Ok(offset_ns) => self.offset_ns = offset_ns,
                Err(error) => tracing::warn!(%error, "cannot re-measure the boot clock offset"),
            }
            self.measured_at = Instant::now();
        }
        boot_to_unix(boot_ns, self.offset_ns)
    }
}

/// `boot_ns + offset_ns` as a `SystemTime`, clamped at the epoch.
pub fn boot_to_unix(boot_ns: u64, offset_ns: i128) -> SystemTime {
    let unix_ns = (i128::from(boot_ns) + offset_ns).max(0);
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(unix_ns).unwrap_or(u64::MAX))
}

/// Reads REALTIME, BOOTTIME, REALTIME and keeps the sample with the tightest bracket: its
/// midpoint error is at most half that bracket (tens of nanoseconds).
fn measure_offset() -> nix::Result<i128> {
    let nanos = |clock| {
        clock_gettime(clock)
            .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
    };
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..16 {
        let before = nanos(ClockId::CLOCK_REALTIME)?;
        let boot = nanos(ClockId::CLOCK_BOOTTIME)?;
        let after = nanos(ClockId::CLOCK_REALTIME)?;
        let bracket = after - before;
        let offset = before + bracket / 2 - boot;
        if best.is_none_or(|(best_bracket, _)| bracket < best_bracket) {
            best = Some((bracket, offset));
        }
    }
    Ok(best.map_or(0, |(_, offset)| offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_offset() {
        let time = boot_to_unix(5_000_000_000, 1_700_000_000_000_000_000);
        assert_eq!(
            time.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::from_nanos(1_700_000_005_000_000_000)
        );
    }

    #[test]
    fn clamps_before_the_epoch() {
        assert_eq!(boot_to_unix(1, -10), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn a_boottime_reading_now_converts_to_now() {
        let mut clock = BootClock::measure().unwrap();
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let converted = clock.wall_time(boot_ns);
        let now = SystemTime::now();
        let skew = now
            .duration_since(converted)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_millis(50), "skew {skew:?}");
    }
}
