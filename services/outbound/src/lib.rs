//! Outbound delivery: everything about talking to the rest of the world. Routing (DNS MX
//! lookups), the SMTP client that hands a message to a remote server, and DKIM signing.
//!
//! The front-ends' delivery workers claim queue entries from the store, group recipients by
//! domain and call [`deliver`] once per domain; they map each [`RecipientResult`] to the
//! store's report. This crate knows neither the store nor the gRPC types.
//!
//! # Layout
//! - `routing.rs`    — [`Resolver`]: MX hosts in preference order, implicit MX, null MX
//!   (RFC 5321 §5.1, RFC 7505); what in DNS is permanent and what temporary.
//! - `client.rs`     — the API: [`ClientConfig`], [`Envelope`], [`RecipientResult`] and
//!   [`deliver`], the loop over hosts and addresses.
//! - `connection.rs` — one connection: connect, read replies, write commands and the
//!   message, STARTTLS handshake, each under its RFC 5321 §4.5.3.2 timeout.
//! - `session.rs`    — the sans-io SMTP client state machine (EHLO/HELO, STARTTLS, AUTH,
//!   MAIL/RCPT/DATA with or without PIPELINING) and what each reply means per recipient.
//! - `reply.rs`      — sans-io reply framing and parsing; status and diagnostic of a reply.
//! - `ehlo.rs`       — the server's EHLO capabilities.
//! - `command.rs`    — the bytes of each command, extension parameters, dot-stuffing.
//! - `tls.rs`        — the opportunistic TLS client configuration (RFC 7435).
//! - `limiter.rs`    — [`Limiter`]: connections per destination across the process.
//! - `dkim.rs`       — [`sign`] and [`public_txt`] (RFC 6376, RFC 8463).
//! - `error.rs`      — [`OutboundError`].

pub mod client;
mod command;
mod connection;
pub mod dkim;
mod ehlo;
pub mod error;
mod limiter;
mod reply;
pub mod routing;
mod session;
mod tls;

pub use client::{
    ClientConfig, DEFAULT_PORT, Envelope, Limiter, Notify, Outcome, Permit, Recipient,
    RecipientResult, Relay, Ret, Timeouts, deliver,
};
pub use dkim::{DkimAlgorithm, SIGNED_HEADERS, public_txt, sign};
pub use error::OutboundError;
pub use routing::{MxHost, Resolver, RouteError};
