//! cordon-collector: the central service every host's cordond reports to, and responders
//! act through.
//!
//! * [`config`]: the configuration file; [`clock`]: times as the store keeps them.
//! * [`store`]: SQLite or PostgreSQL (events, hosts, tokens, commands).
//! * [`auth`]: tokens and roles.
//! * [`ingest`]: what becomes of a host's batch before it is stored.
//! * [`api`]: the HTTP API (ingest, queries, the live stream, commands) and the web console.
//! * [`serve`]: the server under it, with every connection bounded.
//! * [`hub`]: what the parts tell each other while it runs (events as they are stored,
//!   hosts waiting for a command).
//! * [`metrics`]: the collector's own health, for Prometheus.
//! * [`output`]: stored events sent on to webhooks, Slack, syslog, OTLP, Splunk and
//!   Elasticsearch; [`fleet`]: rules over what many hosts report.
//! * [`cli`]: `cordon-collector serve | check | token ...`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod hub;
pub mod ingest;
pub mod metrics;
pub mod output;
pub mod serve;
pub mod store;
