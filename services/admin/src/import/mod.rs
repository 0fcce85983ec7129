//! `mailrootctl import`: existing mail into the store, exactly once.
//!
//! # Layout
//! - `mod.rs`     — the commands, the import of one message (`Importer::message`: bare LF to
//!   CRLF, the streamed `ImportMessage` call), the progress bar and the summary.
//! - `winpop.rs`  — the Windows Server 2003 POP3 service's store layout.
//! - `maildir.rs` — maildirs (Dovecot, Courier, and what `mailrootctl export` writes).
//! - `mbox.rs`    — mbox files (mboxrd, mboxo).
//!
//! The store makes it exactly once (`store-node/src/store/import.rs`): every message is sent
//! with an identity in its source, and a message imported before is answered "already
//! present", so an interrupted import is simply run again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::v1::*;

use crate::{Client, Failure};

pub mod maildir;
pub mod mbox;
pub mod winpop;

/// Chunks of a message on the wire (the store gathers them; no gRPC message gets near its
/// limit whatever the message's size).
const CHUNK: usize = 256 * 1024;

#[derive(Subcommand)]
pub enum ImportCmd {
    /// The Windows Server 2003 POP3 service's mail store: DIR/<domain>/P3_<local>.mbx/*.eml.
    /// Missing domains and mailboxes are created (mailboxes without a password: set one with
    /// `mailrootctl mailbox passwd`).
    Winpop {
        dir: PathBuf,
        #[command(flatten)]
        opts: ImportOpts,
    },
    /// A maildir (cur/ and new/) into one mailbox (created without a password if missing).
    Maildir {
        path: PathBuf,
        address: String,
        /// Also import the Maildir++ subfolders (.Sent/, .Trash/ ...) into the mailbox; by
        /// default they are left out (POP3 has one folder) and listed.
        #[arg(long)]
        folders: bool,
        #[command(flatten)]
        opts: ImportOpts,
    },
    /// An mbox file into one mailbox (created without a password if missing).
    Mbox {
        path: PathBuf,
        address: String,
        /// How body lines starting with "From " were escaped: mboxrd (every `>*From ` got one
        /// more `>`) or mboxo (only `From `).
        #[arg(long, value_enum, default_value = "mboxrd")]
        format: mbox::Flavour,
        #[command(flatten)]
        opts: ImportOpts,
    },
}

#[derive(Args)]
pub struct ImportOpts {
    /// A message that does not fit the mailbox's or the domain's quota: `skip` it (counted in
    /// the summary) or `allow` it beyond the quota (reported).
    #[arg(long, value_enum, default_value = "skip")]
    over_quota: OverQuotaArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OverQuotaArg {
    Skip,
    Allow,
}

/// The counts printed at the end.
#[derive(Debug, Default)]
struct Summary {
    imported: u64,
    already_present: u64,
    skipped_over_quota: u64,
    imported_over_quota: u64,
    failed: u64,
    /// Octets of the messages imported (over the quota or not).
    bytes: u64,
}

struct Importer<'a> {
    c: &'a mut Client,
    over_quota: OverQuota,
    summary: Summary,
    bar: ProgressBar,
}

