//! The LDAP filters the store sends, built from the domain's configuration and an address
//! that comes from the network: every piece of the address is escaped (RFC 4515 §3: `*`,
//! `(`, `)`, `\` and NUL) before it goes into a filter, so a login name can never widen a
//! search (`*`) or add terms.

use std::borrow::Cow;

use super::DirectoryConfig;
use crate::names::Address;

/// `%s` → the full address, `%u` → its local part, both escaped; one pass, so text that an
/// expansion put in is never expanded again.
pub fn expand(template: &str, address: &str) -> String {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    let mut out = String::with_capacity(template.len() + address.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('s') => {
                    chars.next();
                    out.push_str(&ldap3::ldap_escape(address));
                    continue;
                }
                Some('u') => {
                    chars.next();
                    out.push_str(&ldap3::ldap_escape(local));
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Whether values of this attribute carry a type prefix (`smtp:x@y`, `SMTP:x@y`, `X500:…`):
/// AD's `proxyAddresses`.
fn prefixed(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("proxyAddresses")
}

/// The search for the one entry an address names: the user filter, or the address among the
/// entry's aliases. Whether the entry is disabled is a search of its own (`client.rs`): a
/// disabled filter naming an attribute the server does not know is Undefined (RFC 4511
/// §4.5.1.7), and `(!Undefined)` would hide every user, where it should disable none.
pub fn lookup(config: &DirectoryConfig, address: &str) -> String {
    let prefix = if prefixed(&config.alias_attr) {
        "smtp:"
    } else {
        ""
    };
    format!(
        "(|{user}({attr}={prefix}{escaped}))",
        user = expand(&config.filter, address),
        attr = config.alias_attr,
        escaped = ldap3::ldap_escape(address),
    )
}

/// An address from the alias attribute: `smtp:`/`SMTP:` stripped for `proxyAddresses`
/// (other types such as `X500:` or `SIP:` are not mail addresses and give None).
pub fn alias_value(attr: &str, value: &str) -> Option<Address> {
    let value: Cow<'_, str> = if prefixed(attr) {
        let (kind, rest) = value.split_once(':')?;
        if !kind.eq_ignore_ascii_case("smtp") {
            return None;
        }
        rest.into()
    } else {
        value.into()
    };
    Address::parse(value.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_escaped_and_expanded_once() {
        assert_eq!(expand("(mail=%s)", "a@x.org"), "(mail=a@x.org)");
        assert_eq!(expand("(uid=%u)", "a@x.org"), "(uid=a)");
        assert_eq!(
            expand("(mail=%s)", "*)(uid=*@x.org"),
            "(mail=\\2a\\29\\28uid=\\2a@x.org)"
        );
        // A "%u" inside the address is text, not a placeholder.
        assert_eq!(expand("(mail=%s)", "%u@x.org"), "(mail=%u@x.org)");
        assert_eq!(expand("(x=100%)", "a@x.org"), "(x=100%)");
    }

    #[test]
    fn the_lookup_filter_finds_users_and_aliases() {
        let mut c = DirectoryConfig {
            url: "ldaps://h".into(),
            bind_dn: "cn=s".into(),
            bind_password: "p".into(),
            base: "dc=x".into(),
            filter: "(mail=%s)".into(),
            alias_attr: "mailAlternateAddress".into(),
            disabled_filter: "(nsAccountLock=TRUE)".into(),
            starttls: false,
            insecure_plaintext: false,
            ca_pem: String::new(),
        };
        assert_eq!(
            lookup(&c, "a@x.org"),
            "(|(mail=a@x.org)(mailAlternateAddress=a@x.org))"
        );
        assert!(ldap3::parse_filter(lookup(&c, "a*)@x.org")).is_ok());
        c.alias_attr = "proxyAddresses".into();
        assert!(lookup(&c, "a@x.org").contains("(proxyAddresses=smtp:a@x.org)"));
    }

    #[test]
    fn proxy_addresses_lose_their_prefix() {
        let a = |s| Address::parse(s).unwrap();
        assert_eq!(
            alias_value("proxyAddresses", "SMTP:Alice@X.org"),
            Some(a("alice@x.org"))
        );
        assert_eq!(
            alias_value("proxyaddresses", "smtp:al@x.org"),
            Some(a("al@x.org"))
        );
        assert_eq!(alias_value("proxyAddresses", "X500:/o=x/cn=a"), None);
        assert_eq!(alias_value("proxyAddresses", "al@x.org"), None);
        assert_eq!(
            alias_value("mailAlternateAddress", "al@x.org"),
            Some(a("al@x.org"))
        );
    }
}
