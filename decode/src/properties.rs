//! Any value the kernel can hand over decodes without panicking, and nothing is lost.

use proptest::prelude::*;

use crate::{errno_name, flag_names, SignalMask};

proptest! {
    #[test]
    fn every_mask_bit_gets_exactly_one_name(mask: u64) {
        let names: Vec<_> = SignalMask(mask).names().collect();
        prop_assert_eq!(names.len(), mask.count_ones() as usize);
        prop_assert!(names.iter().all(|name| name.starts_with("SIG")));
        prop_assert_eq!(SignalMask(mask).to_string().len(), 18);
    }

    #[test]
    fn flags_keep_every_bit(flags: i32) {
        let mut rebuilt = 0i32;
        for name in flag_names(flags) {
            rebuilt |= match name.as_ref() {
                "SFD_CLOEXEC" => libc::SFD_CLOEXEC,
                "SFD_NONBLOCK" => libc::SFD_NONBLOCK,
                hex => u32::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap() as i32,
            };
        }
        prop_assert_eq!(rebuilt, flags);
    }

    #[test]
    fn any_errno_has_a_name(errno: i32) {
        prop_assert!(errno_name(errno).starts_with('E'));
    }
}