/// Bare LF line ends become CRLF: the store keeps CRLF lines and POP3 sends them as they
/// are (RFC 1939 §3). Everything else — 8-bit octets, lone dots, a CR not before an LF —
/// is left exactly as it is.
pub fn to_crlf(bytes: Vec<u8>) -> Vec<u8> {
    let bare = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bare);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn progress_bar(total: u64) -> ProgressBar {
    // Drawn only on a terminal: scripts and logs get the summary alone.
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn mtime_ms(p: &Path) -> u64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn io_failure(what: &Path, e: std::io::Error) -> Failure {
    Failure::Refused(format!("{}: {e}", what.display()))
}

pub async fn run(c: &mut Client, cmd: ImportCmd) -> Result<(), Failure> {
    let over_quota = |o: &ImportOpts| match o.over_quota {
        OverQuotaArg::Skip => OverQuota::Skip,
        OverQuotaArg::Allow => OverQuota::Allow,
    };
    let summary = match cmd {
        ImportCmd::Winpop { dir, opts } => {
            let layout = winpop::walk(&dir).map_err(|e| io_failure(&dir, e))?;
            for p in &layout.ignored {
                eprintln!("not part of the layout, left out: {}", p.display());
            }
            let total = (layout.mailboxes.iter())
                .flat_map(|m| &m.messages)
                .map(|p| file_size(p))
                .sum();
            let mut imp = Importer::new(c, over_quota(&opts), total);
            for mb in &layout.mailboxes {
                if let Err(e) = imp.prepare(&mb.address).await {
                    imp.fail_all(&mb.address, &mb.messages, e)?;
                    continue;
                }
                for file in &mb.messages {
                    let source = winpop::source_id(file);
                    imp.file(&mb.address, file, source, mtime_ms(file), None)
                        .await?;
                }
            }
            imp.finish()
        }
        ImportCmd::Maildir {
            path,
            address,
            folders,
            opts,
        } => {
            let listing = maildir::list(&path, folders).map_err(|e| io_failure(&path, e))?;
            for f in &listing.ignored_folders {
                eprintln!(
                    "subfolder left out (import it with --folders): {}",
                    f.display()
                );
            }
            let total = listing.messages.iter().map(|m| file_size(&m.path)).sum();
            let mut imp = Importer::new(c, over_quota(&opts), total);
            imp.prepare(&address).await?;
            for m in listing.messages {
                imp.file(&address, &m.path, m.source_id, m.received_ms, m.uidl)
                    .await?;
            }
            imp.finish()
        }
        ImportCmd::Mbox {
            path,
            address,
            format,
            opts,
        } => {
            let file = std::fs::File::open(&path).map_err(|e| io_failure(&path, e))?;
            let mut imp = Importer::new(c, over_quota(&opts), file_size(&path));
            imp.prepare(&address).await?;
            let mut reader = mbox::Reader::new(std::io::BufReader::new(file), format);
            while let Some(m) = reader.next_message().map_err(|e| io_failure(&path, e))? {
                // Messages with the same From_ second keep their order in the file.
                let received_ms = match m.date {
                    Some(secs) => secs * 1000 + m.ordinal % 1000,
                    None => m.ordinal,
                };
                let source = format!("mbox:{}", m.ordinal);
                imp.message(&address, &source, received_ms, None, m.bytes)
                    .await?;
                imp.bar.set_position(reader.consumed);
            }
            imp.finish()
        }
    };
    println!(
        "import: imported={} already-present={} skipped-over-quota={} imported-over-quota={} failed={} bytes={}",
        summary.imported,
        summary.already_present,
        summary.skipped_over_quota,
        summary.imported_over_quota,
        summary.failed,
        summary.bytes
    );
    if summary.failed > 0 {
        return Err(Failure::Refused(format!(
            "{} messages were not imported (see above); run the import again to retry them",
            summary.failed
        )));
    }
    Ok(())
}

impl<'a> Importer<'a> {
    fn new(c: &'a mut Client, over_quota: OverQuota, total: u64) -> Importer<'a> {
        Importer {
            c,
            over_quota,
            summary: Summary::default(),
            bar: progress_bar(total),
        }
    }

    /// A line on standard output, above the progress bar.
    fn say(&self, line: String) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// A message that was not imported as it is (failed, over quota): standard error.
    fn warn(&self, line: String) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    fn finish(self) -> Summary {
        self.bar.finish_and_clear();
        self.summary
    }

    /// The mailbox exists (made, with its domain, when missing).
    async fn prepare(&mut self, address: &str) -> Result<(), Failure> {
        let reply = self
            .c
            .prepare_import(PrepareImportRequest {
                address: address.to_string(),
                create: true,
            })
            .await?
            .into_inner();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        if reply.created_domain {
            self.say(format!("domain {domain} added"));
        }
        if reply.created_mailbox {
            self.say(format!(
                "mailbox {address} added without a password (set one: mailrootctl mailbox passwd {address} --password-stdin)"
            ));
        }
        Ok(())
    }

    /// A mailbox that could not be made: its messages count as failed (a store that cannot
    /// be reached ends the import).
    fn fail_all(&mut self, address: &str, files: &[PathBuf], e: Failure) -> Result<(), Failure> {
        let Failure::Refused(why) = e else {
            return Err(e);
        };
        self.warn(format!("mailbox {address} left out: {why}"));
        self.summary.failed += files.len() as u64;
        self.bar.inc(files.iter().map(|p| file_size(p)).sum());
        Ok(())
    }

    async fn file(
        &mut self,
        address: &str,
        path: &Path,
        source: String,
        received_ms: u64,
        uidl: Option<String>,
    ) -> Result<(), Failure> {
        let size = file_size(path);
        let bytes = if size > proto::MAX_GRPC_MESSAGE as u64 {
            Err(format!(
                "larger than the store's largest message ({} octets)",
                proto::MAX_GRPC_MESSAGE
            ))
        } else {
            std::fs::read(path).map_err(|e| e.to_string())
        };
        match bytes {
            Ok(bytes) => {
                self.message(address, &source, received_ms, uidl, bytes)
                    .await?
            }
            Err(why) => {
                self.warn(format!("failed: {}: {why}", path.display()));
                self.summary.failed += 1;
            }
        }
        self.bar.inc(size);
        Ok(())
    }

    /// Imports one message; a refusal is counted and reported, a store that cannot be
    /// reached ends the import.
    async fn message(
        &mut self,
        address: &str,
        source: &str,
        received_ms: u64,
        uidl: Option<String>,
        bytes: Vec<u8>,
    ) -> Result<(), Failure> {
        let bytes = bytes::Bytes::from(to_crlf(bytes));
        let header = ImportHeader {
            address: address.to_string(),
            source_id: source.to_string(),
            received_unix_ms: received_ms,
            uidl: uidl.unwrap_or_default(),
            over_quota: self.over_quota as i32,
            size: bytes.len() as u64,
        };
        let mut chunks = vec![ImportChunk {
            header: Some(header),
            data: bytes.slice(..bytes.len().min(CHUNK)),
        }];
        let mut at = CHUNK;
        while at < bytes.len() {
            let end = (at + CHUNK).min(bytes.len());
            chunks.push(ImportChunk {
                header: None,
                data: bytes.slice(at..end),
            });
            at = end;
        }
        let reply = match self.c.import_message(tokio_stream::iter(chunks)).await {
            Ok(r) => r.into_inner(),
            Err(status) => match Failure::from(status) {
                Failure::Refused(why) => {
                    self.warn(format!("failed: {address} {source}: {why}"));
                    self.summary.failed += 1;
                    return Ok(());
                }
                other => return Err(other),
            },
        };
        let s = &mut self.summary;
        let size = bytes.len() as u64;
        let note = match ImportOutcome::try_from(reply.outcome) {
            Ok(ImportOutcome::Imported) => {
                s.imported += 1;
                s.bytes += size;
                None
            }
            Ok(ImportOutcome::ImportedOverQuota) => {
                s.imported_over_quota += 1;
                s.bytes += size;
                Some(format!(
                    "over quota, imported anyway: {address} {source} ({size} octets)"
                ))
            }
            Ok(ImportOutcome::AlreadyPresent) => {
                s.already_present += 1;
                None
            }
            Ok(ImportOutcome::SkippedOverQuota) => {
                s.skipped_over_quota += 1;
                Some(format!(
                    "over quota, skipped: {address} {source} ({size} octets)"
                ))
            }
            Ok(ImportOutcome::Unspecified) | Err(_) => {
                s.failed += 1;
                Some(format!(
                    "failed: {address} {source}: the store answered an unknown outcome {}",
                    reply.outcome
                ))
            }
        };
        if let Some(note) = note {
            self.warn(note);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_lfs_become_crlf() {
        assert_eq!(to_crlf(b"a\r\nb\r\n".to_vec()), b"a\r\nb\r\n");
        assert_eq!(to_crlf(b"a\nb\n.\n".to_vec()), b"a\r\nb\r\n.\r\n");
        assert_eq!(to_crlf(b"\n\r\n\r\r\n".to_vec()), b"\r\n\r\n\r\r\n");
        assert_eq!(to_crlf(b"\xe9t\xe9\n".to_vec()), b"\xe9t\xe9\r\n");
        assert_eq!(to_crlf(b"no end".to_vec()), b"no end");
    }
}
