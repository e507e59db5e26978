//! Debian package version ordering (`dpkg --compare-versions`), to pick the newest kernel package.

use std::cmp::Ordering;

/// Compares two Debian versions (`[epoch:]upstream[-revision]`) the way dpkg does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_upstream, a_revision) = split(a);
    let (b_epoch, b_upstream, b_revision) = split(b);
    a_epoch
        .cmp(&b_epoch)
        .then_with(|| compare_part(a_upstream, b_upstream))
        .then_with(|| compare_part(a_revision, b_revision))
}

fn split(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(0), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's weight of a non-digit character: `~` sorts before everything, even the end of the
/// string; letters sort before other characters.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating runs of non-digits (by weight) and digits (by value).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while a.get(i).is_some_and(|c| !c.is_ascii_digit())
            || b.get(j).is_some_and(|c| !c.is_ascii_digit())
        {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while let (Some(ca), Some(cb)) = (
            a.get(i).filter(|c| c.is_ascii_digit()),
            b.get(j).filter(|c| c.is_ascii_digit()),
        ) {
            if first_difference == Ordering::Equal {
                first_difference = ca.cmp(cb);
            }
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn assert_order(lower: &str, higher: &str) {
        assert_eq!(compare(lower, higher), Ordering::Less, "{lower} < {higher}");
        assert_eq!(
            compare(higher, lower),
            Ordering::Greater,
            "{higher} > {lower}"
        );
    }

    #[test]
    fn numbers_compare_by_value_not_text() {
        assert_order("6.1.99-1", "6.1.158-1");
        assert_order("6.12.107-1~deb12u1", "6.12.111-1~deb12u1");
        assert_order("1.9", "1.10");
    }

    #[test]
    fn tilde_sorts_before_the_end() {
        assert_order("1.0~rc1", "1.0");
        assert_order("6.12.111-1~deb12u1", "6.12.111-1");
        assert_order("1.0~~", "1.0~");
    }

    #[test]
    fn epoch_and_revision() {
        assert_order("9.9-9", "1:0.1-1");
        assert_order("1.0-1", "1.0-1+b1");
        assert_order("1.0-1", "1.0-2");
        assert_order("1.0a", "1.0+");
        assert_eq!(compare("1.0-01", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("6.1.192-2", "0:6.1.192-2"), Ordering::Equal);
    }
}
