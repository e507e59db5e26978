//! Why a kernel function cannot be probed: it is missing, exists only as compiler-specialised
//! copies (inlined or specialised), or is on the kprobe blacklist.

/// Where the kernel lists its functions (names are listed even when addresses are hidden).
const KALLSYMS: &str = "/proc/kallsyms";
/// Functions kprobes refuse (needs debugfs, and root to read it).
const KPROBE_BLACKLIST: &str = "/sys/kernel/debug/kprobes/blacklist";
/// Where the kprobe PMU (CONFIG_KPROBES) shows itself.
pub const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// Whether this kernel can create kprobes through perf at all.
pub fn kprobes_available() -> bool {
    std::path::Path::new(KPROBE_PMU).is_dir()
}

/// Why `function` cannot be probed, when the kernel's own lists say so; `None` when they show
/// nothing wrong with it (or cannot be read).
pub fn why_unprobeable(function: &str) -> Option<String> {
    let kallsyms = std::fs::read_to_string(KALLSYMS).ok()?;
    match presence(&kallsyms, function) {
        Presence::Absent => Some(format!(
            "`{function}` is not a function of this kernel (not in {KALLSYMS}: missing, or inlined everywhere)"
        )),
        Presence::CopiesOnly(copies) => Some(format!(
            "`{function}` exists in this kernel only as compiler-specialised copies ({}): it was inlined or specialised",
            copies.join(", ")
        )),
        Presence::Present => {
            let blacklist = std::fs::read_to_string(KPROBE_BLACKLIST).ok()?;
            blacklisted(&blacklist, function)
                .then(|| format!("`{function}` is on the kprobe blacklist ({KPROBE_BLACKLIST})"))
        }
    }
}

/// The address of `function` in `/proc/kallsyms` text, when it is there under its own name
/// (root reads real addresses; others read zeros, which are refused).
pub fn address(kallsyms: &str, function: &str) -> Option<u64> {
    kallsyms.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (address, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
        (name == function && kind.eq_ignore_ascii_case("t"))
            .then(|| u64::from_str_radix(address, 16).ok())
            .flatten()
            .filter(|&address| address != 0)
    })
}

/// The kernel's symbols, as [`address`] reads them.
pub fn kallsyms() -> std::io::Result<String> {
    std::fs::read_to_string(KALLSYMS)
}

/// How a function appears among the kernel's text symbols.
#[derive(Debug, PartialEq, Eq)]
enum Presence {
    /// Under its own name.
    Present,
    /// Only as `name.isra.0`, `name.constprop.0`, `name.part.0`, ...
    CopiesOnly(Vec<String>),
    /// Not at all.
    Absent,
}

/// Looks `function` up in `/proc/kallsyms` text (`ffffffff81734e50 t do_signalfd4`).
fn presence(kallsyms: &str, function: &str) -> Presence {
    let copy_prefix = format!("{function}.");
    let mut copies = Vec::new();
    for line in kallsyms.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_address), Some(kind), Some(name)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !kind.eq_ignore_ascii_case("t") {
            continue;
        }
        if name == function {
            return Presence::Present;
        }
        if name.starts_with(&copy_prefix) && !copies.iter().any(|copy| copy == name) {
            copies.push(name.to_string());
        }
    }
    if copies.is_empty() {
        Presence::Absent
    } else {
        Presence::CopiesOnly(copies)
    }
}

/// Whether the kprobe blacklist (`0xstart-0xend\tname` lines) lists `function`.
fn blacklisted(blacklist: &str, function: &str) -> bool {
    blacklist
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(function))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS_TEXT: &str = "\
ffffffff81734e50 t do_signalfd4
ffffffff81735000 T __x64_sys_signalfd4
ffffffff81736000 t fold_me.isra.0
ffffffff81737000 t fold_me.constprop.0
ffffffff81737800 t fold_me.constprop.0
ffffffff81738000 d not_a_function
ffffffffc0000000 t module_fn\t[some_module]
";

    #[test]
    fn finds_functions_and_their_specialised_copies() {
        assert_eq!(presence(KALLSYMS_TEXT, "do_signalfd4"), Presence::Present);
        assert_eq!(
            presence(KALLSYMS_TEXT, "__x64_sys_signalfd4"),
            Presence::Present
        );
        assert_eq!(presence(KALLSYMS_TEXT, "module_fn"), Presence::Present);
        assert_eq!(
            presence(KALLSYMS_TEXT, "fold_me"),
            Presence::CopiesOnly(vec!["fold_me.isra.0".into(), "fold_me.constprop.0".into()])
        );
        assert_eq!(presence(KALLSYMS_TEXT, "not_a_function"), Presence::Absent);
        assert_eq!(presence(KALLSYMS_TEXT, "do_signalfd"), Presence::Absent);
    }

    #[test]
    fn addresses_are_read_for_text_symbols_under_their_own_name() {
        let kallsyms = "ffffffff81734e50 t do_signalfd4\nffffffff81734f00 T vfs_fsync\n\
                        ffffffff82000000 d do_signalfd4_data\n0000000000000000 T hidden\n";
        assert_eq!(
            address(kallsyms, "do_signalfd4"),
            Some(0xffff_ffff_8173_4e50)
        );
        assert_eq!(address(kallsyms, "vfs_fsync"), Some(0xffff_ffff_8173_4f00));
        assert_eq!(address(kallsyms, "do_signalfd"), None);
        assert_eq!(address(kallsyms, "hidden"), None);
    }

    #[test]
    fn reads_the_kprobe_blacklist() {
        let blacklist = "0xffffffff81000000-0xffffffff81000010\tdo_int3\n\
                         0xffffffff81000020-0xffffffff81000030\tnotify_die\n";
        assert!(blacklisted(blacklist, "notify_die"));
        assert!(!blacklisted(blacklist, "do_signalfd4"));
    }

    #[test]
    fn this_kernel_has_do_signalfd4_and_not_a_made_up_name() {
        // Every kernel kspan supports has do_signalfd4 as a real function (see facts).
        assert_eq!(why_unprobeable("do_signalfd4"), None);
        let why = why_unprobeable("kspan_no_such_function").expect("a made-up name is missing");
        assert!(why.contains("is not a function of this kernel"), "{why}");
    }
}
