//! Validated identifiers. Every name that ends up in a path or a database key is checked here,
//! once, so the rest of the system can treat a constructed value as safe.

use std::fmt;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serialize;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is too long ({len} > {max} characters)")]
    TooLong {
        kind: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error(
        "{kind} {value:?} is invalid: use 1-64 characters from A-Z a-z 0-9 _ -, starting with a letter or digit"
    )]
    BadCharacters { kind: &'static str, value: String },
    #[error(
        "tenant id {value:?} is invalid: use 1-63 characters from a-z 0-9 -, starting with a letter or digit"
    )]
    BadTenant { value: String },
    #[error("{kind} {value:?} is reserved")]
    Reserved { kind: &'static str, value: String },
    #[error("{kind} {value:?} contains a control character")]
    ControlCharacter { kind: &'static str, value: String },
}

/// The seed's folder rule: `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`. It excludes `/`, `\`, `.`, `..`,
/// whitespace and `:` by construction.
fn check_path_safe_name(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > 64 {
        return Err(IdError::TooLong {
            kind,
            value: value.to_owned(),
            len: value.len(),
            max: 64,
        });
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok {
        return Err(IdError::BadCharacters {
            kind,
            value: value.to_owned(),
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A tenant: the top-level owner of groups, users and credentials. Single-user installs use
    /// [`TenantId::default_tenant`].
    TenantId
);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    /// Longest tenant id (a DNS label's length, so an id can name a subdomain).
    pub const MAX_LEN: usize = 63;

    /// Lowercase letters, digits and `-`, 1 to 63 characters, not starting with `-`: stricter
    /// than a folder name, so two ids never differ by case alone and every id is a DNS label.
    pub fn new(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: "tenant id" });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if value.len() > Self::MAX_LEN || value.starts_with('-') || !value.chars().all(allowed) {
            return Err(IdError::BadTenant {
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

string_id!(
    /// A group's folder name: the on-disk identity of a group inside its tenant.
    GroupFolder
);

impl GroupFolder {
    /// The folder of a tenant's main group, which may act on every group of its tenant.
    pub const MAIN: &'static str = "main";
    /// Reserved: `global` is the tenant-wide memory folder, never a group.
    pub const RESERVED: &'static str = "global";

    pub fn new(value: &str) -> Result<Self, IdError> {
        if value.trim() != value {
            return Err(IdError::BadCharacters {
                kind: "group folder",
                value: value.to_owned(),
            });
        }
        check_path_safe_name("group folder", value)?;
        if value.eq_ignore_ascii_case(Self::RESERVED) {
            return Err(IdError::Reserved {
                kind: "group folder",
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn main() -> Self {
        Self(Self::MAIN.to_owned())
    }

    pub fn is_main(&self) -> bool {
        self.0 == Self::MAIN
    }
}

string_id!(
    /// A chat address as a channel knows it (`cli:console`, `123@g.us`, `web:<tid>:<uid>:<sid>`).
    /// It is an opaque key: it never becomes a path.
    ChatJid
);

impl ChatJid {
    pub const MAX_LEN: usize = 256;

    pub fn new(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: "chat jid" });
        }
        if value.len() > Self::MAX_LEN {
            return Err(IdError::TooLong {
                kind: "chat jid",
                value: value.chars().take(40).collect(),
                len: value.len(),
                max: Self::MAX_LEN,
            });
        }
        if value.chars().any(char::is_control) {
            return Err(IdError::ControlCharacter {
                kind: "chat jid",
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }
}

string_id!(
    /// One sandboxed run. 128 random bits rendered as 32 lowercase hex characters; also a valid
    /// directory name for the per-run socket directory.
    RunId
);

impl RunId {
    pub fn new(value: &str) -> Result<Self, IdError> {
        if value.len() != 32
            || !value
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Err(IdError::BadCharacters {
                kind: "run id",
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// Builds a run id from 16 random bytes supplied by the caller (this crate does no I/O).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(s)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

string_id!(
    /// A scheduled task id (`task-<epochms>-<random>` when created by cambot).
    TaskId
);

impl TaskId {
    /// `task-<epoch_ms>-<6 base36 chars from random>`: always valid.
    pub fn generate(epoch_ms: i64, random: [u8; 6]) -> Self {
        const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let suffix: String = random
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        Self(format!("task-{epoch_ms}-{suffix}"))
    }

    pub fn new(value: &str) -> Result<Self, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty { kind: "task id" });
        }
        if value.len() > 128 {
            return Err(IdError::TooLong {
                kind: "task id",
                value: value.chars().take(40).collect(),
                len: value.len(),
                max: 128,
            });
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(IdError::BadCharacters {
                kind: "task id",
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }
}

/// The key of everything group-scoped: a group is a folder inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub tenant: TenantId,
    pub folder: GroupFolder,
}

impl GroupKey {
    pub fn new(tenant: TenantId, folder: GroupFolder) -> Self {
        Self { tenant, folder }
    }

    pub fn is_main(&self) -> bool {
        self.folder.is_main()
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.folder)
    }
}

#[cfg(test)]
#[path = "ids_tests.rs"]
mod tests;
