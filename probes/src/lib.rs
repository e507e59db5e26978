//! kspan's eBPF programs live in the `kspan-probes` binary target (`src/main.rs`), built for
//! the BPF target by `agent/build.rs`. This empty library only lets the agent declare a
//! build-dependency on the crate so cargo rebuilds the agent when the probes change.
#![no_std]
