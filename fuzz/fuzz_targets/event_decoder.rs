//! Ring-buffer records, as any bytes: the agent's decoder, then the decoded call's renderings.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kspan_fuzz::event_decoder(data));
