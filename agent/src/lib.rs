//! kspan's decoding of ring-buffer records into calls (layout check, enum validation, wall-clock
//! times, process names), as a library so the fuzz targets (`fuzz/`) drive the agent's own code.

pub mod clock;
pub mod event;
mod process_names;
