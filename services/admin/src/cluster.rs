//! `mailrootctl cluster init DIR`: everything a deployment needs to lock its links down —
//! a cluster CA, the store's server certificate, a front-end and an admin client certificate
//! (their role is a URI in the subject alternative names, which the store checks), the auth
//! GUID and the admin token. Keys are written with mode 0600.
//!
//! With `--by-role` each role gets a directory of its own holding only what it needs, so
//! that each can live in its own volume and a node never holds another role's key (the
//! compose file does this): `ca/` (the CA key: for issuing, mounted nowhere else), `store/`
//! (CA certificate, store certificate and key, GUID and admin token), `frontend/` (CA
//! certificate, front-end certificate and key, GUID only) and `admin/` (CA certificate, admin
//! certificate and key, admin token only). Each `cluster.env` holds that role's secrets.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub const ROLE_FRONTEND: &str = "urn:mailroot:role:frontend";
pub const ROLE_ADMIN: &str = "urn:mailroot:role:admin";

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        anyhow::bail!(
            "{} exists already; not overwriting cluster secrets",
            path.display()
        );
    }
    std::fs::write(&path, text)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let _ = secret;
    Ok(())
}

fn leaf(
    name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    ca: &Issuer<'_, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The files `init` writes, in the order it writes them.
pub const FILES: [&str; 9] = [
    "ca.pem",
    "ca-key.pem",
    "store.pem",
    "store-key.pem",
    "frontend.pem",
    "frontend-key.pem",
    "admin.pem",
    "admin-key.pem",
    "cluster.env",
];

/// What DIR holds already: none of the files, all of them, or some (a partial set, e.g. an
/// init that was interrupted, or files put there by hand).
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    None,
    Complete,
    Partial(Vec<String>),
}

/// The files `init --by-role` writes.
pub const FILES_BY_ROLE: [&str; 14] = [
    "ca/ca.pem",
    "ca/ca-key.pem",
    "store/ca.pem",
    "store/store.pem",
    "store/store-key.pem",
    "store/cluster.env",
    "frontend/ca.pem",
    "frontend/frontend.pem",
    "frontend/frontend-key.pem",
    "frontend/cluster.env",
    "admin/ca.pem",
    "admin/admin.pem",
    "admin/admin-key.pem",
    "admin/cluster.env",
];

pub fn existing(dir: &Path, by_role: bool) -> Existing {
    let files: &[&str] = if by_role { &FILES_BY_ROLE } else { &FILES };
    let present: Vec<String> = files
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    match present.len() {
        0 => Existing::None,
        n if n == files.len() => Existing::Complete,
        _ => Existing::Partial(present),
    }
}

/// Creates DIR (which must not hold earlier secrets) and writes the files (one directory per
/// role with `by_role`).
pub fn init(dir: &Path, store_names: &[String], by_role: bool) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    if let Existing::Partial(present) = existing(dir, by_role) {
        anyhow::bail!(
            "{} holds a partial set of cluster secrets ({}); not overwriting them — \
             remove them all to start over (every node then needs the new set)",
            dir.display(),
            present.join(" ")
        );
    }
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailroot cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["store".to_string(), "localhost".to_string()];
    names.extend(store_names.iter().cloned());
    let mut store_sans: Vec<SanType> = Vec::new();
    for n in &names {
        store_sans.push(match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.as_str().try_into()?),
        });
    }
    store_sans.push(SanType::IpAddress("127.0.0.1".parse()?));
    let (store_pem, store_key) = leaf(
        "mailroot store",
        store_sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let (fe_pem, fe_key) = leaf(
        "mailroot front-end",
        vec![SanType::URI(ROLE_FRONTEND.try_into()?)],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;
    let (admin_pem, admin_key) = leaf(
        "mailroot admin",
        vec![SanType::URI(ROLE_ADMIN.try_into()?)],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;
    let guid = uuid::Uuid::new_v4();
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let env = format!("MAILROOT_AUTH_GUID={guid}\nMAILROOT_ADMIN_TOKEN={token}\n");
    // Front-ends prove themselves with the GUID; only the store and admins hold the token.
    let frontend_env = format!("MAILROOT_AUTH_GUID={guid}\n");
    let admin_env = format!("MAILROOT_ADMIN_TOKEN={token}\n");
    let files: Vec<(&str, &str, bool)> = if by_role {
        vec![
            ("ca/ca.pem", ca_pem.as_str(), false),
            ("ca/ca-key.pem", ca_key_pem.as_str(), true),
            ("store/ca.pem", ca_pem.as_str(), false),
            ("store/store.pem", store_pem.as_str(), false),
            ("store/store-key.pem", store_key.as_str(), true),
            ("store/cluster.env", env.as_str(), true),
            ("frontend/ca.pem", ca_pem.as_str(), false),
            ("frontend/frontend.pem", fe_pem.as_str(), false),
            ("frontend/frontend-key.pem", fe_key.as_str(), true),
            ("frontend/cluster.env", &frontend_env, true),
            ("admin/ca.pem", ca_pem.as_str(), false),
            ("admin/admin.pem", admin_pem.as_str(), false),
            ("admin/admin-key.pem", admin_key.as_str(), true),
            ("admin/cluster.env", &admin_env, true),
        ]
    } else {
        vec![
            ("ca.pem", ca_pem.as_str(), false),
            ("ca-key.pem", ca_key_pem.as_str(), true),
            ("store.pem", store_pem.as_str(), false),
            ("store-key.pem", store_key.as_str(), true),
            ("frontend.pem", fe_pem.as_str(), false),
            ("frontend-key.pem", fe_key.as_str(), true),
            ("admin.pem", admin_pem.as_str(), false),
            ("admin-key.pem", admin_key.as_str(), true),
            ("cluster.env", env.as_str(), true),
        ]
    };
    for (name, text, secret) in &files {
        write(dir, name, text, *secret)?;
    }
    Ok(files.iter().map(|(n, _, _)| n.to_string()).collect())
}
