use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// A stream entry id, `<milliseconds>-<sequence>` as Redis spells it.
///
/// ```
/// let id: eddy::engine::EntryId = "1700000000000-3".parse()?;
/// assert_eq!(id.ms, 1_700_000_000_000);
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert!("abc".parse::<eddy::engine::EntryId>().is_err());
/// # Ok::<(), eddy::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds part (the server's clock when the entry was added).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The smallest id.
    pub const MIN: EntryId = EntryId { ms: 0, seq: 0 };
    /// The largest id.
    pub const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// An id from its parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The next id after this one (saturating at [`EntryId::MAX`]).
    pub fn next(self) -> Self {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                self
            } else {
                Self::new(self.ms + 1, 0)
            }
        } else {
            Self::new(self.ms, self.seq + 1)
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidMessageId,
                format!("invalid message id `{s}`: expected <milliseconds>-<sequence>, e.g. 1700000000000-0"),
            )
        };
        let (ms, seq) = s.split_once('-').ok_or_else(invalid)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(invalid());
        }
        Ok(Self::new(
            ms.parse().map_err(|_| invalid())?,
            seq.parse().map_err(|_| invalid())?,
        ))
    }
}

impl serde::Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("0-0".parse::<EntryId>().ok(), Some(EntryId::MIN));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "1-2-3",
            "a-1",
            "1-b",
            " 1-2",
            "1-2 ",
            "+1-2",
            "123456789012345678901-0",
        ] {
            let err = bad.parse::<EntryId>().err().map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::InvalidMessageId), "{bad:?}");
        }
    }

    #[test]
    fn orders_and_steps() {
        let a = EntryId::new(5, u64::MAX);
        assert_eq!(a.next(), EntryId::new(6, 0));
        assert!(EntryId::new(5, 1) < EntryId::new(5, 2));
        assert_eq!(EntryId::MAX.next(), EntryId::MAX);
    }
}
