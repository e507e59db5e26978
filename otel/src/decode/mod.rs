//! Small, named decoders from raw kernel values to readable names, each tested on its own.

mod errno;
mod flags;
mod mask;

pub use errno::errno_name;
pub use flags::flag_names;
pub use mask::{signal_name, SignalMask};
