//! Ring-buffer records to [`Call`]s (layout check, enum validation, wall-clock times, process
//! names, the caller's cgroup with its container and pod), and the small named decoders that make kernel values readable (signal masks, signalfd
//! flags, errnos), each tested on its own. The fuzz targets (`fuzz/`) drive this crate.

mod call;
pub mod cgroup;
mod clock;
mod declared;
mod decoders;
mod errno;
mod event;
mod flags;
mod mask;
mod name;
mod process_details;
mod process_names;
#[cfg(test)]
mod properties;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use call::{Call, CallDetail, SignalfdCall, SignalfdLayout};
pub use cgroup::{CgroupLookup, CgroupResolver};
pub use clock::BootClock;
pub use declared::{ArgType, ArgValue, ArgumentInfo, DeclaredCall, ProbeInfo, ResultKind};
pub use decoders::Decoder;
pub use errno::errno_name;
pub use event::{parse_declared_event, CallDecoder, EventError};
pub use flags::{flag_names, open_flag_names};
pub use mask::{signal_name, SignalMask};
pub use name::Name;
pub use process_details::ProcessDetails;
