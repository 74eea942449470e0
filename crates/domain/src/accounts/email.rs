//! `Email`: trimmed, lower-cased and checked for a plausible shape. Whether it can receive mail
//! is not something a regular expression can tell.

use std::fmt;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// The longest address SMTP allows (RFC 5321's path limit less its brackets), in bytes.
    pub const MAX_BYTES: usize = 254;

    /// A fixed-size stand-in for an address (normalized as `parse` does), for keys in shared
    /// stores: whatever its length, an address becomes 64 hex characters, and no address is
    /// readable from the store.
    pub fn digest(normalized: &str) -> String {
        hex::encode(Sha256::digest(normalized.as_bytes()))
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("is required");
        }
        if email.len() > Self::MAX_BYTES {
            return Err("must be at most 254 bytes");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("must be a valid email address");
        };
        let valid = !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !local.contains('@')
            && email.chars().all(|c| {
                !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | ',' | ';' | '"')
            })
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if valid {
            Ok(Self(email))
        } else {
            Err("must be a valid email address")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").expect("valid").as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@exa..mple.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        // The limit is in bytes, and the message says so: 137 characters, 262 bytes.
        let wide = format!("{}@example.com", "é".repeat(125));
        assert!(wide.chars().count() < Email::MAX_BYTES && wide.len() > Email::MAX_BYTES);
        assert_eq!(Email::parse(&wide).err(), Some("must be at most 254 bytes"));
    }
}
