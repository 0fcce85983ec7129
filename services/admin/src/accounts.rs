//! `mailrootctl domain` and `mailrootctl mailbox`: hosted domains (with their directory, for
//! domains whose users are in LDAP), mailboxes, their passwords and locks.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use proto::v1::*;

use crate::{Client, Failure};

/// A domain's directory (LDAP): Active Directory or OpenLDAP holds its users, passwords and
/// aliases (store-node/src/directory/).
#[derive(clap::Args, Debug, Default)]
pub struct DirectoryArgs {
    /// Bind the domain to this directory: ldaps://host[:port], or ldap://host[:port] with
    /// --starttls (or --insecure-plaintext).
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// The service account the store searches with.
    #[arg(long, value_name = "DN", requires = "directory")]
    bind_dn: Option<String>,
    /// Read the service account's password from standard input (first line). Required by
    /// `domain add`; `domain set` keeps the stored one without it.
    #[arg(long, requires = "directory")]
    bind_password_stdin: bool,
    /// Where users are searched (subtree).
    #[arg(long, value_name = "DN", requires = "directory")]
    base: Option<String>,
    /// User search filter: %s is the full address, %u its local part (LDAP-escaped).
    /// [default: (mail=%s)]
    #[arg(long, value_name = "FILTER", requires = "directory")]
    filter: Option<String>,
    /// Attribute with a user's other addresses (proxyAddresses for AD: smtp:/SMTP: values).
    /// [default: mailAlternateAddress]
    #[arg(long, value_name = "ATTR", requires = "directory")]
    alias_attr: Option<String>,
    /// Entries matching it are disabled (no login, no mail); AD's userAccountControl 0x2 is
    /// always honoured. [default: (|(pwdAccountLockedTime=*)(nsAccountLock=TRUE))]
    #[arg(long, value_name = "FILTER", requires = "directory")]
    disabled_filter: Option<String>,
    /// Upgrade ldap:// with StartTLS.
    #[arg(long, requires = "directory")]
    starttls: bool,
    /// Allow ldap:// without TLS: passwords cross the network in clear.
    #[arg(long, requires = "directory")]
    insecure_plaintext: bool,
    /// PEM file with the CA certificate(s) that signed the directory's certificate
    /// (default: the system's roots).
    #[arg(long, value_name = "PEM", requires = "directory")]
    ca_file: Option<PathBuf>,
}

impl DirectoryArgs {
    /// The request's directory, or None without `--directory`. `need_password`: `domain add`
    /// must be given the bind password.
    fn to_proto(&self, need_password: bool) -> Result<Option<DirectoryConfig>, Failure> {
        let Some(url) = &self.directory else {
            return Ok(None);
        };
        let bind_dn = self
            .bind_dn
            .clone()
            .ok_or_else(|| Failure::Usage("--directory needs --bind-dn".into()))?;
        let base = self
            .base
            .clone()
            .ok_or_else(|| Failure::Usage("--directory needs --base".into()))?;
        if url.starts_with("ldap://") && !self.starttls && !self.insecure_plaintext {
            return Err(Failure::Usage(
                "ldap:// would send passwords in clear: use ldaps://, --starttls, or \
                 --insecure-plaintext"
                    .into(),
            ));
        }
        let bind_password = if self.bind_password_stdin {
            read_password()?
        } else if need_password {
            return Err(Failure::Usage(
                "--directory needs --bind-password-stdin (the service account's password)".into(),
            ));
        } else {
            String::new()
        };
        let ca_pem = match &self.ca_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("--ca-file {}: {e}", path.display())))?,
            None => String::new(),
        };
        Ok(Some(DirectoryConfig {
            url: url.clone(),
            bind_dn,
            bind_password,
            base,
            filter: self.filter.clone().unwrap_or_default(),
            alias_attr: self.alias_attr.clone().unwrap_or_default(),
            starttls: self.starttls,
            insecure_plaintext: self.insecure_plaintext,
            ca_pem,
            disabled_filter: self.disabled_filter.clone().unwrap_or_default(),
        }))
    }
}

#[derive(Subcommand)]
pub enum DomainCmd {
    /// Add a domain: with its own mailboxes and passwords, or bound to a directory
    /// (--directory ...).
    Add {
        domain: String,
        #[command(flatten)]
        directory: DirectoryArgs,
    },
    /// Bind a domain to a directory, change its directory (--directory ...), or unbind it
    /// (--no-directory).
    Set {
        domain: String,
        #[command(flatten)]
        directory: DirectoryArgs,
        /// Unbind: the domain's own mailboxes and passwords again.
        #[arg(long, conflicts_with = "directory")]
        no_directory: bool,
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
        DomainCmd::Add { domain, directory } => {
            let directory = directory.to_proto(true)?;
            let bound = directory.as_ref().map(|d| d.url.clone());
            c.add_domain(AddDomainRequest {
                domain: domain.clone(),
                directory,
            })
            .await?;
            match bound {
                Some(url) => println!("domain {domain} added, users in directory {url}"),
                None => println!("domain {domain} added"),
            }
        }
        DomainCmd::Set {
            domain,
            directory,
            no_directory,
        } => {
            let directory = directory.to_proto(false)?;
            if directory.is_none() && !no_directory {
                return Err(Failure::Usage(
                    "domain set: give --directory URL ... or --no-directory".into(),
                ));
            }
            let bound = directory.as_ref().map(|d| d.url.clone());
            c.set_domain_directory(SetDomainDirectoryRequest {
                domain: domain.clone(),
                directory,
            })
            .await?;
            match bound {
                Some(url) => println!("domain {domain}: users in directory {url}"),
                None => println!("domain {domain}: own mailboxes and passwords (no directory)"),
            }
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
            let reply = c.list_domains(Empty {}).await?.into_inner();
            if reply.details.len() != reply.domains.len() {
                // A store without directory support: names only.
                for d in reply.domains {
                    println!("{d}");
                }
                return Ok(());
            }
            for info in reply.details {
                println!("{}", domain_line(&info));
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

/// One line of `domain list`: the name alone for a domain with its own passwords, the
/// directory's settings (never its password) for a directory domain.
fn domain_line(info: &DomainInfo) -> String {
    let Some(d) = &info.directory else {
        return info.domain.clone();
    };
    let tls = if d.url.starts_with("ldaps://") {
        "ldaps"
    } else if d.starttls {
        "starttls"
    } else {
        "PLAINTEXT"
    };
    format!(
        "{}\tdirectory={} tls={tls} base={} bind-dn={} filter={} alias-attr={} disabled-filter={}{}",
        info.domain,
        d.url,
        d.base,
        d.bind_dn,
        d.filter,
        d.alias_attr,
        d.disabled_filter,
        if info.has_ca { " ca=custom" } else { "" },
    )
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
