//! The mail store of the Windows Server 2003 POP3 service (`mailrootctl import winpop DIR`):
//!
//! ```text
//! DIR/<domain>/P3_<local>.mbx/P3<number>.eml    one message, as received (CRLF)
//! ```
//! Every folder under DIR is a domain; every `P3_<local>.mbx` folder in it a mailbox (an empty
//! one too); every `*.eml` file in that a message. Anything else (the service's lock files,
//! other folders) is left alone and reported.

use std::path::{Path, PathBuf};

/// One mailbox found in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// `<local>@<domain>` as the folders name it (the store checks and normalises it).
    pub address: String,
    /// The message files, in the order the service received them (modification time, then
    /// name).
    pub messages: Vec<PathBuf>,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Layout {
    pub mailboxes: Vec<Mailbox>,
    /// Entries that are not part of the layout (reported, not imported).
    pub ignored: Vec<PathBuf>,
}

fn dir_entries(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut entries = std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Walks DIR; an unreadable folder is an error (a partial import would look complete).
pub fn walk(dir: &Path) -> std::io::Result<Layout> {
    let mut layout = Layout::default();
    for domain in dir_entries(dir)? {
        let path = domain.path();
        let Some(name) = domain.file_name().to_str().map(str::to_string) else {
            layout.ignored.push(path);
            continue;
        };
        if !domain.file_type()?.is_dir() {
            layout.ignored.push(path);
            continue;
        }
        for mailbox in dir_entries(&path)? {
            let mpath = mailbox.path();
            let local = mailbox.file_name().to_str().and_then(|n| {
                let n = n.strip_prefix("P3_").or_else(|| n.strip_prefix("p3_"))?;
                let local = n.strip_suffix(".mbx").or_else(|| n.strip_suffix(".MBX"))?;
                (!local.is_empty()).then(|| local.to_string())
            });
            let (Some(local), true) = (local, mailbox.file_type()?.is_dir()) else {
                layout.ignored.push(mpath);
                continue;
            };
            let mut messages = Vec::new();
            for file in dir_entries(&mpath)? {
                let fpath = file.path();
                let eml = fpath
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("eml"));
                if eml && file.file_type()?.is_file() {
                    let mtime = file.metadata()?.modified().ok();
                    messages.push((mtime, fpath));
                } else {
                    layout.ignored.push(fpath);
                }
            }
            messages.sort();
            layout.mailboxes.push(Mailbox {
                address: format!("{local}@{name}"),
                messages: messages.into_iter().map(|(_, p)| p).collect(),
            });
        }
    }
    Ok(layout)
}

/// The message's identity in its source: `winpop:<domain>/<mailbox folder>/<file>`, the same
/// whichever copy of the store is imported.
pub fn source_id(file: &Path) -> String {
    let parts: Vec<String> = file
        .iter()
        .rev()
        .take(3)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = parts.iter().rev().map(String::as_str).collect();
    format!("winpop:{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_domains_mailboxes_and_messages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |p: &str, text: &str| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("example.com/P3_alice.mbx/P347865.eml", "a");
        write("example.com/P3_alice.mbx/P347866.EML", "b");
        write("example.com/P3_alice.mbx/P347866.lck", "");
        write("example.com/P3_bob.mbx/P31.eml", "c");
        std::fs::create_dir_all(root.join("example.com/P3_empty.mbx")).unwrap();
        std::fs::create_dir_all(root.join("example.com/notamailbox")).unwrap();
        write("other.org/P3_carol.mbx/P39.eml", "d");
        write("README.txt", "x");
        let layout = walk(root).unwrap();
        let got: Vec<(String, usize)> = layout
            .mailboxes
            .iter()
            .map(|m| (m.address.clone(), m.messages.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("alice@example.com".to_string(), 2),
                ("bob@example.com".to_string(), 1),
                ("empty@example.com".to_string(), 0),
                ("carol@other.org".to_string(), 1),
            ]
        );
        let ignored: Vec<String> = layout
            .ignored
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            ignored,
            [
                "README.txt",
                "example.com/P3_alice.mbx/P347866.lck",
                "example.com/notamailbox"
            ]
        );
        assert_eq!(
            source_id(&layout.mailboxes[0].messages[0]),
            "winpop:example.com/P3_alice.mbx/P347865.eml"
        );
    }

    #[test]
    fn a_missing_dir_is_an_error() {
        assert!(walk(Path::new("/nonexistent/winpop")).is_err());
    }
}
