//! The signal-mask, signal-number, flags and errno decoders on every value the bytes spell.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kspan_fuzz::decoders(data));
