//! A real OpenLDAP server for directory tests: `slapd` from Debian's package, run by the test
//! as the current user with its own `slapd.conf` (mdb backend) in the test's temp dir, on a
//! loopback port from [`free_port`], with StartTLS on a certificate from a CA made here
//! (rcgen). `tests/install-slapd.sh` installs slapd and ldap-utils (tests/run.sh calls it).
//!
//! The schema adds, under the RFC 5612 documentation enterprise number, what Debian's
//! schemas lack and a mail directory has: `mailAlternateAddress` (aliases, as in Sun/389-DS
//! directories), `nsAccountLock` (a disabled account, as in 389-DS/FreeIPA), and Active
//! Directory's `userAccountControl` and `proxyAddresses`, so that AD-shaped entries can be
//! tested too.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually;
use crate::remote::free_port;

pub const SLAPD: &str = "/usr/sbin/slapd";
/// The directory's root (manager) account, which loads the test data.
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PW: &str = "root-secret";
pub const SUFFIX: &str = "dc=example,dc=org";

const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'mailAlternateAddress'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.32473.1.1.2 NAME 'nsAccountLock'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.3 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.4 NAME 'proxyAddresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'mailrootTestUser' AUXILIARY
  MAY ( mailAlternateAddress $ nsAccountLock $ userAccountControl $ proxyAddresses ) )
";

/// Whether slapd and ldap-utils are installed. Missing: SKIP loudly, or fail when
/// MAILROOT_REQUIRE_CLIENTS=1 (tests/run.sh installs them and sets it).
pub fn have_slapd() -> bool {
    // `command -v` takes the absolute path too (slapd is in /usr/sbin, not every PATH).
    crate::have_client(SLAPD) && crate::have_client("ldapadd") && crate::have_client("ldapsearch")
}

/// A running slapd; killed (SIGKILL) when dropped.
pub struct Slapd {
    dir: PathBuf,
    /// ldap:// (StartTLS offered) and ldaps:// (TLS from the start).
    pub port: u16,
    pub ldaps_port: u16,
    /// PEM of the CA that signed the server's certificate (for `--ca-file`).
    pub ca_file: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Slapd {
    /// Writes the configuration, a CA and a server certificate for 127.0.0.1 into `dir`,
    /// starts slapd and waits until it answers a StartTLS search.
    pub fn start(dir: &Path) -> Slapd {
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let (ca_pem, cert_pem, key_pem) = certificates();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("ca.pem");
        std::fs::write(dir.join("cert.pem"), cert_pem).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), key_pem).expect("key.pem");
        std::fs::write(dir.join("mailroot-test.schema"), SCHEMA).expect("schema");
        let d = dir.display();
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {d}/mailroot-test.schema
pidfile {d}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/cert.pem
TLSCertificateKeyFile {d}/key.pem
database mdb
suffix \"{SUFFIX}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {d}/db
maxsize 10485760
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"
        );
        std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
        let mut slapd = Slapd {
            dir: dir.to_path_buf(),
            port: free_port(IpAddr::from([127, 0, 0, 1]), false),
            ldaps_port: free_port(IpAddr::from([127, 0, 0, 1]), false),
            ca_file,
            child: None,
            starts: 0,
        };
        slapd.run();
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// Starts slapd (again) on the same ports and data, and waits until it answers.
    fn run(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("slapd-{}.log", self.starts)))
            .expect("slapd log");
        // -d: stay in the foreground (a child the test can kill), log to the file.
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .args([
                "-h",
                &format!("{}/ {}/", self.url(), self.ldaps_url()),
                "-d",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn slapd");
        self.child = Some(child);
        eventually(
            "slapd answers a StartTLS search",
            Duration::from_secs(20),
            || {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("slapd exited at start ({status}): {}", self.log());
                }
                self.search_ok().then_some(())
            },
        );
    }

    fn search_ok(&self) -> bool {
        Command::new("ldapsearch")
            .args([
                "-x",
                "-ZZ",
                "-H",
                &self.url(),
                "-b",
                "",
                "-s",
                "base",
                "-LLL",
            ])
            .env("LDAPTLS_CACERT", &self.ca_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("slapd-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Adds entries (LDIF) as the root account, over StartTLS.
    pub fn add(&self, ldif: &str) {
        let path = self.dir.join("add.ldif");
        std::fs::write(&path, ldif).expect("ldif");
        let out = Command::new("ldapadd")
            .args([
                "-x",
                "-ZZ",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PW,
                "-f",
            ])
            .arg(&path)
            .env("LDAPTLS_CACERT", &self.ca_file)
            .output()
            .expect("ldapadd");
        assert!(
            out.status.success(),
            "ldapadd failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// kill -9: the directory is gone at once (connections refused).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (CA PEM, server certificate PEM for 127.0.0.1, its key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "mailroot test directory CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.subject_alt_names = vec![SanType::IpAddress(IpAddr::from([127, 0, 0, 1]))];
    let key = KeyPair::generate().expect("server key");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    (ca_pem, cert.pem(), key.serialize_pem())
}
