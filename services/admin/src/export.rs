//! `mailrootctl export ADDRESS|DOMAIN DIR`: every message of a mailbox (or of every mailbox
//! of a domain) as a maildir, `DIR/<address>/{cur,new,tmp}`, one file per message, bytes as
//! stored. The POP3 UIDL is kept in the file name (`,U=<uidl>`, `import/maildir.rs`), and
//! `mailrootctl import maildir` gives it back when it is free.
//!
//! Each file is written in `tmp/`, synced, then renamed into `new/` (the maildir delivery
//! protocol: a reader never sees a partial file); `new/` is synced at the end. A message has
//! the same name at every export, so exporting into the same DIR again replaces files rather
//! than doubling them.

use std::io::Write;
use std::path::{Path, PathBuf};

use proto::v1::*;

use crate::import::maildir;
use crate::{Client, Failure};

fn io(what: &Path, e: std::io::Error) -> Failure {
    Failure::Refused(format!("{}: {e}", what.display()))
}

pub async fn run(c: &mut Client, target: &str, dir: &Path) -> Result<(), Failure> {
    let mailboxes = if target.contains('@') {
        vec![target.to_string()]
    } else {
        c.list_mailboxes(ListMailboxesRequest {
            domain: target.to_string(),
        })
        .await?
        .into_inner()
        .addresses
    };
    let (mut messages, mut bytes) = (0u64, 0u64);
    for address in &mailboxes {
        let (n, b) = mailbox(c, address, &dir.join(address)).await?;
        println!("{address}: {n} messages, {b} bytes");
        messages += n;
        bytes += b;
    }
    println!(
        "export: mailboxes={} messages={messages} bytes={bytes} dir={}",
        mailboxes.len(),
        dir.display()
    );
    Ok(())
}

/// One message being written to `tmp/`.
struct Open {
    file: std::fs::File,
    tmp: PathBuf,
    name: String,
    size: u64,
    written: u64,
}

async fn mailbox(c: &mut Client, address: &str, root: &Path) -> Result<(u64, u64), Failure> {
    // The call first: an unknown mailbox leaves no directory behind.
    let mut stream = c
        .export_messages(AddressRequest {
            address: address.to_string(),
        })
        .await?
        .into_inner();
    for sub in ["cur", "new", "tmp"] {
        let d = root.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut open: Option<Open> = None;
    while let Some(chunk) = stream.message().await? {
        if !chunk.uidl.is_empty() {
            if let Some(o) = open.take() {
                bytes += finish(o, root)?;
            }
            let name = maildir::export_name(&chunk.uidl, chunk.size, now_ms, count as usize);
            let tmp = root.join("tmp").join(&name);
            let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            open = Some(Open {
                file,
                tmp,
                name,
                size: chunk.size,
                written: 0,
            });
            count += 1;
        }
        let Some(o) = open.as_mut() else {
            return Err(Failure::Refused(
                "the store sent message data before a message".into(),
            ));
        };
        o.file.write_all(&chunk.data).map_err(|e| io(&o.tmp, e))?;
        o.written += chunk.data.len() as u64;
    }
    if let Some(o) = open.take() {
        bytes += finish(o, root)?;
    }
    let new = root.join("new");
    std::fs::File::open(&new)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(&new, e))?;
    Ok((count, bytes))
}

fn finish(o: Open, root: &Path) -> Result<u64, Failure> {
    if o.written != o.size {
        return Err(Failure::Refused(format!(
            "{}: the store sent {} of {} octets",
            o.tmp.display(),
            o.written,
            o.size
        )));
    }
    o.file.sync_data().map_err(|e| io(&o.tmp, e))?;
    let dest = root.join("new").join(&o.name);
    std::fs::rename(&o.tmp, &dest).map_err(|e| io(&dest, e))?;
    Ok(o.written)
}
