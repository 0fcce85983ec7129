//! Directory (LDAP) authentication against a real OpenLDAP (`slapd`, started by the test on
//! loopback with StartTLS; `mailroot_tests::slapd`): a domain bound to the directory next to
//! a password-file domain in one cluster. Logins over POP3 and SMTP AUTH with the directory's
//! password, a disabled account refused, mail to an alias from the directory delivered to the
//! user; with slapd killed every answer is "try later" (RCPT 451 4.4.3, AUTH 454 4.7.0, POP3
//! -ERR [SYS/TEMP]), never "no such user" or "bad password"; slapd back on the same port and
//! data: logins work again. The binding survives a store restart.

use std::time::Duration;

use mailroot_tests::clients::auth_plain;
use mailroot_tests::slapd::{SUFFIX, Slapd, have_slapd};
use mailroot_tests::{DOMAIN, Pop3Client, SmtpClient, TestCluster, eventually};

const DIR_DOMAIN: &str = "example.org";
const SERVICE_DN: &str = "cn=mailroot,ou=services,dc=example,dc=org";
const SERVICE_PW: &str = "service-secret";
const PEOPLE: &str = "ou=people,dc=example,dc=org";

fn ldif() -> String {
    let user = |uid: &str, pw: &str, extra: &str| {
        format!(
            "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: mailrootTestUser\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@{DIR_DOMAIN}\nuserPassword: {pw}\n{extra}\n"
        )
    };
    [
        format!("dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"),
        format!("dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n"),
        format!("dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n"),
        format!(
            "dn: {SERVICE_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n\
             cn: mailroot\nuserPassword: {SERVICE_PW}\n"
        ),
        user("alice", "alice-pw", "mailAlternateAddress: sales@example.org\n"),
        user("bob", "bob-pw", ""),
        // Disabled (the default disabled filter's nsAccountLock=TRUE).
        user("dave", "dave-pw", "nsAccountLock: TRUE\n"),
        // Active Directory-shaped users of AD_DOMAIN: proxyAddresses, userAccountControl.
        format!("dn: {CORP}\nobjectClass: organizationalUnit\nou: corp\n"),
        ad_user(
            "erin",
            "512",
            "proxyAddresses: SMTP:erin@corp.example\nproxyAddresses: smtp:info@corp.example\n\
             proxyAddresses: X500:/o=corp/cn=erin\n",
        ),
        // ACCOUNTDISABLE (0x2) set.
        ad_user("frank", "514", ""),
    ]
    .join("\n")
}

const AD_DOMAIN: &str = "corp.example";
const CORP: &str = "ou=corp,dc=example,dc=org";

fn ad_user(uid: &str, uac: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},{CORP}\nobjectClass: inetOrgPerson\nobjectClass: mailrootTestUser\n\
         uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@{AD_DOMAIN}\nuserPassword: {uid}-pw\n\
         userAccountControl: {uac}\n{extra}"
    )
}

/// `domain add|set DIR_DOMAIN` arguments for the test directory.
fn directory_args<'a>(slapd: &'a Slapd, url: &'a str) -> Vec<&'a str> {
    vec![
        "--directory",
        url,
        "--starttls",
        "--ca-file",
        slapd.ca_file.to_str().expect("utf-8 path"),
        "--bind-dn",
        SERVICE_DN,
        "--base",
        PEOPLE,
        "--bind-password-stdin",
    ]
}

fn pop3_login(c: &TestCluster, user: &str, pass: &str) -> String {
    let mut p = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let r = p.login(user, pass).unwrap();
    let _ = p.cmd("QUIT");
    r
}

fn smtp_auth(c: &TestCluster, user: &str, pass: &str) -> String {
    let mut s = SmtpClient::connect(c.fe(0).submission).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    s.cmd(&format!("AUTH PLAIN {}", auth_plain(user, pass)))
        .unwrap()
}

fn rcpt(c: &TestCluster, to: &str) -> String {
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    assert!(
        s.cmd("MAIL FROM:<x@remote.test>")
            .unwrap()
            .starts_with("250")
    );
    s.cmd(&format!("RCPT TO:<{to}>")).unwrap()
}

fn message(subject: &str) -> Vec<u8> {
    format!("From: x@remote.test\r\nSubject: {subject}\r\n\r\nhello\r\n").into_bytes()
}

