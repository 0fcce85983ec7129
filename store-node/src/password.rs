//! Password hashing: Argon2id (RFC 9106) with the cluster auth GUID as the Argon2 secret
//! ("pepper"). A copied store without the GUID cannot even be brute-forced offline, and a store
//! started with another GUID rejects every password.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Result, StoreError};

#[derive(Clone)]
pub struct Hasher {
    secret: Vec<u8>,
}

impl Hasher {
    pub fn new(auth_guid: &str) -> Hasher {
        Hasher {
            secret: auth_guid.as_bytes().to_vec(),
        }
    }

    fn argon(&self) -> Result<Argon2<'_>> {
        Argon2::new_with_secret(
            &self.secret,
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
        )
        .map_err(|e| StoreError::Internal(format!("argon2 parameters: {e}")))
    }

    pub fn hash(&self, password: &str) -> Result<String> {
        // 16 random bytes from the OS CSPRNG (UUIDv4 is generated with getrandom).
        let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
            .map_err(|e| StoreError::Internal(format!("salt: {e}")))?;
        Ok(self
            .argon()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| StoreError::Internal(format!("argon2: {e}")))?
            .to_string())
    }

    pub fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        let parsed = PasswordHash::new(hash).map_err(|e| StoreError::Corrupt {
            path: "password hash".into(),
            detail: e.to_string(),
        })?;
        Ok(self
            .argon()?
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_the_guid() {
        let a = Hasher::new("guid-a");
        let h = a.hash("secret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(a.verify("secret", &h).unwrap());
        assert!(!a.verify("Secret", &h).unwrap());
        assert!(!Hasher::new("guid-b").verify("secret", &h).unwrap());
    }
}
