//! How much the receiver accepts.

/// The largest request the receiver accepts, on either transport, after decompression.
///
/// Generous on purpose: a benchmark's exporter may send big batches, and a refused batch would
/// look like lost telemetry.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