/// Messages in a maildrop, and whether one of them has `subject`.
fn has_mail(c: &TestCluster, user: &str, pass: &str, subject: &str) -> bool {
    let mut p = Pop3Client::connect(c.fe(0).pop3).unwrap();
    let r = p.login(user, pass).unwrap();
    assert!(r.starts_with("+OK"), "POP3 {user}: {r}");
    let n = p.uidl().unwrap().len() as u32;
    let found = (1..=n).any(|i| {
        String::from_utf8_lossy(&p.retr(i).unwrap()).contains(&format!("Subject: {subject}"))
    });
    let _ = p.cmd("QUIT");
    found
}

#[test]
fn directory_domain_next_to_a_password_file_domain() {
    if !have_slapd() {
        return;
    }
    let mut c = TestCluster::start(1);
    let mut slapd = Slapd::start(&c.dir.path().join("slapd"));
    slapd.add(&ldif());
    let url = slapd.url();

    // Plaintext is refused unless asked for.
    let out = c.ctl(
        &[
            "domain",
            "add",
            DIR_DOMAIN,
            "--directory",
            &url,
            "--bind-dn",
            SERVICE_DN,
            "--base",
            PEOPLE,
            "--bind-password-stdin",
        ],
        Some(&format!("{SERVICE_PW}\n")),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure-plaintext"),
        "{out:?}"
    );
    let mut add = vec!["domain", "add", DIR_DOMAIN];
    add.extend(directory_args(&slapd, &url));
    c.ctl_ok(&add, Some(&format!("{SERVICE_PW}\n")));
    c.ctl_ok(&["domain", "add", DOMAIN], None);
    c.add_mailbox(&format!("carol@{DOMAIN}"), "pw-carol");
    let carol = format!("carol@{DOMAIN}");

    // `domain list` says which domain uses a directory, and never its password.
    let list = c.ctl_ok(&["domain", "list"], None);
    let dir_line = list
        .lines()
        .find(|l| l.starts_with(DIR_DOMAIN))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(dir_line.contains(&format!("directory={url}")), "{list}");
    assert!(
        dir_line.contains("tls=starttls") && dir_line.contains("ca=custom"),
        "{list}"
    );
    assert!(list.lines().any(|l| l == DOMAIN), "{list}");
    assert!(!list.contains(SERVICE_PW), "{list}");

    // POP3 and SMTP AUTH with the directory's password; the mailbox is made at first login.
    let r = pop3_login(&c, "alice@example.org", "alice-pw");
    assert!(r.starts_with("+OK"), "{r}");
    let r = pop3_login(&c, "alice@example.org", "wrong");
    assert!(r.starts_with("-ERR") && !r.contains("SYS/TEMP"), "{r}");
    let r = smtp_auth(&c, "alice@example.org", "alice-pw");
    assert!(r.starts_with("235 "), "{r}");
    let r = smtp_auth(&c, "alice@example.org", "alice-wrong");
    assert!(r.starts_with("535 "), "{r}");
    // Refused directory logins count in the store's throttle like any other.
    let t = c.ctl_ok(&["throttle", "list", "alice@example.org"], None);
    assert!(
        t.lines()
            .any(|l| l.starts_with("user+ip") && l.contains("alice@example.org")),
        "{t}"
    );
    // An empty password is no login (an LDAP bind without one is anonymous).
    let r = smtp_auth(&c, "alice@example.org", "");
    assert!(r.starts_with("535 ") || r.starts_with("501 "), "{r}");
    // The disabled account: no login, no mail.
    let r = pop3_login(&c, "dave@example.org", "dave-pw");
    assert!(r.starts_with("-ERR") && !r.contains("SYS/TEMP"), "{r}");
    let r = smtp_auth(&c, "dave@example.org", "dave-pw");
    assert!(r.starts_with("535 "), "{r}");
    let r = rcpt(&c, "dave@example.org");
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let r = rcpt(&c, "nobody@example.org");
    assert!(r.starts_with("550 5.1.1"), "{r}");

    // Mail to the alias from the directory (mailAlternateAddress) reaches alice.
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    let r = s
        .send_mail(
            "x@remote.test",
            &["sales@example.org"],
            &message("to sales"),
        )
        .unwrap();
    assert!(r.starts_with("250 "), "{r}");
    assert!(has_mail(&c, "alice@example.org", "alice-pw", "to sales"));
    // alice may send as her directory alias.
    let mut s = SmtpClient::connect(c.fe(0).submission).unwrap();
    assert!(s.cmd("EHLO client.test").unwrap().starts_with("250"));
    let r = s
        .cmd(&format!(
            "AUTH PLAIN {}",
            auth_plain("alice@example.org", "alice-pw")
        ))
        .unwrap();
    assert!(r.starts_with("235 "), "{r}");
    let r = s.cmd("MAIL FROM:<sales@example.org>").unwrap();
    assert!(r.starts_with("250 "), "{r}");
    // A DSN to that alias (here: NOTIFY=SUCCESS) reaches alice as well.
    let r = s.cmd(&format!("RCPT TO:<{carol}> NOTIFY=SUCCESS")).unwrap();
    assert!(r.starts_with("250 "), "{r}");
    assert!(s.cmd("DATA").unwrap().starts_with("354"));
    s.send_raw(&message("from sales")).unwrap();
    let r = s.cmd(".").unwrap();
    assert!(r.starts_with("250 "), "{r}");
    assert!(has_mail(
        &c,
        "alice@example.org",
        "alice-pw",
        "Successful Mail Delivery Report"
    ));

    // An AD-shaped directory domain over ldaps://: logins by local part (%u), proxyAddresses
    // (smtp:/SMTP: stripped, X500: ignored) as aliases, userAccountControl's ACCOUNTDISABLE
    // honoured.
    let ca = slapd.ca_file.to_str().expect("utf-8 path");
    let ldaps = slapd.ldaps_url();
    c.ctl_ok(
        &[
            "domain",
            "add",
            AD_DOMAIN,
            "--directory",
            &ldaps,
            "--ca-file",
            ca,
            "--bind-dn",
            SERVICE_DN,
            "--bind-password-stdin",
            "--base",
            CORP,
            "--filter",
            "(&(objectClass=inetOrgPerson)(uid=%u))",
            "--alias-attr",
            "proxyAddresses",
        ],
        Some(&format!("{SERVICE_PW}\n")),
    );
    let r = pop3_login(&c, "erin@corp.example", "erin-pw");
    assert!(r.starts_with("+OK"), "{r}");
    let r = pop3_login(&c, "frank@corp.example", "frank-pw");
    assert!(r.starts_with("-ERR") && !r.contains("SYS/TEMP"), "{r}");
    let r = rcpt(&c, "frank@corp.example");
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    let r = s
        .send_mail("x@remote.test", &["info@corp.example"], &message("to info"))
        .unwrap();
    assert!(r.starts_with("250 "), "{r}");
    assert!(has_mail(&c, "erin@corp.example", "erin-pw", "to info"));
    // The directory's certificate is checked: without the test CA (the system's roots only)
    // there is no directory to ask. `domain set` without a password keeps the stored one.
    let set_ad = |ca_file: &[&str]| {
        let mut args = vec!["domain", "set", AD_DOMAIN, "--directory", &ldaps];
        args.extend_from_slice(ca_file);
        args.extend([
            "--bind-dn",
            SERVICE_DN,
            "--base",
            CORP,
            "--filter",
            "(uid=%u)",
            "--alias-attr",
            "proxyAddresses",
        ]);
        c.ctl_ok(&args, None);
    };
    set_ad(&[]);
    let r = pop3_login(&c, "erin@corp.example", "erin-pw");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    set_ad(&["--ca-file", ca]);
    let r = pop3_login(&c, "erin@corp.example", "erin-pw");
    assert!(r.starts_with("+OK"), "{r}");

    // The password-file domain, side by side.
    assert!(pop3_login(&c, &carol, "pw-carol").starts_with("+OK"));
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    let r = s
        .send_mail("x@remote.test", &[&carol], &message("to carol 1"))
        .unwrap();
    assert!(r.starts_with("250 "), "{r}");

    // The directory is gone: every answer is "try later", never "no such user" or "bad
    // password". (bob was never looked up, so nothing about him is cached.)
    slapd.kill();
    let r = rcpt(&c, "bob@example.org");
    assert!(r.starts_with("451 4.4.3"), "{r}");
    let r = pop3_login(&c, "bob@example.org", "bob-pw");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    let r = smtp_auth(&c, "bob@example.org", "bob-pw");
    assert!(r.starts_with("454 4.7.0"), "{r}");
    // Not the user's fault: no failed login is counted.
    let t = c.ctl_ok(&["throttle", "list", "bob@example.org"], None);
    assert_eq!(t.lines().count(), 1, "only the header: {t}");
    // A wrong password cannot be told from a right one without the directory.
    let r = pop3_login(&c, "alice@example.org", "not-alices");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    // The password-file domain does not notice.
    assert!(pop3_login(&c, &carol, "pw-carol").starts_with("+OK"));
    let mut s = SmtpClient::connect(c.fe(0).smtp).unwrap();
    let r = s
        .send_mail("x@remote.test", &[&carol], &message("to carol 2"))
        .unwrap();
    assert!(r.starts_with("250 "), "{r}");
    assert!(has_mail(&c, &carol, "pw-carol", "to carol 2"));

    // Back on the same port and data: logins and mail work again.
    slapd.restart();
    eventually("bob logs in again", Duration::from_secs(30), || {
        pop3_login(&c, "bob@example.org", "bob-pw")
            .starts_with("+OK")
            .then_some(())
    });
    let r = rcpt(&c, "bob@example.org");
    assert!(r.starts_with("250 "), "{r}");
    let r = smtp_auth(&c, "bob@example.org", "bob-pw");
    assert!(r.starts_with("235 "), "{r}");

    // Users and passwords of the domain are the directory's.
    let out = c.ctl(
        &["mailbox", "add", "eve@example.org", "--password-stdin"],
        Some("eve-pw\n"),
    );
    assert!(!out.status.success(), "{out:?}");
    let out = c.ctl(
        &["mailbox", "passwd", "bob@example.org", "--password-stdin"],
        Some("new-pw\n"),
    );
    assert!(!out.status.success(), "{out:?}");

    // A lock in mailroot holds for a directory user too.
    c.ctl_ok(&["mailbox", "lock", "bob@example.org"], None);
    let r = pop3_login(&c, "bob@example.org", "bob-pw");
    assert!(r.starts_with("-ERR") && !r.contains("SYS/TEMP"), "{r}");
    c.ctl_ok(&["mailbox", "unlock", "bob@example.org"], None);

    // A changed directory configuration is used at once (nothing cached from the old one):
    // with a wrong service password alice's cached login is not served.
    let mut set = vec!["domain", "set", DIR_DOMAIN];
    set.extend(directory_args(&slapd, &url));
    c.ctl_ok(&set, Some("not-the-service-password\n"));
    let r = pop3_login(&c, "alice@example.org", "alice-pw");
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    c.ctl_ok(&set, Some(&format!("{SERVICE_PW}\n")));
    let r = pop3_login(&c, "alice@example.org", "alice-pw");
    assert!(r.starts_with("+OK"), "{r}");

    // The binding is durable: after a store restart it is still there and used.
    c.kill_store();
    c.start_store();
    eventually(
        "alice logs in after the store restart",
        Duration::from_secs(30),
        || {
            pop3_login(&c, "alice@example.org", "alice-pw")
                .starts_with("+OK")
                .then_some(())
        },
    );
    assert!(has_mail(&c, "alice@example.org", "alice-pw", "to sales"));
    let list = c.ctl_ok(&["domain", "list"], None);
    assert!(list.contains(&format!("directory={url}")), "{list}");
    assert!(pop3_login(&c, &carol, "pw-carol").starts_with("+OK"));

    // Unbound: the domain's mailboxes stay, but without a directory there is no password
    // for them (a bad login, not an error).
    c.ctl_ok(&["domain", "set", DIR_DOMAIN, "--no-directory"], None);
    let list = c.ctl_ok(&["domain", "list"], None);
    assert!(list.lines().any(|l| l == DIR_DOMAIN), "{list}");
    let r = pop3_login(&c, "alice@example.org", "alice-pw");
    assert!(r.starts_with("-ERR") && !r.contains("SYS/TEMP"), "{r}");
}
