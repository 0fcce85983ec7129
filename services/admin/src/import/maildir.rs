//! Maildirs (`mailrootctl import maildir PATH ADDRESS`, Dovecot/Courier; also what
//! `mailrootctl export` writes): messages are the files in `new/` and `cur/`; `tmp/` holds
//! deliveries in progress and is left alone. Subfolders (`.Sent/`, `.Trash/` ...: Maildir++)
//! are left alone unless `--folders` asks to flatten them into the one POP3 maildrop.
//!
//! A file's name is `<unique>[:2,<flags>]`; the unique part names the message whatever its
//! flags (it moves from `new/` to `cur/` and gains flags as it is read), so it is the
//! source's identity. It starts with the delivery time in seconds (`1700000000.M123456P...`),
//! which orders the import. `,U=<uidl>` in it (written by `mailrootctl export`) is the POP3
//! UIDL to keep.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub path: PathBuf,
    /// `maildir:[<folder>/]<unique part>`.
    pub source_id: String,
    /// Unix ms of delivery from the name (else the file's modification time; 0 if neither).
    pub received_ms: u64,
    /// `,U=<uidl>` of the name.
    pub uidl: Option<String>,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub messages: Vec<Message>,
    /// Subfolders that were not imported.
    pub ignored_folders: Vec<PathBuf>,
}

/// The messages of a maildir (and of its subfolders with `folders`), oldest first.
pub fn list(root: &Path, folders: bool) -> std::io::Result<Listing> {
    if !root.join("cur").is_dir() && !root.join("new").is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a maildir (no cur/ or new/)", root.display()),
        ));
    }
    let mut listing = Listing::default();
    collect(root, "", &mut listing.messages)?;
    let mut subs: Vec<_> = std::fs::read_dir(root)?
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.path().join("cur").is_dir() || e.path().join("new").is_dir())
        .collect();
    subs.sort_by_key(|e| e.file_name());
    for sub in subs {
        if folders {
            let name = sub.file_name().to_string_lossy().into_owned();
            collect(&sub.path(), &format!("{name}/"), &mut listing.messages)?;
        } else {
            listing.ignored_folders.push(sub.path());
        }
    }
    listing
        .messages
        .sort_by(|a, b| (a.received_ms, &a.source_id).cmp(&(b.received_ms, &b.source_id)));
    Ok(listing)
}

fn collect(dir: &Path, folder: &str, out: &mut Vec<Message>) -> std::io::Result<()> {
    for sub in ["new", "cur"] {
        let path = dir.join(sub);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type()?.is_file() {
                continue;
            }
            let unique = name.split(':').next().unwrap_or(&name).to_string();
            let mtime = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push(Message {
                path: entry.path(),
                received_ms: name_time_ms(&unique).unwrap_or(mtime),
                uidl: kept_uidl(&unique),
                source_id: format!("maildir:{folder}{unique}"),
            });
        }
    }
    Ok(())
}

/// `1700000000.M123456P99.host` → 1700000000123 (seconds, and milliseconds of `M<usec>`).
fn name_time_ms(unique: &str) -> Option<u64> {
    let (secs, rest) = unique.split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    let usec = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .and_then(|part| {
            let digits: String = part
                .strip_prefix('M')?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .unwrap_or(0);
    Some(secs * 1000 + (usec / 1000).min(999))
}

/// `,U=<uidl>` in the unique part.
fn kept_uidl(unique: &str) -> Option<String> {
    unique
        .split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix("U="))
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// The file name `mailrootctl export` gives a message: `<secs>.M<usec>P0.mailroot,S=<size>,
/// U=<uidl>` (in `new/`: no flags), from the UIDL's time when it is a UUIDv7; the same message
/// gets the same name at every export. A UIDL with characters a name cannot carry is left
/// out, and `Q<n>` (its position in the export) makes the name unique instead.
pub fn export_name(uidl: &str, size: u64, fallback_ms: u64, n: usize) -> String {
    let ms = uuid::Uuid::parse_str(uidl)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map_or(fallback_ms, |t| {
            let (s, n) = t.to_unix();
            s * 1000 + u64::from(n) / 1_000_000
        });
    let safe = uidl
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    // The UIDL makes the name unique; without it, the size and time must do (with a counter).
    let (q, tag) = if safe {
        (String::new(), format!(",U={uidl}"))
    } else {
        (format!("Q{n}"), String::new())
    };
    format!(
        "{}.M{}P0{q}.mailroot,S={size}{tag}",
        ms / 1000,
        (ms % 1000) * 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_new_and_cur_oldest_first_and_reads_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("cur/1700000002.M5P1.h:2,S"), "b").unwrap();
        std::fs::write(root.join("new/1700000001.M250000P1.h"), "a").unwrap();
        std::fs::write(
            root.join("new/1700000003.M0P0.mailroot,S=1,U=0190a3c4-1b2c-7d3e-8f40-123456789abc"),
            "c",
        )
        .unwrap();
        std::fs::write(root.join("tmp/1700000009.M1P1.h"), "in progress").unwrap();
        std::fs::write(root.join(".Sent/cur/1700000000.M1P1.h:2,S"), "sent").unwrap();
        let l = list(root, false).unwrap();
        let ids: Vec<&str> = l.messages.iter().map(|m| m.source_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "maildir:1700000001.M250000P1.h",
                "maildir:1700000002.M5P1.h",
                "maildir:1700000003.M0P0.mailroot,S=1,U=0190a3c4-1b2c-7d3e-8f40-123456789abc"
            ]
        );
        assert_eq!(l.messages[0].received_ms, 1_700_000_001_250);
        assert_eq!(
            l.messages[2].uidl.as_deref(),
            Some("0190a3c4-1b2c-7d3e-8f40-123456789abc")
        );
        assert_eq!(l.messages[0].uidl, None);
        assert_eq!(l.ignored_folders, [root.join(".Sent")]);
        let flat = list(root, true).unwrap();
        assert_eq!(flat.messages.len(), 4);
        assert_eq!(
            flat.messages[0].source_id,
            "maildir:.Sent/1700000000.M1P1.h"
        );
        assert!(list(&root.join("cur"), false).is_err());
    }

    #[test]
    fn export_names_carry_time_size_and_uidl() {
        let u = "0190a3c4-1b2c-7d3e-8f40-123456789abc";
        let name = export_name(u, 42, 0, 7);
        assert!(name.ends_with(&format!(",S=42,U={u}")), "{name}");
        assert_eq!(kept_uidl(&name).as_deref(), Some(u));
        let t = name_time_ms(&name).unwrap();
        let uuid_ms = {
            let (s, n) = uuid::Uuid::parse_str(u)
                .unwrap()
                .get_timestamp()
                .unwrap()
                .to_unix();
            s * 1000 + u64::from(n) / 1_000_000
        };
        assert_eq!(t, uuid_ms);
        let odd = export_name("a/b", 1, 5000, 7);
        assert_eq!(odd, "5.M0P0Q7.mailroot,S=1");
    }
}
