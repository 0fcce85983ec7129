//! STARTTLS and AUTH (RFC 3207, RFC 4954, RFC 4616 PLAIN, the LOGIN convention): the
//! commands and the driver's answers to them.

use super::*;

impl Session {
    pub(super) fn starttls(&mut self, args: &[u8]) {
        if !self.config.starttls {
            return self.reply(Reply::NotImplemented);
        }
        if self.config.secure {
            return self.reply(Reply::AlreadyTls);
        }
        if !command::is_blank(args) {
            return self.reply(Reply::StartTlsSyntax);
        }
        self.reply(Reply::ReadyTls);
        self.actions.push_back(Action::StartTls);
        self.pending = Some(Pending::Tls);
    }

    pub(super) fn auth(&mut self, args: &[u8]) {
        if !self.config.auth {
            return self.reply(Reply::NotImplemented);
        }
        if self.helo.is_none() {
            return self.reply(Reply::NeedHelo);
        }
        if self.authenticated.is_some() {
            return self.reply(Reply::AlreadyAuthenticated);
        }
        if self.transaction.is_some() {
            return self.reply(Reply::AuthInTransaction);
        }
        if !self.auth_allowed() {
            return self.reply(Reply::EncryptionRequired);
        }
        let text = String::from_utf8_lossy(args);
        let mut words = text.split_ascii_whitespace();
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.reply(Reply::AuthSyntax);
        };
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                // RFC 4954 4: "=" is an empty initial response.
                Some(resp) => self.plain_response(resp.as_bytes()),
                None => {
                    self.auth_step = Some(AuthStep::Plain);
                    self.reply(Reply::AuthChallenge(""));
                }
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                Some(resp) => self.login_user(resp.as_bytes()),
                None => {
                    self.auth_step = Some(AuthStep::LoginUser);
                    self.reply(Reply::AuthChallenge("VXNlcm5hbWU6"));
                }
            }
        } else {
            self.reply(Reply::AuthMechanism);
        }
    }

    pub(super) fn auth_response(&mut self, line: &[u8]) {
        let Some(step) = self.auth_step.take() else {
            return;
        };
        if line == b"*" {
            return self.reply(Reply::AuthCancelled);
        }
        match step {
            AuthStep::Plain => self.plain_response(line),
            AuthStep::LoginUser => self.login_user(line),
            AuthStep::LoginPassword { user } => match decode(line) {
                Some(password) if !password.is_empty() => {
                    self.authenticate(String::new(), user, password)
                }
                _ => self.reply(Reply::AuthDecode),
            },
        }
    }

    fn login_user(&mut self, response: &[u8]) {
        match decode(response) {
            Some(user) if !user.is_empty() => {
                self.auth_step = Some(AuthStep::LoginPassword { user });
                self.reply(Reply::AuthChallenge("UGFzc3dvcmQ6"));
            }
            _ => self.reply(Reply::AuthDecode),
        }
    }

    /// RFC 4616: [authzid] NUL authcid NUL passwd.
    fn plain_response(&mut self, response: &[u8]) {
        let Some(text) = decode(response) else {
            return self.reply(Reply::AuthDecode);
        };
        let mut parts = text.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authzid), Some(user), Some(password), None)
                if !user.is_empty() && !password.is_empty() =>
            {
                self.authenticate(authzid.to_string(), user.to_string(), password.to_string())
            }
            _ => self.reply(Reply::AuthDecode),
        }
    }

    fn authenticate(&mut self, authzid: String, user: String, password: String) {
        self.pending = Some(Pending::Auth { user: user.clone() });
        self.actions.push_back(Action::Authenticate {
            authzid,
            user,
            password,
        });
    }
}
