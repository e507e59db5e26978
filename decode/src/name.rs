//! [`Name`]: a thread's or a process's name, kept inline so that decoding a call allocates
//! nothing.

use std::{fmt, ops::Deref, str};

/// Bytes kept inline: a `comm` (16 bytes) or an executable's basename (up to 40), as text.
const INLINE: usize = 46;

/// A short name (a thread's `comm`, an executable's basename), inline up to 46 bytes of text;
/// a longer one (only a name with many invalid UTF-8 bytes, each replaced by three) is boxed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Repr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Long(Box<str>),
}

impl Name {
    /// `bytes` as text, invalid UTF-8 replaced.
    pub fn from_utf8_lossy(bytes: &[u8]) -> Self {
        match str::from_utf8(bytes) {
            Ok(text) => Self::from(text),
            Err(_) => Self::from(String::from_utf8_lossy(bytes).as_ref()),
        }
    }

    /// The name's UTF-8 bytes, without the check [`Name::as_str`] makes: what encoders write.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Long(text) => text.as_bytes(),
        }
    }

    /// Its length in bytes, without that check.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether it is empty, without that check.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ever filled from a `&str` cut at its end: always valid.
            Repr::Inline { len, bytes } => {
                str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Repr::Long(text) => text,
        }
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        match text.len() {
            len @ 0..=INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..len].copy_from_slice(text.as_bytes());
                Self(Repr::Inline {
                    len: len as u8,
                    bytes,
                })
            }
            _ => Self(Repr::Long(text.into())),
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Self::from("")
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_inline_and_long_ones_kept_whole() {
        let exe = "a".repeat(40);
        assert!(matches!(Name::from(exe.as_str()).0, Repr::Inline { .. }));
        assert_eq!(Name::from(exe.as_str()), exe.as_str());
        // Forty invalid bytes become forty three-byte replacement characters.
        let mangled = Name::from_utf8_lossy(&[0xff; 40]);
        assert!(matches!(mangled.0, Repr::Long(_)));
        assert_eq!(mangled.chars().count(), 40);
        assert_eq!(Name::from_utf8_lossy(b"w\xffx"), "w\u{fffd}x");
        assert_eq!(mangled.len(), 120);
        assert_eq!(mangled.as_bytes(), mangled.as_str().as_bytes());
        assert_eq!(size_of::<Name>(), 48);
    }
}
