//! The fuzz targets' bodies: each feeds bytes to kspan's own decoders and checks what must hold
//! for any input. `fuzz_targets/` runs them under libFuzzer (nightly, `cargo xtask fuzz`);
//! `decode/tests/fuzz_corpus.rs` replays the committed corpus through them in every `cargo test`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use kspan_common::{
    declared::{DeclaredEvent, DECLARED_EVENT_WITHOUT_STRINGS},
    COMM_LEN,
};
use kspan_decode::{
    errno_name, flag_names, parse_declared_event, signal_name,
    test_support::{openat_probe, signalfd_probe},
    BootClock, CallDecoder, CallDetail, EventError, ProbeInfo, SignalMask,
};

/// The probes the decoder knows: 0 is the built-in signalfd probe on `signalfd4`'s tracepoints,
/// 1 a declared probe with a string (`openat`); records of others are refused.
fn probes() -> Vec<Arc<ProbeInfo>> {
    vec![Arc::new(signalfd_probe()), Arc::new(openat_probe())]
}

/// One decoder for the whole run, as in the agent: its clock offset and name cache carry over.
fn decoder() -> &'static Mutex<CallDecoder> {
    static DECODER: OnceLock<Mutex<CallDecoder>> = OnceLock::new();
    DECODER.get_or_init(|| {
        let clock = BootClock::measure().expect("CLOCK_REALTIME and CLOCK_BOOTTIME are readable");
        Mutex::new(CallDecoder::new(clock).with_declared(probes()))
    })
}

/// A ring-buffer record through the agent's decoder, then the call through what renders it
/// (span name, operation, probe and mask-source names, fd/errno, the strace-like summary).
pub fn event_decoder(data: &[u8]) {
    let parsed = parse_declared_event(data);
    let sizes = [size_of::<DeclaredEvent>(), DECLARED_EVENT_WITHOUT_STRINGS];
    assert_eq!(parsed.is_ok(), sizes.contains(&data.len()), "{parsed:?}");
    let decoded = decoder()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .decode(data);
    let (call, event) = match (decoded, parsed) {
        (Ok(call), Ok(event)) => (call, event),
        (Err(EventError::Size(len)), _) => return assert_eq!(len, data.len()),
        (Err(EventError::UndeclaredProbe(probe)), Ok(event)) => {
            return assert!(probe == event.probe && probe >= 2, "probe {probe}")
        }
        (Err(EventError::Field { field, value }), Ok(event)) => {
            return assert_eq!((field, value), ("probe", event.kind))
        }
        (Err(error), Err(_)) => panic!("refused a record that does not parse for {error}"),
        (Ok(_), Err(error)) => panic!("decoded a record that does not parse: {error}"),
    };
    let raw = (event.pid, event.tid, event.uid, event.euid, event.cgroup_id);
    let decoded = (call.pid, call.tid, call.uid, call.euid, call.cgroup_id);
    assert_eq!(raw, decoded);
    // Each byte of a comm that is not UTF-8 becomes U+FFFD, three bytes long.
    assert!(
        call.thread_name.len() <= 3 * COMM_LEN,
        "{:?}",
        call.thread_name
    );
    assert!(!call.thread_name.contains('\0'), "{:?}", call.thread_name);
    let summary = call.summary().to_string();
    assert!(summary.starts_with(call.name()), "{summary}");
    assert!(!call.probe_name().is_empty());
    let signalfd = match &call.detail {
        CallDetail::Signalfd(signalfd) => signalfd,
        CallDetail::Declared(declared) => {
            assert_eq!((event.probe, call.name()), (1, "openat"), "{summary}");
            assert_eq!(declared.values.len(), 4, "{summary}");
            return;
        }
    };
    assert_eq!(event.probe, 0, "{summary}");
    let values = event.captured.values;
    let args = (
        values[0] as i32,
        values[3] as i32,
        values[1],
        event.ret as i32,
    );
    assert_eq!(
        args,
        (signalfd.ufd, signalfd.flags, signalfd.mask.0, signalfd.ret)
    );
    assert_eq!(signalfd.fd().is_some(), signalfd.ret >= 0, "{summary}");
    match call.error() {
        Some(errno) => {
            assert!(signalfd.ret < 0, "{summary}");
            assert!(summary.ends_with(&format!(") = -1 {errno}")), "{summary}");
        }
        None => assert!(
            summary.ends_with(&format!(") = {}", signalfd.ret)),
            "{summary}"
        ),
    }
    let names = [signalfd.operation(), signalfd.mask_source_name()];
    assert!(names.iter().all(|name| !name.is_empty()), "{names:?}");
}

/// The values the bytes spell, little-endian, zero-padded: mask, flags, errno, signal number.
fn spelled(data: &[u8]) -> (u64, i32, i32, i32) {
    let mut bytes = [0u8; 20];
    let used = data.len().min(bytes.len());
    bytes[..used].copy_from_slice(&data[..used]);
    let word =
        |at: usize| i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut mask = [0u8; 8];
    mask.copy_from_slice(&bytes[..8]);
    (u64::from_le_bytes(mask), word(8), word(12), word(16))
}

/// The mask, signal-number, flags and errno decoders: nothing lost, nothing invented.
pub fn decoders(data: &[u8]) {
    let (mask, flags, errno, signo) = spelled(data);

    let names: Vec<&str> = SignalMask(mask).names().collect();
    assert_eq!(names.len(), mask.count_ones() as usize, "{names:?}");
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        names.len(),
        "a name stands for two signals: {names:?}"
    );
    for (name, signo) in names.iter().zip(SignalMask(mask).signals()) {
        assert_eq!(*name, signal_name(signo));
        assert!(name.starts_with("SIG") && name.len() > 3, "{name}");
    }
    let shown = SignalMask(mask).to_string();
    assert_eq!(shown.len(), 18, "{shown}");
    assert_eq!(
        u64::from_str_radix(&shown[2..], 16).ok(),
        Some(mask),
        "{shown}"
    );

    let name = signal_name(signo);
    assert!(name.starts_with("SIG") && name.len() > 3, "{signo}: {name}");

    let mut rebuilt = 0i32;
    for name in flag_names(flags) {
        rebuilt |= match name.as_ref() {
            "SFD_CLOEXEC" => libc::SFD_CLOEXEC,
            "SFD_NONBLOCK" => libc::SFD_NONBLOCK,
            hex => {
                let digits = hex
                    .strip_prefix("0x")
                    .unwrap_or_else(|| panic!("flag {hex}"));
                u32::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("flag {hex}")) as i32
            }
        };
    }
    assert_eq!(
        rebuilt,
        flags,
        "{:?}",
        flag_names(flags).collect::<Vec<_>>()
    );

    let name = errno_name(errno);
    assert!(name.starts_with('E') && name.len() > 1, "{errno}: {name}");
}
