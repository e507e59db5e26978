//! kspan's eBPF programs live in the binary targets `kspan-probes` (`src/main.rs`: the product)
//! and `kspan-floor` (`src/floor/main.rs`: the bench's empty programs), built for the BPF target
//! by `agent/build.rs`. This empty library only lets the agent declare a build-dependency on the
//! crate so cargo rebuilds the agent when the probes change.
#![no_std]
