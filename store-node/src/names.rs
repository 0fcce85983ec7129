//! Name rules for domains, mailboxes and addresses. Everything is compared case-insensitively
//! (stored lower case): RFC 5321 §2.4 lets the local part be case-sensitive, but every mail
//! server users meet treats it as insensitive, and so do we.

use crate::error::{Result, StoreError};

/// Characters a mailbox name may not contain (the seed's winpop rules).
const FORBIDDEN_LOCAL: &[char] = &[
    '@', '(', ')', '/', '\\', '[', ']', ':', ';', ',', '"', '<', '>', '*', '=', '?',
];
pub const MAX_LOCAL_LEN: usize = 64;

fn invalid(name: &str, rule: &'static str) -> StoreError {
    StoreError::InvalidName {
        name: name.to_string(),
        rule,
    }
}

/// A domain name per RFC 1035 §2.3.1 (letters, digits, hyphens; labels 1–63 octets, not
/// starting or ending with a hyphen; 253 octets in all). Returned lower case.
pub fn domain(raw: &str) -> Result<String> {
    let name = raw.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(invalid(raw, "a domain name has 1 to 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(raw, "each domain label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                raw,
                "a domain label has only letters, digits and hyphens",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(
                raw,
                "a domain label does not start or end with a hyphen",
            ));
        }
    }
    Ok(name)
}

/// A mailbox name (local part): 1–64 characters, printable, none of `FORBIDDEN_LOCAL`.
pub fn local_part(raw: &str) -> Result<String> {
    let count = raw.chars().count();
    if count == 0 || count > MAX_LOCAL_LEN {
        return Err(invalid(raw, "a mailbox name has 1 to 64 characters"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            raw,
            "a mailbox name has no spaces or control characters",
        ));
    }
    if raw.chars().any(|c| FORBIDDEN_LOCAL.contains(&c)) {
        return Err(invalid(
            raw,
            "a mailbox name contains none of @ ( ) / \\ [ ] : ; , \" < > * = ?",
        ));
    }
    if raw == "." || raw == ".." {
        return Err(invalid(raw, "a mailbox name is not . or .."));
    }
    Ok(raw.to_lowercase())
}

/// A full address `local@domain`, validated and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    pub fn parse(raw: &str) -> Result<Address> {
        let (local, dom) = raw
            .rsplit_once('@')
            .ok_or_else(|| invalid(raw, "an address has the form name@domain"))?;
        Ok(Address {
            local: local_part(local)?,
            domain: domain(dom)?,
        })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_case_insensitive() {
        let a = Address::parse("Alice@Example.TEST").unwrap();
        assert_eq!(a.to_string(), "alice@example.test");
    }

    #[test]
    fn every_forbidden_character_is_refused() {
        for c in FORBIDDEN_LOCAL {
            let name = format!("a{c}b");
            assert!(local_part(&name).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn local_part_length_limits() {
        assert!(local_part("").is_err());
        assert!(local_part(&"a".repeat(64)).is_ok());
        assert!(local_part(&"a".repeat(65)).is_err());
    }

    #[test]
    fn domain_rules() {
        assert_eq!(domain("Example.Test.").unwrap(), "example.test");
        for bad in [
            "",
            "-a.test",
            "a-.test",
            "a..test",
            "a_b.test",
            &"a".repeat(64),
        ] {
            assert!(domain(bad).is_err(), "{bad} accepted");
        }
    }
}
