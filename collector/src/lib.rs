//! cordon-collector: the central service every host's cordond reports to, and responders
//! act through.
//!
//! * [`config`]: the configuration file.
//! * [`store`]: SQLite or PostgreSQL (events, hosts, tokens, commands).
//! * [`auth`]: tokens and roles.
//! * [`api`]: the HTTP API (ingest, queries, the live stream, commands) and the web console.
//! * [`cli`]: `cordon-collector serve | check | token ...`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod store;
