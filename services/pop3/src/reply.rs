//! Every POP3 reply text, in one place. Response codes in brackets are RFC 2449 §8 /
//! RFC 3206: `[AUTH]` (credentials or policy), `[IN-USE]` (maildrop locked by another
//! session), `[LOGIN-DELAY]` (RFC 2449 §8.1.1), `[SYS/TEMP]` (try again later), `[SYS/PERM]`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Greeting(&'a str),
    Ok,
    OkText(String),
    Capabilities(&'a [&'a str]),
    UserOk,
    LoggedIn { count: usize, size: u64 },
    Stat { count: usize, size: u64 },
    Listing(Vec<String>),
    RetrHeader(u64),
    Deleted(usize),
    Bye,
    ByeDeleted(usize),
    BeginTls,
    Continue,

    BadCredentials,
    Locked,
    InUse,
    TempFailure,
    LoginDelay,
    ShuttingDown,
    CommitFailed,
    LostLock,
    EncryptionRequired,
    AlreadyTls,
    UnknownMechanism,
    AuthCancelled,
    AuthDecode,
    PassWithoutUser,
    PassSyntax,
    UserSyntax,
    NotAuthenticated,
    AlreadyAuthenticated,
    NoSuchMessage,
    MessageDeleted,
    BadMessageNumber,
    OneMessageNumber,
    TopSyntax,
    NoArguments,
    TooManyArguments,
    NotSupported,
    UnknownCommand,
    LineTooLong,
    InvalidCharacters,
}

impl Reply<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let text: String = match self {
            Reply::Greeting(g) => format!("+OK {g}"),
            Reply::Ok => "+OK".into(),
            Reply::OkText(t) => format!("+OK {t}"),
            Reply::Capabilities(caps) => {
                let mut s = String::from("+OK Capability list follows\r\n");
                for c in caps.iter() {
                    s.push_str(c);
                    s.push_str("\r\n");
                }
                s.push('.');
                s
            }
            Reply::UserOk => "+OK send PASS".into(),
            Reply::LoggedIn { count, size } => {
                format!("+OK maildrop locked and ready, {count} messages ({size} octets)")
            }
            Reply::Stat { count, size } => format!("+OK {count} {size}"),
            Reply::Listing(lines) => {
                let mut s = String::from("+OK listing follows\r\n");
                for l in lines {
                    s.push_str(l);
                    s.push_str("\r\n");
                }
                s.push('.');
                s
            }
            Reply::RetrHeader(size) => format!("+OK {size} octets"),
            Reply::Deleted(n) => format!("+OK message {n} deleted"),
            Reply::Bye => "+OK bye".into(),
            Reply::ByeDeleted(n) => format!("+OK bye ({n} messages deleted)"),
            Reply::BeginTls => "+OK Begin TLS negotiation".into(),
            Reply::Continue => "+ ".into(),

            Reply::BadCredentials => "-ERR [AUTH] invalid user name or password".into(),
            Reply::Locked => "-ERR [AUTH] mailbox is locked by the administrator".into(),
            Reply::InUse => "-ERR [IN-USE] maildrop is already in use".into(),
            Reply::TempFailure => "-ERR [SYS/TEMP] temporary failure, try again later".into(),
            Reply::LoginDelay => {
                "-ERR [LOGIN-DELAY] logged in too recently, try again later".into()
            }
            // A draining front-end's deadline passed (`Session::shutdown`); nothing committed.
            Reply::ShuttingDown => "-ERR [SYS/TEMP] server shutting down, try again later".into(),
            Reply::CommitFailed => "-ERR [SYS/TEMP] some deleted messages not removed".into(),
            Reply::LostLock => "-ERR [IN-USE] maildrop lock lost, no messages were removed".into(),
            Reply::EncryptionRequired => {
                "-ERR [AUTH] plaintext login not allowed, use STLS first".into()
            }
            Reply::AlreadyTls => "-ERR TLS already active".into(),
            Reply::UnknownMechanism => "-ERR unsupported SASL mechanism".into(),
            Reply::AuthCancelled => "-ERR authentication cancelled".into(),
            Reply::AuthDecode => "-ERR malformed SASL response".into(),
            Reply::PassWithoutUser => "-ERR send USER first".into(),
            Reply::PassSyntax => "-ERR syntax: PASS password".into(),
            Reply::UserSyntax => "-ERR syntax: USER name".into(),
            Reply::NotAuthenticated => "-ERR not allowed before login".into(),
            Reply::AlreadyAuthenticated => "-ERR already logged in".into(),
            Reply::NoSuchMessage => "-ERR no such message".into(),
            Reply::MessageDeleted => "-ERR message already deleted".into(),
            Reply::BadMessageNumber => "-ERR invalid message number".into(),
            Reply::OneMessageNumber => "-ERR syntax: one message number expected".into(),
            Reply::TopSyntax => "-ERR syntax: TOP msg n".into(),
            Reply::NoArguments => "-ERR this command takes no arguments".into(),
            Reply::TooManyArguments => "-ERR too many arguments".into(),
            Reply::NotSupported => "-ERR command not supported".into(),
            Reply::UnknownCommand => "-ERR unknown command".into(),
            Reply::LineTooLong => "-ERR line too long".into(),
            Reply::InvalidCharacters => "-ERR invalid characters in command".into(),
        };
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        bytes
    }
}
