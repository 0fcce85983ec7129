//! `mailrootctl domain` and `mailrootctl mailbox`: hosted domains, mailboxes, their passwords
//! and locks.

use std::io::Read;

use clap::Subcommand;
use proto::v1::*;

use crate::{Client, Failure};

#[derive(Subcommand)]
pub enum DomainCmd {
    Add {
        domain: String,
    },
    /// Delete a domain; with --force also all its mailboxes and their mail.
    Delete {
        domain: String,
        #[arg(long)]
        force: bool,
    },
    List,
    /// Refuse POP3 logins for every mailbox of the domain.
    Lock {
        domain: String,
    },
    Unlock {
        domain: String,
    },
}

#[derive(Subcommand)]
pub enum MailboxCmd {
    /// Create a mailbox; the password is read from standard input (first line).
    Add {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete a mailbox and all its mail.
    Delete {
        address: String,
    },
    /// List mailboxes (of one domain, or all).
    List {
        domain: Option<String>,
    },
    /// Change a mailbox password; the new password is read from standard input.
    Passwd {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Refuse POP3 logins (SMTP delivery continues). An alias locks its targets.
    Lock {
        address: String,
    },
    Unlock {
        address: String,
    },
    /// Break the cluster-wide POP3 session lock held on a mailbox (e.g. by a dead front-end).
    UnlockSession {
        address: String,
    },
}

pub async fn domain(c: &mut Client, cmd: DomainCmd) -> Result<(), Failure> {
    match cmd {
        DomainCmd::Add { domain } => {
            c.add_domain(DomainRequest {
                domain: domain.clone(),
            })
            .await?;
            println!("domain {domain} added");
        }
        DomainCmd::Delete { domain, force } => {
            c.delete_domain(DeleteDomainRequest {
                domain: domain.clone(),
                force,
            })
            .await?;
            println!("domain {domain} deleted");
        }
        DomainCmd::List => {
            for d in c.list_domains(Empty {}).await?.into_inner().domains {
                println!("{d}");
            }
        }
        DomainCmd::Lock { domain } => {
            set_lock(c, domain, true, true).await?;
        }
        DomainCmd::Unlock { domain } => {
            set_lock(c, domain, true, false).await?;
        }
    }
    Ok(())
}

pub async fn mailbox(c: &mut Client, cmd: MailboxCmd) -> Result<(), Failure> {
    match cmd {
        MailboxCmd::Add { address, .. } => {
            let password = read_password()?;
            c.add_mailbox(MailboxRequest {
                address: address.clone(),
                password,
            })
            .await?;
            println!("mailbox {address} added");
        }
        MailboxCmd::Delete { address } => {
            c.delete_mailbox(AddressRequest {
                address: address.clone(),
            })
            .await?;
            println!("mailbox {address} deleted");
        }
        MailboxCmd::List { domain } => {
            let req = ListMailboxesRequest {
                domain: domain.unwrap_or_default(),
            };
            for a in c.list_mailboxes(req).await?.into_inner().addresses {
                println!("{a}");
            }
        }
        MailboxCmd::Passwd { address, .. } => {
            let password = read_password()?;
            c.set_password(MailboxRequest {
                address: address.clone(),
                password,
            })
            .await?;
            println!("password of {address} changed");
        }
        MailboxCmd::Lock { address } => {
            set_lock(c, address, false, true).await?;
        }
        MailboxCmd::Unlock { address } => {
            set_lock(c, address, false, false).await?;
        }
        MailboxCmd::UnlockSession { address } => {
            c.break_session(AddressRequest {
                address: address.clone(),
            })
            .await?;
            println!("POP3 session lock of {address} broken");
        }
    }
    Ok(())
}

pub(crate) fn read_password() -> Result<String, Failure> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
    let line = input.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Failure::Usage("no password on standard input".into()));
    }
    Ok(line)
}

async fn set_lock(
    c: &mut Client,
    target: String,
    domain: bool,
    locked: bool,
) -> Result<(), Failure> {
    c.set_lock(SetLockRequest {
        target: target.clone(),
        domain,
        locked,
    })
    .await?;
    println!("{target} {}", if locked { "locked" } else { "unlocked" });
    Ok(())
}
