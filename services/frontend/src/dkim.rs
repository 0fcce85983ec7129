//! DKIM signing (RFC 6376) of mail our own users submit: the key of the From: domain, as the
//! store pushes it with the settings (`mailrootctl dkim generate`), signs the message before it
//! is stored or queued. The signing itself is `mailroot_outbound::dkim` (the mail-auth crate).

use proto::v1::{DkimKey, Settings};

/// The key of `message`'s From: domain, if it has one. Cloned out of the settings, so that
/// the signing (a hash over the whole message and a private-key operation) does not hold the
/// settings lock.
pub fn key_for(settings: &Settings, message: &[u8]) -> Option<DkimKey> {
    if settings.dkim_keys.is_empty() {
        return None;
    }
    let domain = from_domain(message)?;
    settings
        .dkim_keys
        .iter()
        .find(|k| k.domain.eq_ignore_ascii_case(&domain))
        .cloned()
}

/// The `DKIM-Signature` header field for `message` with `key`. A key that cannot sign
/// (damaged) is logged and the message goes unsigned: refusing a user's mail for it would be
/// worse than an unsigned copy.
pub fn sign(key: &DkimKey, message: &[u8]) -> Option<String> {
    let algorithm = mailroot_outbound::DkimAlgorithm::from_name(&key.algorithm)
        .unwrap_or(mailroot_outbound::DkimAlgorithm::RsaSha256);
    match mailroot_outbound::sign(
        message,
        &key.domain,
        &key.selector,
        algorithm,
        &key.private_key,
    ) {
        Ok(header) => Some(header),
        Err(e) => {
            tracing::warn!(domain = %key.domain, error = %e, "DKIM signing failed; sent unsigned");
            None
        }
    }
}

/// The domain of the first address in the (first) From: header field, unfolded
/// (RFC 5322 §3.6.2). Only the header section is read.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let header = String::from_utf8_lossy(&message[..end]);
    let mut value: Option<String> = None;
    for line in header.split("\r\n") {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((name, rest)) = line.split_once(':')
                    && name.trim().eq_ignore_ascii_case("from")
                {
                    value = Some(rest.to_string());
                }
            }
        }
    }
    let value = value?;
    // `Name <user@domain>` or a bare `user@domain`.
    let addr = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.trim(),
    };
    let domain = addr
        .rsplit_once('@')?
        .1
        .trim()
        .trim_end_matches(['>', ',', ';']);
    (!domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)))
    .then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domain_reads_the_first_from_field() {
        let m = b"Subject: x\r\nFrom: Alice Example\r\n <alice@Example.ORG>\r\nTo: b@c.d\r\n\r\nFrom: x@evil.test\r\n";
        assert_eq!(from_domain(m).as_deref(), Some("example.org"));
        assert_eq!(
            from_domain(b"from: bob@mail.example.net\r\n\r\n").as_deref(),
            Some("mail.example.net")
        );
        assert_eq!(from_domain(b"To: a@b.c\r\n\r\nFrom: a@b.c\r\n"), None);
        assert_eq!(from_domain(b"From: nobody\r\n\r\n"), None);
    }
}
